"""P1 trigger fleet: N concurrent ``FcAsyncTaskTrigger``s in one asyncio loop (as the triggerer runs them)
against the emulator in its own process, side by side with the peers' fixed-interval pattern (a 30 s poll).

Tasks run on the emulator's built-in ``emulator-sleep`` runtime (no process per task), durations spread evenly
over 1-60 s. Each phase (ours, the baseline, ours again under a CPU hog) gets a fresh emulator process and a fresh
child process for its loop, and starts once the machine's load settled (a bounded wait; the load average at each
phase start is in the JSON). Figures: detection lag (the task's ``endTime`` to the trigger's event) p50/p99,
status reads per task (emulator stats: GetAsyncTask + ListAsyncTasks), CPU seconds and peak RSS of the loop's
process, the loop's own lag (a 0.1 s sleep's overrun, as the triggerer's watchdog measures it: it warns above
0.2 s), and the server's side: the emulator's CPU and its time per request beside the client's. The triggers share
the loop's status poller (``core/status_poller.py``): one GetAsyncTask each, then ListAsyncTasks scans; the child
reports the poller's own counters too. The hog row runs one busy process (one core) for the phase, bounded in time.

``python -m benchmarks.p1_trigger_fleet [--scale 0.1]`` (``--scale 1``: 1000 tasks of 1-60 s, about 8 min).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import resource
import subprocess
import sys
import threading
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
WATCHDOG_SLEEP = 0.1  # the triggerer's watchdog: sleep 0.1 s, warn when the loop took > 0.2 s to come back
WATCHDOG_WARN = 0.2


def plan(scale: float) -> tuple[int, list[float], float]:
    """(count, durations, baseline poll): 1000 tasks over 1-60 s at scale 1, shrunk proportionally."""
    count = max(2, round(1000 * scale))
    lo, hi = 1.0 * scale, 60.0 * scale
    durations = [lo + (hi - lo) * i / (count - 1) for i in range(count)]
    return count, durations, BASELINE_POLL * scale


# -- the child: one mode in one asyncio loop ---------------------------------------------------------------
async def _ours(
    task_id: str, request_id: str | None = None, started_after: float | None = None
) -> tuple[float, dict[str, Any]]:
    """One trigger, as the operator defers it (with the push: its request id and the time before the invoke)."""
    from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger

    trigger = FcAsyncTaskTrigger(
        FUNCTION,
        task_id,
        poll_interval=TRIGGER_POLL_INTERVAL,
        request_id=request_id,
        started_after=started_after,
    )
    gen = trigger.run()
    try:
        event = await gen.__anext__()
    finally:
        await gen.aclose()
    seen = time.time()
    payload = event.payload
    return seen, {
        "status": payload["status"],
        "endTime": payload.get("task", {}).get("endTime"),
        "ended_by": payload.get("ended_by"),
    }


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


async def _watchdog(lags: list[float]) -> None:
    """The loop's lag: how late a 0.1 s sleep comes back (what the triggerer's watchdog checks)."""
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(WATCHDOG_SLEEP)
        lags.append(time.monotonic() - t0 - WATCHDOG_SLEEP)


async def _child_main(mode: str, poll: float) -> dict[str, Any]:
    """Start one waiter per task id as the parent invokes it (one line each on stdin, as operators defer one by
    one: under load the invokes take longer than the tasks' start delay), until stdin closes."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    lags: list[float] = []
    dog = asyncio.create_task(_watchdog(lags))
    ours, push = mode.startswith("trigger"), mode.startswith("push")
    loop = asyncio.get_running_loop()
    task_ids: list[str] = []
    waiters = []
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        task_id, request_id, invoked = line.split()
        task_ids.append(task_id)
        if push:
            waiter = _ours(task_id, request_id, float(invoked))
        else:
            waiter = _ours(task_id) if ours else _fixed(task_id, poll)
        waiters.append(asyncio.ensure_future(waiter))
    results = await asyncio.gather(*waiters)
    dog.cancel()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    from airflow_fc_async.core.destination_receiver import receiver_stats
    from airflow_fc_async.core.status_poller import poller_stats

    return {
        "loop_lag": {
            "p50_s": percentile(lags, 50),
            "p99_s": percentile(lags, 99),
            "max_s": max(lags),
            "samples": len(lags),
            "over_watchdog_warning": sum(1 for lag in lags if lag + WATCHDOG_SLEEP > WATCHDOG_WARN),
        },
        "poller": poller_stats(),
        "receivers": receiver_stats(),
        "warnings": {"count": _WARNINGS.count, "first": _WARNINGS.first},
        "events": {t: {"seen": seen, **info} for t, (seen, info) in zip(task_ids, results, strict=True)},
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count, self.first = 0, []

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.first) < 10:
            self.first.append(f"{record.name}: {record.getMessage()}"[:300])


_WARNINGS = _Warnings()


def child(argv: list[str]) -> None:
    mode, poll = argv[0], float(argv[1])

    logging.disable(logging.INFO)  # one INFO line per status change x 1000 triggers is not what we measure
    logging.getLogger().handlers[:] = [_WARNINGS]  # warnings are counted, and the first few kept for the JSON
    import airflow.sdk  # noqa: F401  (loaded before the clock starts, as in the triggerer)

    from airflow_fc_async.hooks.fc import FcHook  # noqa: F401
    from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger  # noqa: F401

    sys.stdout.write(_READY + "\n")
    sys.stdout.flush()

    out = asyncio.run(_child_main(mode, poll))
    sys.stdout.write("\n" + _MARK + json.dumps(out) + "\n")


# -- the parent: emulator, invocations, modes, figures ------------------------------------------------------
def _invoke(emu: Any, durations: list[float], delay: int, sink: Any = None) -> list[str]:
    from airflow_fc_async.core.credentials import Credentials
    from airflow_fc_async.core.fc import FcClient

    extra = json.loads(emu.connection_json)["extra"]
    creds = Credentials(extra["access_key_id"], extra["access_key_secret"])
    run = uuid.uuid4().hex[:8]
    ids = []
    with FcClient(emu.endpoint, creds) as client:
        for i, seconds in enumerate(durations):
            invoked = time.time()
            inv = client.invoke_async(
                FUNCTION, {"sleep": seconds}, task_id=f"p1-{run}-{i:04d}", delay_seconds=delay
            )
            ids.append(inv.task_id)
            if sink is not None:
                sink.write(f"{inv.task_id} {inv.request_id} {invoked:.3f}\n")
                sink.flush()
    return ids


class _Drain(threading.Thread):
    """Read a child's pipe to the end in the background."""

    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.lines: list[str] = []
        self.start()

    def run(self) -> None:
        for line in self.pipe:
            self.lines.append(line)


def settle(max_wait: float, target: float | None = None) -> dict[str, Any]:
    """Wait (at most ``max_wait`` s) until the 1-min load average is at or below ``target`` (the core count) or
    stops falling; the load average before and after."""
    target = float(os.cpu_count() or 1) if target is None else target
    before = list(os.getloadavg())
    t0 = time.monotonic()
    last = before[0]
    while time.monotonic() - t0 < max_wait and os.getloadavg()[0] > target:
        time.sleep(min(5.0, max_wait))
        now = os.getloadavg()[0]
        if now >= last - 0.05:  # not falling: the load is other work's, waiting longer buys nothing
            break
        last = now
    return {"load_before": before, "load_at_start": list(os.getloadavg()), "waited_s": time.monotonic() - t0}


def start_hog(seconds: float) -> subprocess.Popen[bytes]:
    """One busy core for at most ``seconds`` (it ends itself; the phase kills it when done)."""
    code = f"import time\nend = time.monotonic() + {seconds:.1f}\nwhile time.monotonic() < end:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code])


def _deploy(emu: Any, count: int, destination: str | None = None) -> None:
    """The sleep function; with ``destination`` (an MNS queue ARN) its records go there on success and failure."""
    config: dict[str, Any] = {"asyncTask": True}
    if destination:
        config["destinationConfig"] = {
            "onSuccess": {"destination": destination},
            "onFailure": {"destination": destination},
        }
    emu.deploy(
        FUNCTION,
        runtime="emulator-sleep",
        handler="index.handler",
        source="",
        timeout=3600,
        instanceConcurrency=200,
        asyncInvokeConfig=config,
    )


def run_phase(
    mode: str, durations: list[float], poll: float, *, settle_s: float, hog: bool = False
) -> dict[str, Any]:
    """One phase on a fresh emulator: ``trigger`` (ours), ``fixed_poll`` (the baseline), ``trigger_hog``."""
    instances = math.ceil(len(durations) / 200) + 1
    with start_emulator("--max-instances", str(instances)) as emu:
        _deploy(emu, len(durations))
        figures = run_mode(emu, mode, durations, poll, settle_s=settle_s, hog=hog)
    return figures


def _server(stats: dict[str, Any]) -> dict[str, Any]:
    latency = stats.get("latency_ms", {})
    return {
        "latency_ms": {a: latency[a] for a in ("GetAsyncTask", "ListAsyncTasks") if a in latency},
        "records_built": stats.get("records_built"),
    }


def run_mode(
    emu: Any, mode: str, durations: list[float], poll: float, *, settle_s: float = 0.0, hog: bool = False
) -> dict[str, Any]:
    """The child's loop against ``emu``: it imports, the load settles, the hog starts, the tasks are invoked."""
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
    load = settle(settle_s)
    hog_proc = start_hog(durations[-1] + poll + 60 + 0.05 * len(durations)) if hog else None
    try:
        emu.reset_stats()
        started = time.time()
        emu_cpu0 = emu.cpu_seconds()
        drains = [_Drain(proc.stdout), _Drain(proc.stderr)]  # a full pipe would block the child's loop
        ids = _invoke(emu, durations, delay, proc.stdin)
        proc.stdin.close()
        proc.wait()
        for drain in drains:
            drain.join()
        stdout, stderr = ("".join(d.lines) for d in drains)
        emu_cpu = emu.cpu_seconds() - emu_cpu0
    finally:
        if hog_proc is not None:
            hog_proc.kill()
            hog_proc.wait()
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed:\n{stderr[-4000:]}")
    out = json.loads(stdout.rsplit(_MARK, 1)[1])
    stats = emu.stats()
    reads = stats["requests"].get("GetAsyncTask", 0) + stats["requests"].get("ListAsyncTasks", 0)
    per_path = stats["paths"]
    policy = WaitPolicy.for_poll_interval(TRIGGER_POLL_INTERVAL)
    lags, lag_goal_misses, over_bound, statuses, own_bound = [], 0, 0, {}, 0
    missed: list[tuple[float, float]] = []
    by_signal: dict[str, list[tuple[float, float]]] = {}
    for task_id, seconds in zip(ids, durations, strict=True):
        ev = out["events"][task_id]
        statuses[ev["status"]] = statuses.get(ev["status"], 0) + 1
        lag = ev["seen"] - ev["endTime"] / 1000.0
        lags.append(lag)
        by_signal.setdefault(str(ev.get("ended_by")), []).append((seconds, lag))
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
        "ended_by": {
            name: {
                "tasks": len(pairs),
                "lag_p50_s": percentile([lag for _, lag in pairs], 50),
                "lag_p99_s": percentile([lag for _, lag in pairs], 99),
                "lag_max_s": max(lag for _, lag in pairs),
                "over_lag_goal": sum(1 for d, lag in pairs if lag > max(1.0, 0.05 * d)),
            }
            for name, pairs in by_signal.items()
        },
        "over_lag_goal_duration_lag": missed[:30] if mode != "fixed_poll" else None,
        "status_reads": reads,
        "status_reads_per_task": reads / len(ids),
        "tasks_over_max_reads": over_bound if mode != "fixed_poll" else None,
        "sum_max_reads": own_bound,
        "poller": out["poller"] if mode != "fixed_poll" else None,
        "receivers": out["receivers"],
        "warnings": out["warnings"],
        "loop_lag": out["loop_lag"],
        "fallback_reads": stats["requests"].get("GetAsyncTask", 0) - len(ids)
        if mode != "fixed_poll"
        else None,
        "client_list_ms_per_request": (
            out["poller"].get("scan_ms", 0) / max(1, out["poller"].get("list_requests", 0))
            if mode != "fixed_poll"
            else None
        ),
        "emulator_cpu_seconds": emu_cpu,
        "server": _server(stats),
        "load": load,
        "cpu_hog": hog,
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
    p.add_argument(
        "--settle",
        type=float,
        default=None,
        help="longest wait for the load to settle per phase, s (60 * scale)",
    )
    p.add_argument("--no-hog", action="store_true", help="skip the row under a CPU hog")
    p.add_argument("--only-ours", action="store_true", help="diagnosis: the trigger phase alone")
    args = p.parse_args(argv)
    count, durations, poll = plan(args.scale)
    settle_s = 60.0 * args.scale if args.settle is None else args.settle
    from airflow_fc_async.core.waiting import WaitPolicy

    ours = run_phase("trigger", durations, poll, settle_s=settle_s)
    if args.only_ours:
        print(json.dumps({k: v for k, v in ours.items() if k not in ("emulator_requests",)}, indent=1))
        return ours
    base = run_phase("fixed_poll", durations, poll, settle_s=settle_s)
    hogged = None if args.no_hog else run_phase("trigger_hog", durations, poll, settle_s=settle_s, hog=True)
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
        "trigger_hog": hogged,
        "hog_ratios": None
        if hogged is None
        else {
            "lag_p50": hogged["lag_p50_s"] / ours["lag_p50_s"],
            "lag_p99": hogged["lag_p99_s"] / ours["lag_p99_s"],
            "loop_lag_p99": hogged["loop_lag"]["p99_s"] / max(1e-6, ours["loop_lag"]["p99_s"]),
        },
        "load_at_phase_start": {
            m["mode"]: m["load"]["load_at_start"] for m in (ours, base, hogged) if m is not None
        },
    }
    path = write_result(NAME, result)
    keys: list[tuple[str, Any]] = [
        ("lag p50 s", "lag_p50_s"),
        ("lag p99 s", "lag_p99_s"),
        ("lag max s", "lag_max_s"),
        ("tasks over lag goal", "tasks_over_lag_goal"),
        ("status reads / task", "status_reads_per_task"),
        ("CPU s (loop process)", "cpu_seconds"),
        ("cores busy", "cores_busy"),
        ("peak RSS MB", "peak_rss_mb"),
        ("loop lag p99 s", lambda m: m["loop_lag"]["p99_s"]),
        ("loop lag max s", lambda m: m["loop_lag"]["max_s"]),
        ("emulator CPU s", "emulator_cpu_seconds"),
        ("load avg at start", lambda m: m["load"]["load_at_start"][0]),
    ]

    def get(m: dict[str, Any] | None, k: Any) -> Any:
        return "-" if m is None else (k(m) if callable(k) else m[k])

    print_table(
        f"P1 trigger fleet: {count} tasks of {durations[0]:g}-{durations[-1]:g} s",
        ["figure", "FcAsyncTaskTrigger", f"fixed {poll:g} s poll", "ratio", "ours, 1 core hogged"],
        [
            (
                label,
                get(ours, k),
                get(base, k),
                (get(ours, k) / get(base, k)) if get(base, k) else float("nan"),
                get(hogged, k),
            )
            for label, k in keys
        ],
    )
    print(f"goals: {goals}\nwritten: {path}")
    return result


if __name__ == "__main__":
    main()
