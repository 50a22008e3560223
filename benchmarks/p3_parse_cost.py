"""P3 DAG-parse cost: import time of every operator, sensor and trigger module over ``import airflow.sdk``, in
fresh interpreters, against the alibaba provider's ``analyticdb_spark`` operator module measured the same way.

Each sample is a new interpreter that imports ``airflow.sdk`` first (a DAG file does), then times the import of
the target module alone (``time.perf_counter`` around ``importlib.import_module``). Rounds interleave the targets
so that load on the machine hits all of them alike. ``python -m benchmarks.p3_parse_cost [--rounds 15]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
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
_PROBE = (
    "import sys, time, importlib\n"
    "import airflow.sdk\n"
    "t = time.perf_counter()\n"
    "for m in sys.argv[1:]: importlib.import_module(m)\n"
    "print(time.perf_counter() - t)\n"
)


def sample(modules: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p3_parse_cost", description=__doc__)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--modules", nargs="*", default=OURS, help="our modules to time (default: all)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    targets: dict[str, list[str]] = {
        BASELINE: [BASELINE],
        **{m: [m] for m in args.modules},
        ALL: args.modules,
    }
    times: dict[str, list[float]] = {t: [] for t in targets}
    for _ in range(args.rounds):
        for name, modules in targets.items():
            times[name].append(sample(modules))
    base = spread(times[BASELINE])
    figures: dict[str, Any] = {}
    rows = []
    for name in targets:
        s = spread(times[name])
        figures[name] = {
            "import_s": s,
            "over_baseline_s": s["median"] - base["median"],
            "ratio_to_baseline": s["median"] / base["median"],
        }
        rows.append((name, s["median"] * 1000, (s["p75"] - s["p25"]) * 1000, s["median"] / base["median"]))
    worst = max((figures[m]["import_s"]["median"] for m in args.modules), default=0.0)
    all_in = figures[ALL]["import_s"]["median"]
    result = {
        "rounds": args.rounds,
        "baseline": BASELINE,
        "over": "import airflow.sdk (done first in every interpreter, not counted)",
        "modules": figures,
        "goals_met": {
            "every module <= 30 ms": worst <= GOAL_OVER_BASE_S,
            "all of ours together <= 30 ms": all_in <= GOAL_OVER_BASE_S,
            "every module below the baseline": worst < base["median"],
            "all of ours together below the baseline": all_in < base["median"],
        },
    }
    path = write_result(NAME, result)
    print_table(
        f"P3 import cost over `import airflow.sdk` (median of {args.rounds} fresh interpreters)",
        ["module", "ms", "IQR ms", "ratio to baseline"],
        rows,
    )
    print(f"goals: {result['goals_met']}\nwritten: {path}")
    return result


if __name__ == "__main__":
    main()
