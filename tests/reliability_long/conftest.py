"""A real Airflow deployment for the long reliability tests, driven from pytest.

``airflow_cluster`` (module scope) runs ``airflow db migrate`` in a temporary AIRFLOW_HOME, then starts
``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` as separate process groups: LocalExecutor
on SQLite (Airflow 3 accepts that pair: SequentialExecutor is gone and LocalExecutor is the default executor,
``airflow standalone`` runs the same set), SimpleAuthManager with ``simple_auth_manager_all_admins`` so the public
REST API (/api/v2) needs no token. The DAGs come from ``dags/`` (copied into a temporary dags folder); the FC
connection points at ``rel_emulator``, an :class:`Emulator` serving ``functions/s.yaml`` in this test process.

Every process writes to ``<AIRFLOW_HOME>/proc-<name>.log``; a failed wait prints the tails. Teardown sends SIGTERM
to each process group, then SIGKILL to what is left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FUNCTION = "long-wait"
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
START_TIMEOUT = 300.0

T = TypeVar("T")


def free_port() -> int:
    """A free loopback port for the api-server (its URL must be known before it starts, so port 0 cannot do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowCluster:
    """The Airflow processes of one test module, and the REST calls the tests make."""

    def __init__(self, home: Path, env: dict[str, str], port: int) -> None:
        self.home = home
        self.env = env
        self.base = f"http://127.0.0.1:{port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.expected_down: set[str] = set()  # killed on purpose, not a failure
        self.http = requests.Session()

    # -- processes ---------------------------------------------------------------------------------------------
    def log_path(self, name: str) -> Path:
        return self.home / f"proc-{name}.log"

    def start(self, name: str) -> None:
        self.expected_down.discard(name)
        args = [name]
        if name == "api-server":
            args += ["--host", "127.0.0.1", "--port", self.base.rsplit(":", 1)[1], "--workers", "1"]
        elif name in ("scheduler", "triggerer"):
            args.append(
                "--skip-serve-logs"
            )  # its log server binds every interface; the files are local anyway
        with open(self.log_path(name), "ab") as log:
            log.write(f"\n=== start {name} at {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers and runners die with it
            )

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal the process group of ``name`` and wait for its leader to exit."""
        proc = self.procs[name]
        self.expected_down.add(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, end - time.monotonic()))
        for proc in self.procs.values():  # SIGKILL the group: leaders and any child left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def tails(self, lines: int = 40) -> str:
        out = []
        for name in PROCESSES:
            path = self.log_path(name)
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} (last {lines} lines) ---\n" + "\n".join(text))
        return "\n".join(out)

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
        """Poll ``probe`` until it returns something truthy; fail with the process log tails after ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            try:
                value = probe()
            except (requests.RequestException, ValueError):
                value = None
            if value:
                return value
            if time.monotonic() > end:
                pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{self.tails()}")
            for name, proc in self.procs.items():
                if proc.poll() is not None and name not in self.expected_down:
                    pytest.fail(f"airflow {name} exited with {proc.returncode}\n{self.tails()}")
            time.sleep(every)

    # -- REST API (/api/v2) ------------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.http.request(method, f"{self.base}/api/v2{path}", timeout=30, **kwargs)
        if resp.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def healthy(self) -> bool:
        health = self.api("GET", "/monitor/health")
        return all(
            (health.get(part) or {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        )

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any]) -> None:
        self.api(
            "POST", f"/dags/{dag_id}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf}
        )

    def ti(self, dag_id: str, run_id: str, task_id: str = "invoke") -> dict[str, Any]:
        result: dict[str, Any] = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        return result

    def ti_state(self, dag_id: str, run_id: str, task_id: str = "invoke") -> str | None:
        state = self.ti(dag_id, run_id, task_id).get("state")
        return str(state) if state else None

    def mark_failed(self, dag_id: str, run_id: str, task_id: str = "invoke") -> None:
        self.api(
            "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json={"new_state": "failed"}
        )

    def clear(self, dag_id: str, run_id: str, task_id: str = "invoke") -> None:
        self.api(
            "POST",
            f"/dags/{dag_id}/clearTaskInstances",
            json={"dry_run": False, "dag_run_id": run_id, "task_ids": [task_id], "only_failed": False},
        )

    def fail_run(self, dag_id: str, run_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])


def airflow_env(home: Path, dags: Path, port: int, connection_json: str) -> dict[str, str]:
    """The processes' environment: this one without any AIRFLOW_* setting of the test session, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": "reliability-tests-jwt-secret-0123456789abcdef",
            "AIRFLOW__API__SECRET_KEY": "reliability-tests-secret-key",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_FC_DEFAULT": connection_json,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    return env


@pytest.fixture(scope="module")
def rel_emulator() -> Iterator[Any]:
    """The FC 3.0 + MNS emulator the Airflow processes call over HTTP (function ``long-wait``)."""
    from airflow_fc_async.emulator import Emulator

    with Emulator(configs=[HERE / "functions" / "s.yaml"], port=0) as emu:
        yield emu


@pytest.fixture(scope="module")
def airflow_cluster(rel_emulator: Any) -> Iterator[AirflowCluster]:
    """api-server, scheduler, dag-processor and triggerer of one temporary deployment, healthy, DAGs parsed."""
    home = Path(tempfile.mkdtemp(prefix="fc-rel-airflow-"))
    dags = home / "dags"
    shutil.copytree(HERE / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    cluster = AirflowCluster(home, airflow_env(home, dags, port, rel_emulator.connection_json()), port)
    t0 = time.monotonic()
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=cluster.env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    try:
        for name in PROCESSES:
            cluster.start(name)
        cluster.wait_for("a healthy deployment", cluster.healthy, START_TIMEOUT, every=1.0)
        for dag_id in ("rel_fc_blocking", "rel_fc_deferrable"):
            cluster.wait_for(
                f"DAG {dag_id}", lambda d=dag_id: cluster.api("GET", f"/dags/{d}"), START_TIMEOUT, 1.0
            )
        print(f"\n[reliability] Airflow deployment up in {time.monotonic() - t0:.1f} s ({home})")
        yield cluster
    finally:
        cluster.stop_all()
        if os.environ.get("KEEP_RELIABILITY_HOME") != "1":
            shutil.rmtree(home, ignore_errors=True)
