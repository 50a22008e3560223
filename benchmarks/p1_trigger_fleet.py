"""P1 trigger fleet: N concurrent ``FcAsyncTaskTrigger``s in one asyncio loop (as the triggerer runs them)
against the emulator in its own process, side by side with the peers' fixed-interval pattern (a 30 s poll).

Tasks run on the emulator's built-in ``emulator-sleep`` runtime (no process per task), durations spread evenly
over 1-60 s. Each mode runs in a fresh child process, so its CPU seconds and peak RSS are its own. Figures:
detection lag (the task's ``endTime`` to the trigger's event) p50/p99, status reads per task (emulator stats:
GetAsyncTask + ListAsyncTasks), CPU seconds of the loop's process, peak RSS. The triggers share the loop's status
poller (``core/status_poller.py``): one GetAsyncTask each, then ListAsyncTasks scans; the child reports the
poller's own counters too.

``python -m benchmarks.p1_trigger_fleet [--scale 0.1]`` (``--scale 1``: 1000 tasks of 1-60 s, about 3 min).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import time
import uuid
from typing import Any

from benchmarks._common import percentile, print_table, start_emulator, write_result

NAME = "p1_trigger_fleet"
FUNCTION = "bench-sleep"
TRIGGER_POLL_INTERVAL = 15.0  # the trigger's default poll_interval (the WaitPolicy's cap)
BASELINE_POLL = 30.0
_MARK = "P1-RESULT "
_READY = "P1-READY"


def plan(scale: float) -> tuple[int, list[float], float]:
    """(count, durations, baseline poll): 1000 tasks over 1-60 s at scale 1, shrunk proportionally."""
    count = max(2, round(1000 * scale))
    lo, hi = 1.0 * scale, 60.0 * scale
    durations = [lo + (hi - lo) * i / (count - 1) for i in range(count)]
    return count, durations, BASELINE_POLL * scale


# -- the child: one mode in one asyncio loop ---------------------------------------------------------------
async def _ours(task_id: str) -> tuple[float, dict[str, Any]]:
    from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger

    trigger = FcAsyncTaskTrigger(FUNCTION, task_id, poll_interval=TRIGGER_POLL_INTERVAL)
    gen = trigger.run()
    try:
        event = await gen.__anext__()
    finally:
        await gen.aclose()
    seen = time.time()
    payload = event.payload
    return seen, {"status": payload["status"], "endTime": payload.get("task", {}).get("endTime")}


async def _fixed(task_id: str, poll: float) -> tuple[float, dict[str, Any]]:
    """The peers' pattern: sleep a fixed interval, read the task, until it ends."""
    from airflow_fc_async.hooks.fc import FcHook

    hook = FcHook()
    try:
        while True:
            await asyncio.sleep(poll)
            task = await hook.aget_async_task(FUNCTION, task_id)
            if task.is_terminal:
                status = "success" if task.is_successful else "failure"
                return time.time(), {"status": status, "endTime": task.raw.get("endTime")}
    finally:
        await hook.aclose()


async def _child_main(mode: str, task_ids: list[str], poll: float) -> dict[str, Any]:
    cpu0, wall0 = time.process_time(), time.monotonic()
    coros = [_ours(t) for t in task_ids] if mode == "trigger" else [_fixed(t, poll) for t in task_ids]
    results = await asyncio.gather(*coros)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    from airflow_fc_async.core.status_poller import poller_stats

    return {
        "poller": poller_stats(),
        "events": {t: {"seen": seen, **info} for t, (seen, info) in zip(task_ids, results, strict=True)},
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def child(argv: list[str]) -> None:
    mode, poll = argv[0], float(argv[1])
    import logging

    logging.disable(logging.WARNING)  # one INFO line per status change x 1000 triggers is not what we measure
    import airflow.sdk  # noqa: F401  (loaded before the clock starts, as in the triggerer)

    from airflow_fc_async.hooks.fc import FcHook  # noqa: F401
    from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger  # noqa: F401

    sys.stdout.write(_READY + "\n")
    sys.stdout.flush()
    task_ids = json.loads(sys.stdin.read())  # the parent invokes the tasks once this process is ready

    out = asyncio.run(_child_main(mode, task_ids, poll))
    sys.stdout.write("\n" + _MARK + json.dumps(out) + "\n")


# -- the parent: emulator, invocations, modes, figures ------------------------------------------------------
def _invoke(emu: Any, durations: list[float], delay: int) -> list[str]:
    from airflow_fc_async.core.credentials import Credentials
    from airflow_fc_async.core.fc import FcClient

    extra = json.loads(emu.connection_json)["extra"]
    creds = Credentials(extra["access_key_id"], extra["access_key_secret"])
    run = uuid.uuid4().hex[:8]
    ids = []
    with FcClient(emu.endpoint, creds) as client:
        for i, seconds in enumerate(durations):
            inv = client.invoke_async(
                FUNCTION, {"sleep": seconds}, task_id=f"p1-{run}-{i:04d}", delay_seconds=delay
            )
            ids.append(inv.task_id)
    return ids


def run_mode(emu: Any, mode: str, durations: list[float], poll: float) -> dict[str, Any]:
    from airflow_fc_async.core.waiting import WaitPolicy

    delay = max(1, math.ceil(len(durations) * 0.004))  # every task starts after all are invoked
    env = dict(os.environ, AIRFLOW_CONN_FC_DEFAULT=emu.connection_json)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.p1_trigger_fleet", "--child", mode, str(poll)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    for line in proc.stdout:  # imports done (Airflow's may print)
        if line.strip() == _READY:
            break
    emu.reset_stats()
    ids = _invoke(emu, durations, delay)
    emu.reset_stats()
    started = time.time()
    stdout, stderr = proc.communicate(json.dumps(ids))
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed:\n{stderr[-4000:]}")
    out = json.loads(stdout.rsplit(_MARK, 1)[1])
    stats = emu.stats()
    reads = stats["requests"].get("GetAsyncTask", 0) + stats["requests"].get("ListAsyncTasks", 0)
    per_path = stats["paths"]
    policy = WaitPolicy.for_poll_interval(TRIGGER_POLL_INTERVAL)
    lags, lag_goal_misses, over_bound, statuses, own_bound = [], 0, 0, {}, 0
    missed: list[tuple[float, float]] = []
    for task_id, seconds in zip(ids, durations, strict=True):
        ev = out["events"][task_id]
        statuses[ev["status"]] = statuses.get(ev["status"], 0) + 1
        lag = ev["seen"] - ev["endTime"] / 1000.0
        lags.append(lag)
        if lag > max(1.0, 0.05 * seconds):
            lag_goal_misses += 1
            missed.append((round(seconds, 2), round(lag, 3)))
        task_reads = per_path.get(f"GET /2023-03-30/functions/{FUNCTION}/async-tasks/{task_id}", 0)
        waited = ev["endTime"] / 1000.0 - started
        own_bound += policy.max_reads(max(waited, 0.0))
        if task_reads > policy.max_reads(max(waited, 0.0)):
            over_bound += 1
    busy = out["cpu_seconds"] / out["wall_seconds"]
    return {
        "mode": mode,
        "tasks": len(ids),
        "statuses": statuses,
        "lag_p50_s": percentile(lags, 50),
        "lag_p90_s": percentile(lags, 90),
        "lag_p99_s": percentile(lags, 99),
        "lag_max_s": max(lags),
        "tasks_over_lag_goal": lag_goal_misses,
        "over_lag_goal_duration_lag": missed[:30] if mode == "trigger" else None,
        "status_reads": reads,
        "status_reads_per_task": reads / len(ids),
        "tasks_over_max_reads": over_bound if mode == "trigger" else None,
        "sum_max_reads": own_bound,
        "poller": out["poller"] if mode == "trigger" else None,
        "cpu_seconds": out["cpu_seconds"],
        "wall_seconds": out["wall_seconds"],
        "cores_busy": busy,
        "peak_rss_mb": out["peak_rss_mb"],
        "emulator_requests": stats["requests"],
        "start_delay_s": delay,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return {}
    p = argparse.ArgumentParser(prog="python -m benchmarks.p1_trigger_fleet", description=__doc__)
    p.add_argument("--scale", type=float, default=1.0, help="shrinks task count and durations (0.1: quick)")
    args = p.parse_args(argv)
    count, durations, poll = plan(args.scale)
    from airflow_fc_async.core.waiting import WaitPolicy

    per_function = 200
    instances = math.ceil(count / per_function) + 1
    with start_emulator("--max-instances", str(instances)) as emu:
        emu.deploy(
            FUNCTION,
            runtime="emulator-sleep",
            handler="index.handler",
            source="",
            timeout=3600,
            instanceConcurrency=per_function,
            asyncInvokeConfig={"asyncTask": True},
        )
        modes = [run_mode(emu, "trigger", durations, poll), run_mode(emu, "fixed_poll", durations, poll)]
        emulator_cpu = emu.cpu_seconds()
    ours, base = modes
    policy = WaitPolicy.for_poll_interval(TRIGGER_POLL_INTERVAL)
    goals = {
        "lag_p50_s<=0.5": ours["lag_p50_s"] <= 0.5,
        "lag_p99<=max(1s,5%duration) for 99% of tasks": ours["tasks_over_lag_goal"] <= 0.01 * count,
        "cores_busy<=1": ours["cores_busy"] <= 1.0,
        "reads<=WaitPolicy.max_reads": ours["tasks_over_max_reads"] == 0,
        "all reads<=sum of WaitPolicy.max_reads": ours["status_reads"] <= ours["sum_max_reads"],
    }
    result = {
        "scale": args.scale,
        "tasks": count,
        "durations_s": [durations[0], durations[-1]],
        "wait_policy": {
            "first_delay": policy.first_delay,
            "min_interval": policy.min_interval,
            "growth": policy.growth,
            "max_interval": policy.max_interval,
            "max_reads_for_longest": policy.max_reads(durations[-1]),
        },
        "baseline": f"fixed {poll:g} s poll (GetAsyncTask)",
        "trigger": ours,
        "fixed_poll": base,
        "ratios": {
            "lag_p50": ours["lag_p50_s"] / base["lag_p50_s"],
            "lag_p99": ours["lag_p99_s"] / base["lag_p99_s"],
            "reads_per_task": ours["status_reads_per_task"] / base["status_reads_per_task"],
            "cpu_seconds": ours["cpu_seconds"] / base["cpu_seconds"],
            "peak_rss": ours["peak_rss_mb"] / base["peak_rss_mb"],
        },
        "goals_met": goals,
        "emulator_cpu_seconds_total": emulator_cpu,
    }
    path = write_result(NAME, result)
    keys = [
        ("lag p50 s", "lag_p50_s"),
        ("lag p99 s", "lag_p99_s"),
        ("lag max s", "lag_max_s"),
        ("tasks over lag goal", "tasks_over_lag_goal"),
        ("status reads / task", "status_reads_per_task"),
        ("CPU s (loop process)", "cpu_seconds"),
        ("cores busy", "cores_busy"),
        ("peak RSS MB", "peak_rss_mb"),
    ]
    print_table(
        f"P1 trigger fleet: {count} tasks of {durations[0]:g}-{durations[-1]:g} s",
        ["figure", "FcAsyncTaskTrigger", f"fixed {poll:g} s poll", "ratio"],
        [(label, ours[k], base[k], (ours[k] / base[k]) if base[k] else float("nan")) for label, k in keys],
    )
    print(f"goals: {goals}\nwritten: {path}")
    return result


if __name__ == "__main__":
    main()
