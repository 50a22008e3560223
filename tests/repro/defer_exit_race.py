"""Reproduce Airflow's defer-exit race on a real LocalExecutor deployment, with no code of this provider.

``python -m tests.repro.defer_exit_race [--runs 10]`` starts api-server, scheduler, dag-processor and triggerer
(tests/airflow_processes.py), runs ``repro_defer_exit_fast`` (the task process exits at once after deferring) and
``repro_defer_exit_slow`` (it lingers 6 s) ``--runs`` times each, one run at a time, and prints per DAG how many
runs failed and how many of the scheduler's "finished with state success, but the task instance's state
attribute is ..." lines the scheduler log has. Upstream: apache/airflow#66374, #67287, #71580, #72716.

It also prints, per DAG, each task process's "exit gap": seconds from the task's last log line (its final
"::endgroup::") to the supervisor's "Workload finished", for the deferral step and the resumed step apart. On
Airflow 3.3.2 about half of these gaps are 5 s, ``[workers] min_heartbeat_interval``: the child closes its
sockets just before it becomes reapable; the supervisor, seeing every socket closed and ``waitpid(WNOHANG)``
still empty, sleeps in ``select()`` on an empty selector until its next heartbeat tick
(``supervisor.py`` ``_monitor_subprocess``). ``--min-heartbeat-interval 1`` shows the bound moving with it.
"""

from __future__ import annotations

import argparse
import json
import re
import time
import uuid
from pathlib import Path

from tests.airflow_processes import deployment, task_steps

HERE = Path(__file__).resolve().parent
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
RACE = re.compile(r"finished with state success, but the task instance's state attribute is (\w+)")


def exit_gaps(home: Path, dag_id: str) -> dict[str, list[float]]:
    """``final_state -> [gap, ...]``: each step's last line to its supervisor's "Workload finished"."""
    gaps: dict[str, list[float]] = {}
    for step in task_steps(home, dag_id):
        gaps.setdefault(step.state, []).append(round(step.finished - step.last_line, 2))
    return {state: sorted(values) for state, values in gaps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--fast-only", action="store_true", help="only the DAG whose process exits at once")
    parser.add_argument(
        "--min-heartbeat-interval", type=int, help="[workers] min_heartbeat_interval (default 5)"
    )
    args = parser.parse_args()
    dags = (
        ("repro_defer_exit_fast",) if args.fast_only else ("repro_defer_exit_fast", "repro_defer_exit_slow")
    )
    env = {}
    if args.min_heartbeat_interval is not None:
        env["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"] = str(args.min_heartbeat_interval)
    results = {}
    with deployment([HERE / "dags"], json.dumps({"conn_type": "generic"}), PROCESSES, dags, env) as cluster:
        for dag_id in dags:
            cluster.unpause(dag_id)
            log = cluster.log_path("scheduler")
            before = len(RACE.findall(log.read_text(errors="replace")))
            states: dict[str, int] = {}
            t0 = time.monotonic()
            for _ in range(args.runs):
                run_id = f"repro-{uuid.uuid4().hex[:8]}"
                cluster.trigger(dag_id, run_id)
                state = cluster.wait_for(
                    f"{dag_id}/{run_id}",
                    lambda r=run_id, d=dag_id: (s := cluster.run_state(d, r)) in ("success", "failed") and s,
                    300,
                    0.5,
                )
                states[state] = states.get(state, 0) + 1
            found = RACE.findall(log.read_text(errors="replace"))[before:]
            results[dag_id] = {
                "runs": states,
                "scheduler_race_lines": len(found),
                "states_seen": sorted(set(found)),
                "seconds": round(time.monotonic() - t0, 1),
                "exit_gaps": exit_gaps(cluster.home, dag_id),
            }
            print(f"[repro] {dag_id}: {results[dag_id]}", flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
