"""P1-push: P1's fleet (N ``FcAsyncTaskTrigger``s in one loop, tasks of 1-60 s on the emulator's ``emulator-sleep``
runtime) when the function's async config sends a record to an MNS queue on success and on failure: the record
ends each wait (``core/push_completion.py``), one GetAsyncTask confirms it, the status poll runs behind it as a
slow fallback (``WaitPolicy.behind_push``).

Two phases, each on a fresh emulator after the load settled (the load average at each start is in the JSON):
``push`` (every record delivered): detection lag (``endTime`` to the event) p50/p99 and status reads per task
(GetAsyncTask + ListAsyncTasks); ``push_drop`` (the emulator's fault injection drops 5% of the records,
``DestinationRecord`` rule, seeded): no task missed, and each task whose record was lost (its event says
``ended_by: status_poll``) found within P1's goal, ``max(1 s, 5% of the duration)``. The triggers are built as the
operator defers them: with the invocation's request id, and ``started_after`` (the time before the invoke). The
records are only looked at, so they stay in the queue (handed back at once, as for any consumer of it).

``python -m benchmarks.p1_push [--scale 0.1]`` (``--scale 1``: 1000 tasks of 1-60 s, about 5 min).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from airflow_fc_async.core.endpoints import mns_queue_arn
from benchmarks._common import print_table, start_emulator, write_result
from benchmarks.p1_trigger_fleet import _deploy, plan, run_mode

NAME = "p1_push"
QUEUE = "bench-records"
DROP_RATE = 0.05


def run_phase(
    mode: str, durations: list[float], poll: float, *, settle_s: float, drop: float
) -> dict[str, Any]:
    instances = math.ceil(len(durations) / 200) + 1
    with start_emulator("--max-instances", str(instances)) as emu:
        extra = json.loads(emu.connection_json)["extra"]
        arn = mns_queue_arn(extra.get("region", ""), extra.get("account_id", ""), QUEUE)
        _deploy(emu, len(durations), destination=arn)
        if drop:
            emu.admin(
                "POST",
                "faults",
                {"rules": [{"action": "DestinationRecord", "rates": {"drop": drop}}], "seed": 19},
            )
        figures = run_mode(emu, mode, durations, poll, settle_s=settle_s)
        stats = emu.stats()
    figures["records_dropped"] = stats.get("faults", {}).get("DestinationRecord:drop", 0)
    figures["async_config_reads"] = stats["requests"].get("GetAsyncInvokeConfig", 0)
    figures["mns_requests"] = {k: v for k, v in stats["requests"].items() if "Message" in k or "Queue" in k}
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.p1_push", description=__doc__)
    p.add_argument("--scale", type=float, default=1.0, help="shrinks task count and durations (0.1: quick)")
    p.add_argument("--settle", type=float, default=None, help="longest wait for the load to settle, s")
    p.add_argument(
        "--drop", type=float, default=DROP_RATE, help="share of records dropped in the second phase"
    )
    args = p.parse_args(argv)
    count, durations, poll = plan(args.scale)
    settle_s = 60.0 * args.scale if args.settle is None else args.settle

    push = run_phase("push", durations, poll, settle_s=settle_s, drop=0.0)
    dropped = run_phase("push_drop", durations, poll, settle_s=settle_s, drop=args.drop)
    lost = dropped["ended_by"].get("status_poll", {"tasks": 0, "over_lag_goal": 0})
    goals = {
        "lag_p50_s<=0.1": push["lag_p50_s"] <= 0.1,
        "lag_p99_s<=0.5": push["lag_p99_s"] <= 0.5,
        "status_reads_per_task<=1.5": push["status_reads_per_task"] <= 1.5,
        "no task missed with records dropped": dropped["statuses"].get("success", 0) == count,
        "lost records found within max(1s,5%duration)": lost["over_lag_goal"] == 0,
    }
    result = {
        "scale": args.scale,
        "tasks": count,
        "durations_s": [durations[0], durations[-1]],
        "drop_rate": args.drop,
        "push": push,
        "push_drop": dropped,
        "goals_met": goals,
        "load_at_phase_start": {m["mode"]: m["load"]["load_at_start"] for m in (push, dropped)},
    }
    path = write_result(NAME, result)

    def signal(m: dict[str, Any], name: str, key: str) -> Any:
        return m["ended_by"].get(name, {}).get(key, "-")

    keys: list[tuple[str, Any]] = [
        ("lag p50 s", lambda m: m["lag_p50_s"]),
        ("lag p99 s", lambda m: m["lag_p99_s"]),
        ("lag max s", lambda m: m["lag_max_s"]),
        ("ended by the record", lambda m: signal(m, "destination_record", "tasks")),
        ("ended by the poll", lambda m: signal(m, "status_poll", "tasks")),
        ("poll-ended: lag max s", lambda m: signal(m, "status_poll", "lag_max_s")),
        ("poll-ended: over P1 goal", lambda m: signal(m, "status_poll", "over_lag_goal")),
        ("records dropped", lambda m: m["records_dropped"]),
        ("succeeded", lambda m: m["statuses"].get("success", 0)),
        ("status reads / task", lambda m: m["status_reads_per_task"]),
        ("GetAsyncInvokeConfig", lambda m: m["async_config_reads"]),
        ("CPU s (loop process)", lambda m: m["cpu_seconds"]),
        ("loop lag p99 s", lambda m: m["loop_lag"]["p99_s"]),
        ("emulator CPU s", lambda m: m["emulator_cpu_seconds"]),
        ("load avg at start", lambda m: m["load"]["load_at_start"][0]),
    ]
    print_table(
        f"P1-push: {count} tasks of {durations[0]:g}-{durations[-1]:g} s, records to MNS on success and failure",
        ["figure", "push", f"push, {args.drop:.0%} of records dropped"],
        [(label, k(push), k(dropped)) for label, k in keys],
    )
    print(f"goals: {goals}\nwritten: {path}")
    return result


if __name__ == "__main__":
    main()
