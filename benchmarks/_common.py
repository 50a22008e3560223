"""Shared benchmark helpers: the emulator in its own process, machine facts, statistics, the JSON result."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "EmulatorProcess",
    "machine",
    "percentile",
    "print_table",
    "spread",
    "start_emulator",
    "versions",
    "write_result",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    try:
        nproc = int(subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, ValueError, subprocess.CalledProcessError):
        nproc = None
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cores": os.cpu_count(),
        "nproc": nproc,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("apache-airflow", "airflow-fc-async", "alibabacloud-fc20230330", "aiohttp", "requests"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.4999)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, max and the interquartile range."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "p25": percentile(values, 25),
        "p75": percentile(values, 75),
        "n": len(values),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_result(name: str, result: dict[str, Any], out_dir: Path | None = None) -> Path:
    result = {"benchmark": name, "machine": machine(), "versions": versions(), **result}
    result.setdefault("measured_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    directory = out_dir or Path(os.environ.get("FC_BENCH_RESULTS", RESULTS_DIR))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    table = [list(map(str, header)), *[[cell(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(table):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


@dataclass
class EmulatorProcess:
    """``python -m airflow_fc_async.emulator`` in its own process (its CPU is not the benchmark's)."""

    proc: subprocess.Popen[str]
    endpoint: str
    connection_json: str
    admin_token: str

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(f"{self.endpoint}/_emulator/{path}", data=data, method=method)
        request.add_header("content-type", "application/json")
        request.add_header("x-emulator-admin-token", self.admin_token)
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())

    def deploy(self, name: str, **props: Any) -> None:
        self.admin("POST", "functions", {"name": name, **props})

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "stats"))

    def reset_stats(self) -> None:
        self.admin("POST", "stats/reset", {})

    def cpu_seconds(self) -> float:
        """User + system CPU of the emulator process so far (from /proc; 0 when unknown)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return 0.0


@contextlib.contextmanager
def start_emulator(*args: str) -> Iterator[EmulatorProcess]:
    cmd = [sys.executable, "-m", "airflow_fc_async.emulator", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(
            r"endpoint (\S+) .*admin token (\S+) .*AIRFLOW_CONN_FC_DEFAULT='(.*)'$", line.strip()
        )
        if not match:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield EmulatorProcess(proc, match.group(1).rstrip(","), match.group(3), match.group(2))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
