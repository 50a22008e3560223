"""P3 DAG-parse cost: import time of every operator, sensor and trigger module over ``import airflow.sdk``, in
fresh interpreters, against the alibaba provider's ``analyticdb_spark`` operator module measured the same way.

Each sample is a new interpreter that imports ``airflow.sdk`` first (a DAG file does), then times the import of
the target module alone (``time.perf_counter`` around ``importlib.import_module``). Rounds interleave the targets
(and the bytecode modes) so that load on the machine hits all of them alike.

Bytecode modes (``--bytecode``): ``cold`` compiles every module from source in every interpreter (no ``.pyc`` read
or written), as a DAG processor does where nothing compiled the installed packages and ``PYTHONDONTWRITEBYTECODE``
is set (this workplace: every P3 figure before the modes existed); ``cached`` reads the ``.pyc`` files written by
one warm-up import, as it does after a compiled install (pip's default, ``uv pip install --compile-bytecode``) or
any earlier import that could write them. Each mode uses its own empty ``PYTHONPYCACHEPREFIX``, so neither depends
on ``__pycache__`` folders or on the caller's ``PYTHONDONTWRITEBYTECODE``. The goals are judged on ``cold``.
``python -m benchmarks.p3_parse_cost [--rounds 15] [--bytecode cold cached]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks._common import ROOT, print_table, spread, write_result

NAME = "p3_parse_cost"
BASELINE = "airflow.providers.alibaba.cloud.operators.analyticdb_spark"
OURS = [
    "airflow_fc_async.operators.fc",
    "airflow_fc_async.operators.rerun",
    "airflow_fc_async.operators.stop",
    "airflow_fc_async.operators.config",
    "airflow_fc_async.operators.history",
    "airflow_fc_async.sensors.fc",
    "airflow_fc_async.sensors.mns",
    "airflow_fc_async.triggers.fc",
    "airflow_fc_async.triggers.mns",
]
ALL = "all of ours"
GOAL_OVER_BASE_S = 0.030
MODES = ("cold", "cached")
_PROBE = (
    "import sys, time, importlib\n"
    "import airflow.sdk\n"
    "t = time.perf_counter()\n"
    "for m in sys.argv[1:]: importlib.import_module(m)\n"
    "print(time.perf_counter() - t)\n"
)


def probe_env(mode: str, cache_dir: str) -> dict[str, str]:
    """The environment of a sample in ``mode``: its own bytecode cache folder, written only when ``cached``."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=cache_dir)
    if mode == "cold":
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def sample(modules: list[str], env: dict[str, str] | None = None) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    return float(out.stdout.strip().splitlines()[-1])


def figures(times: dict[str, list[float]]) -> dict[str, Any]:
    base = spread(times[BASELINE])
    out: dict[str, Any] = {}
    for name, values in times.items():
        s = spread(values)
        out[name] = {
            "import_s": s,
            "over_baseline_s": s["median"] - base["median"],
            "ratio_to_baseline": s["median"] / base["median"],
        }
    return out


def goals(figs: dict[str, Any], modules: list[str], suffix: str = "") -> dict[str, bool]:
    base = figs[BASELINE]["import_s"]["median"]
    worst = max((figs[m]["import_s"]["median"] for m in modules), default=0.0)
    all_in = figs[ALL]["import_s"]["median"]
    return {
        f"every module <= 30 ms{suffix}": worst <= GOAL_OVER_BASE_S,
        f"all of ours together <= 30 ms{suffix}": all_in <= GOAL_OVER_BASE_S,
        f"every module below the baseline{suffix}": worst < base,
        f"all of ours together below the baseline{suffix}": all_in < base,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p3_parse_cost", description=__doc__)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--modules", nargs="*", default=OURS, help="our modules to time (default: all)")
    p.add_argument("--bytecode", nargs="+", choices=MODES, default=list(MODES), help="modes to measure")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    modes: list[str] = list(dict.fromkeys(args.bytecode))
    targets: dict[str, list[str]] = {
        BASELINE: [BASELINE],
        **{m: [m] for m in args.modules},
        ALL: args.modules,
    }
    times: dict[str, dict[str, list[float]]] = {mode: {t: [] for t in targets} for mode in modes}
    with tempfile.TemporaryDirectory(prefix="p3-pyc-") as tmp:
        envs = {mode: probe_env(mode, os.path.join(tmp, mode)) for mode in modes}
        if "cached" in envs:  # one import of every target writes the .pyc files the rounds read
            for modules in targets.values():
                sample(modules, envs["cached"])
        for _ in range(args.rounds):
            for mode in modes:
                for name, modules in targets.items():
                    times[mode][name].append(sample(modules, envs[mode]))
    figs = {mode: figures(times[mode]) for mode in modes}
    result: dict[str, Any] = {
        "rounds": args.rounds,
        "baseline": BASELINE,
        "over": "import airflow.sdk (done first in every interpreter, not counted)",
        "bytecode": modes[0],
        "modules": figs[modes[0]],
        "goals_met": goals(figs[modes[0]], args.modules),
        "loadavg_at_end": list(os.getloadavg()),
    }
    for mode in modes[1:]:
        result[f"modules_{mode}"] = figs[mode]
        result["goals_met"].update(goals(figs[mode], args.modules, f" ({mode} bytecode)"))
    path = write_result(NAME, result)
    for mode in modes:
        print_table(
            f"P3 import cost over `import airflow.sdk`, {mode} bytecode (median of {args.rounds} fresh interpreters)",
            ["module", "ms", "IQR ms", "ratio to baseline"],
            [
                (
                    name,
                    f["import_s"]["median"] * 1000,
                    (f["import_s"]["p75"] - f["import_s"]["p25"]) * 1000,
                    f["ratio_to_baseline"],
                )
                for name, f in figs[mode].items()
            ],
        )
    print(f"goals: {result['goals_met']}\nwritten: {path}")
    return result


if __name__ == "__main__":
    main()
