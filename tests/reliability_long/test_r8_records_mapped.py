"""R8 (issue 14): a mapped deferrable DAG of 30 tasks with ``destination_queue`` under the real scheduler,
triggerer and LocalExecutor (parallelism 8): every task gets its own destination record.

Each task instance runs in its own worker process and the triggerer waits for the records of all deferred tasks
through one receiver (the trigger event carries the claim; the worker stores the record, then deletes its
message). The queue also holds 40 messages of other consumers: they must all still be there, untouched by any
delete, and nothing else. ``destination_required=True``: a missing record would fail its task.
"""

from __future__ import annotations

import ast
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_fc_async.core.mns import MnsClient
from tests.airflow_processes import deployment, fc_tasks

from .conftest import HERE, PROCESSES, AirflowCluster

DAG_ID = "rel_fc_records"


@pytest.fixture(scope="module")
def airflow_cluster(rel_emulator: Any) -> Iterator[AirflowCluster]:
    """The deployment of the other long tests, with the README's setting against Airflow's defer-exit race:
    ``[workers] min_heartbeat_interval`` 1 s (a slow deferral exit is the supervisor's 5 s heartbeat tick; at a
    load of 15 a task's deferral and its retry were both failed by the race, so the run failed)."""
    with deployment(
        [HERE / "dags"],
        rel_emulator.connection_json(),
        PROCESSES,
        (DAG_ID,),
        {"AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1"},
    ) as cluster:
        yield cluster


QUEUE = "rel-records"
TASKS = 30


@pytest.mark.timeout(1800)  # the deployment itself may take 5 minutes to come up on a loaded machine
def test_r8_thirty_mapped_deferred_tasks_each_get_their_record(
    airflow_cluster: AirflowCluster, rel_emulator: Any
) -> None:
    cluster, emu = airflow_cluster, rel_emulator
    cluster.wait_for(f"DAG {DAG_ID}", lambda: cluster.api("GET", f"/dags/{DAG_ID}"), 300, 1.0)
    with MnsClient(emu.endpoint, emu.credentials) as mns:
        foreign = set(mns.batch_send_messages(QUEUE, [f"other consumer #{i}" for i in range(16)]))
        foreign |= set(
            mns.batch_send_messages(QUEUE, [f'{{"event": "order", "id": {i}}}' for i in range(16)])
        )
        foreign |= set(mns.batch_send_messages(QUEUE, [f"alert {i}" for i in range(8)]))
    run_id = f"r8-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    cluster.trigger(DAG_ID, run_id, {})
    cluster.wait_for(
        f"run {run_id} to end", lambda: cluster.run_state(DAG_ID, run_id) in ("success", "failed"), 900, 2.0
    )
    elapsed = time.monotonic() - t0
    tis = cluster.api("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
    states = sorted(str(t["state"]) for t in tis)
    records: dict[int, Any] = {}
    for i in range(TASKS):
        base = f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/invoke"
        try:
            entry = cluster.api("GET", f"{base}/xcomEntries/return_value?map_index={i}&deserialize=true")
        except AssertionError:  # no XCom: the task failed; show why
            log = cluster.http.get(f"{cluster.base}/api/v2{base}/logs/1?map_index={i}", timeout=30).text
            print(f"\n[reliability] R8 task {i} has no result; its log ends:\n{log[-3000:]}")
            continue
        value = entry["value"]
        records[i] = value if isinstance(value, dict) else ast.literal_eval(value)
    got = {
        i: v["destination_record"]["requestContext"]["requestId"]
        for i, v in records.items()
        if v.get("destination_record")
    }
    own = sum(1 for i, v in records.items() if got.get(i) == v["request_id"])
    store = emu.queues.get(QUEUE)
    left = set(store.messages)
    counts = [m.dequeue_count for mid, m in store.messages.items() if mid in foreign]
    retried = sum(int(t.get("try_number") or 1) > 1 for t in tis)
    executions = Counter(
        emu.stats()["executions"].get(task.task_id, 0)
        for i in range(TASKS)
        for task in fc_tasks(emu, "rel-record", DAG_ID, run_id, map_index=i)
    )
    print(
        f"\n[reliability] R8 {TASKS} mapped deferred tasks ({retried} needed a second try, executions per FC task "
        f"{dict(executions)}): {own}/{TASKS} own records in XCom, run ended in "
        f"{elapsed:.1f} s, states {dict((s, states.count(s)) for s in set(states))}; queue holds {len(left)} "
        f"messages ({len(left & foreign)}/{len(foreign)} foreign, max foreign DequeueCount {max(counts, default=0)})"
    )
    assert states == ["success"] * TASKS, states
    assert executions == Counter({1: TASKS}), executions  # a retry re-attached, never invoked again
    assert own == TASKS
    assert left == foreign, f"records left: {len(left - foreign)}, foreign deleted: {len(foreign - left)}"
