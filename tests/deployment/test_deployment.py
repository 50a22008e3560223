"""The provider on a production-shaped deployment: PostgreSQL, CeleryExecutor + Redis, 2 workers, 2 triggerers.

Everything is checked through the REST API and the task logs the api-server serves (what the UI shows), and
against the emulator's own counts (executions per FC task, StopAsyncTask requests):

- every example DAG ends as its tags expect; each FC line appears once in each task log;
- 50 mapped deferrable invocations: every run right, every destination record in XCom, each log line once;
- a Celery worker SIGKILLed mid-wait: the retry (on the other worker) re-attaches, the function runs once;
- one triggerer SIGKILLed mid-wait: the other adopts its triggers, nothing is stopped, every task completes, no
  record lost (time to adoption printed);
- mark failed / clear of a deferred and of a running task: the FC task is Stopped (seconds printed).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from airflow_fc_async.core.models import TaskStatus
from tests.airflow_processes import fc_tasks, log_text, stop_requests, user_action_stops

from .conftest import FUNCTION, Deployment, count

RUN_TIMEOUT = 600.0
RESULTS = Path(__file__).parent / "results"  # logs that failed a check (git-ignored)
FINAL = ("success", "failed")


def wait_run(dep: Deployment, dag_id: str, run_id: str, timeout: float = RUN_TIMEOUT) -> str:
    return dep.cluster.wait_for(
        f"run {dag_id}/{run_id} to end",
        lambda: (s := dep.cluster.run_state(dag_id, run_id)) in FINAL and s,
        timeout,
        1.0,
    )


def repeated_lines(log: str) -> list[str]:
    """The FC lines (progress, function output, results) that a task log shows more than once."""
    lines = [line.strip() for line in log.splitlines() if "FC task " in line or "Destination record" in line]
    return sorted(line for line, n in Counter(lines).items() if n > 1)


def trigger_sources(items: list[dict[str, Any]]) -> list[str]:
    """The triggerer log files a served log merges (the events between the "Log message source details" group
    markers name its files): two when both triggerers ran the task's trigger. Airflow reassigns a trigger whose
    triggerer missed its heartbeat for ``triggerer_health_check_threshold``; the first one runs it until its next
    loop notices, so both write its lines (file_task_handler's ``add_triggerer_suffix`` keeps them apart)."""
    sources, inside = set(), False
    for item in items:
        event = str(item.get("event", ""))
        if event.startswith("::group::Log message source details"):
            inside = True
        elif event.startswith("::endgroup::"):
            inside = False
        elif inside and ".trigger." in event:
            sources.add(event)
    return sorted(sources)


def keep_log(name: str, items: list[dict[str, Any]]) -> None:
    """Keep a served task log that failed a check, every event with its timestamp and the sources header (the
    deployment's home is removed at the end)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.jsonl"
    path.write_text("".join(json.dumps(item, default=str) + "\n" for item in items))


def check_log(
    items: list[dict[str, Any]], name: str, repeated: dict[str, Any], overlap: dict[str, Any]
) -> None:
    """A repeated FC line is a defect, unless the trigger ran on both triggerers (then it is counted apart:
    Airflow's failover runs a trigger at least once, not exactly once)."""
    again = repeated_lines(log_text(items))
    if not again:
        return
    sources = trigger_sources(items)
    (overlap if len(sources) > 1 else repeated)[name] = again[:3]
    keep_log(f"repeated-{name}", items)


def fc_task_logs(dep: Deployment, dag_id: str, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """The served log of every task instance of the run that ran an FC operator, by ``task[map]``."""
    out = {}
    for ti in dep.cluster.tis(dag_id, run_id):
        if "Fc" not in str(ti.get("operator") or ""):
            continue
        tries = int(ti.get("try_number") or 1)
        name = f"{ti['task_id']}[{ti['map_index']}]"
        out[name] = dep.cluster.task_log_items(dag_id, run_id, ti["task_id"], tries, int(ti["map_index"]))
    return out


def test_example_dags(dep: Deployment) -> None:
    """Every example DAG, ``DEPLOY_EXAMPLE_ROUNDS`` times in a row (1 by default; the long run: 20)."""
    cluster = dep.cluster
    dags = cluster.api("GET", "/dags", params={"tags": "example", "limit": 100})["dags"]
    assert len(dags) >= 5, dags
    for dag in dags:
        cluster.unpause(dag["dag_id"])
    runs: list[tuple[str, str, str]] = []
    bad: list[str] = []
    repeated: dict[str, Any] = {}
    overlap: dict[str, Any] = {}
    rounds = int(os.environ.get("DEPLOY_EXAMPLE_ROUNDS", "1"))
    for k in range(1, rounds + 1):
        # A round runs every DAG once, side by side; the rounds follow each other (each DAG's runs in a row).
        started, bad_before = time.monotonic(), len(bad)
        rnd = []
        for dag in dags:
            dag_id = dag["dag_id"]
            expected = "failed" if any(t["name"] == "expect:failed" for t in dag["tags"]) else "success"
            run_id = f"examples-{uuid.uuid4().hex[:8]}"
            cluster.trigger(dag_id, run_id)
            rnd.append((dag_id, run_id, expected))
        for dag_id, run_id, expected in rnd:
            state = wait_run(dep, dag_id, run_id)
            if state != expected:
                bad.append(f"{dag_id}/{run_id}: {state} (expected {expected})")
            for name, items in fc_task_logs(dep, dag_id, run_id).items():
                check_log(items, f"{dag_id}-{run_id}-{name}", repeated, overlap)
        runs += rnd
        if rounds > 1:  # the long run: progress per round, so that a stopped run still says how far it got
            print(
                f"\n[deployment] examples round {k}/{rounds}: {len(rnd) - (len(bad) - bad_before)}/{len(rnd)} "
                f"as expected in {time.monotonic() - started:.0f} s; not as expected so far: {bad}",
                flush=True,
            )
    count("runs", len(runs) - len(bad), len(runs))
    per_dag = Counter(d for d, _, _ in runs)
    print(
        f"\n[deployment] example DAGs: {len(runs) - len(bad)}/{len(runs)} runs as expected ({dict(per_dag)}); "
        f"not as expected: {bad}; repeated lines: {repeated}; repeated because both triggerers ran the "
        f"trigger: {overlap}"
    )
    assert not bad, bad
    assert not repeated, repeated


def test_mapped_50_deferrable_with_destination_records(dep: Deployment) -> None:
    cluster, emu = dep.cluster, dep.emu
    dag_id, run_id, n = "dep_fc_mapped", f"mapped-{uuid.uuid4().hex[:8]}", 50
    t0 = time.monotonic()
    cluster.trigger(dag_id, run_id, {"count": n, "seconds": 10})
    state = wait_run(dep, dag_id, run_id)
    took = time.monotonic() - t0
    tis = [ti for ti in cluster.tis(dag_id, run_id) if ti["task_id"] == "invoke"]
    ok = [ti for ti in tis if ti["state"] == "success"]
    records, executions = 0, Counter[int]()
    repeated: dict[str, Any] = {}
    overlap: dict[str, Any] = {}
    for ti in tis:
        i = int(ti["map_index"])
        result = cluster.xcom(dag_id, run_id, "invoke", map_index=i) or {}
        record = result.get("destination_record") or {}
        if record and (record.get("requestContext") or {}).get("requestId") == result.get("request_id"):
            records += 1
        for task in fc_tasks(emu, FUNCTION, dag_id, run_id, map_index=i):
            executions[emu.stats()["executions"].get(task.task_id, 0)] += 1
        items = cluster.task_log_items(dag_id, run_id, "invoke", int(ti["try_number"]), i)
        check_log(items, f"{dag_id}-{run_id}-invoke[{i}]", repeated, overlap)
    count("runs", int(state == "success"), 1)
    count("records", records, n)
    print(
        f"\n[deployment] {n} mapped deferrable invocations: run {state} in {took:.0f} s, {len(ok)}/{n} task "
        f"instances success ({dict(Counter(ti['state'] for ti in tis))}), {records}/{n} destination records in "
        f"XCom, executions per FC task {dict(executions)}, "
        f"log lines repeated in {len(repeated)} logs (and in {len(overlap)} whose trigger both triggerers ran)"
    )
    assert state == "success" and len(ok) == n
    assert executions == Counter({1: n}), executions
    assert records == n
    assert not repeated, repeated


def test_celery_worker_sigkill_mid_wait_retry_reattaches(dep: Deployment) -> None:
    cluster, emu = dep.cluster, dep.emu
    dag_id, run_id = "dep_fc_retry", f"sigkill-{uuid.uuid4().hex[:8]}"
    cluster.trigger(dag_id, run_id, {"seconds": 90})
    task = cluster.wait_for(
        "the FC task to run",
        lambda: next(
            (t for t in fc_tasks(emu, FUNCTION, dag_id, run_id) if t.status is TaskStatus.RUNNING), None
        ),
        240,
    )
    ti = cluster.wait_for(
        "the task instance to run with a pid",
        lambda: (t := cluster.ti(dag_id, run_id)) and t.get("state") == "running" and t.get("pid") and t,
        120,
    )
    victim = cluster.owner_of(int(ti["pid"]))
    assert victim in ("worker-1", "worker-2"), f"pid {ti['pid']} descends from no worker"
    t_kill = time.monotonic()
    cluster.kill(victim)
    try:
        state = wait_run(dep, dag_id, run_id, 400)
    finally:
        cluster.start(victim)
    final = cluster.ti(dag_id, run_id)
    tasks = fc_tasks(emu, FUNCTION, dag_id, run_id)
    print(
        f"\n[deployment] {victim} SIGKILLed mid-wait: run {state} {time.monotonic() - t_kill:.0f} s later, try "
        f"{final['try_number']}, FC tasks {[t.task_id for t in tasks]}, executions "
        f"{emu.stats()['executions'].get(task.task_id)}"
    )
    count("runs", int(state == "success"), 1)
    assert state == "success" and int(final["try_number"]) == 2
    assert [t.task_id for t in tasks] == [task.task_id], "the retry invoked again instead of re-attaching"
    assert emu.stats()["executions"].get(task.task_id) == 1
    assert "Re-attaching to FC task" in cluster.task_log(dag_id, run_id, "invoke", 2)


def test_triggerer_sigkill_the_other_adopts(dep: Deployment) -> None:
    cluster, emu = dep.cluster, dep.emu
    dag_id, run_id, n = "dep_fc_mapped", f"adopt-{uuid.uuid4().hex[:8]}", 10
    cluster.trigger(dag_id, run_id, {"count": n, "seconds": 75})
    cluster.wait_for(
        f"{n} triggers assigned",
        lambda: sum(v for k, v in dep.triggers_by_job().items() if k is not None) >= n,
        300,
        1.0,
    )
    time.sleep(3)  # the triggerers have run them (each reads its task once)
    by_job = dep.triggers_by_job()
    victim = max(dep.triggerer_jobs, key=lambda name: by_job.get(dep.triggerer_jobs[name], 0))
    victim_job = dep.triggerer_jobs[victim]
    held = by_job.get(victim_job, 0)
    stops_before = stop_requests(emu)
    t_kill = time.monotonic()
    cluster.kill(victim)
    cluster.wait_for(
        f"the other triggerer to adopt {victim}'s {held} triggers",
        lambda: victim_job not in dep.triggers_by_job(),
        240,
        0.5,
    )
    adopted = time.monotonic() - t_kill
    running = [t for t in emu.scheduler.tasks(FUNCTION) if t.status is TaskStatus.RUNNING]
    try:
        state = wait_run(dep, dag_id, run_id)
    finally:
        dep.restart_triggerer(victim)
    tis = [ti for ti in cluster.tis(dag_id, run_id) if ti["task_id"] == "invoke"]
    ok = sum(ti["state"] == "success" for ti in tis)
    records = sum(
        bool(
            (cluster.xcom(dag_id, run_id, "invoke", map_index=int(ti["map_index"])) or {}).get(
                "destination_record"
            )
        )
        for ti in tis
    )
    executions = Counter(
        emu.stats()["executions"].get(t.task_id, 0)
        for i in range(n)
        for t in fc_tasks(emu, FUNCTION, dag_id, run_id, map_index=i)
    )
    # the served log of an adopted task merges both triggerers' files (what check_log relies on)
    both = sum(
        len(
            trigger_sources(
                cluster.task_log_items(dag_id, run_id, "invoke", int(ti["try_number"]), int(ti["map_index"]))
            )
        )
        > 1
        for ti in tis
    )
    print(
        f"\n[deployment] {victim} SIGKILLed holding {held}/{n} triggers: adopted by the other in {adopted:.1f} s "
        f"({len(running)} FC tasks still running then); run {state}, {ok}/{n} success, {records}/{n} records, "
        f"stop requests {stop_requests(emu) - stops_before}, executions per FC task {dict(executions)}, "
        f"logs from both triggerers {both}"
    )
    count("runs", int(state == "success"), 1)
    count("records", records, n)
    count("readopted", held if state == "success" and ok == n else 0, held)
    assert held > 0, f"{victim} held no trigger: nothing to adopt ({by_job})"
    assert state == "success" and ok == n
    assert stop_requests(emu) == stops_before, "a StopAsyncTask request was sent across the triggerer kill"
    assert executions == Counter({1: n}), executions
    assert records == n
    # only a trigger the victim held can have written to both files (one that had logged nothing yet has one)
    assert both <= held, f"{held} adopted triggers, {both} task logs with both triggerers' files"


@pytest.mark.parametrize("action", ["mark_failed", "clear"])
@pytest.mark.parametrize("mode", ["blocking", "deferrable"])
def test_user_action_stops_the_fc_task(dep: Deployment, mode: str, action: str) -> None:
    count("stopped", 0, 1)
    elapsed = user_action_stops(dep.cluster, dep.emu, FUNCTION, f"dep_fc_{mode}", mode, action, 300)
    count("stopped", 1, 0)
    print(f"\n[deployment] {mode:10s} {action:11s}: FC task Stopped {elapsed:.2f} s after the REST call")
