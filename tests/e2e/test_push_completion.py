"""Push completion over HTTP against the emulator: the destination record ends the wait of a trigger and of the
blocking operator, one GetAsyncTask confirms it, and a record the emulator drops still ends by the fallback poll."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.mns import MnsClient
from airflow_fc_async.core.push_completion import reset_routes, route_reads
from airflow_fc_async.core.status_poller import poller_stats, reset_pollers
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger

SOURCE = (
    "import time\n"
    "def handler(event, context):\n"
    "    import json\n"
    "    body = json.loads(event)\n"
    "    time.sleep(body.get('sleep', 0))\n"
    "    if body.get('fail'):\n"
    "        raise RuntimeError('asked to fail')\n"
    "    return 'done'\n"
)


def _deploy(emu: Any, *, failure_only: bool = False) -> tuple[str, str]:
    """A function whose records go to a fresh queue (both destinations, or onFailure only)."""
    name, queue = f"push-{uuid.uuid4().hex[:8]}", f"push-q-{uuid.uuid4().hex[:8]}"
    arn = f"acs:mns:{emu.region}:{emu.account_id}:/queues/{queue}/messages"
    dest = {"onFailure": {"destination": arn}}
    if not failure_only:
        dest["onSuccess"] = {"destination": arn}
    emu.deploy(
        name,
        source=SOURCE,
        timeout=60,
        async_invoke_config={"asyncTask": True, "maxAsyncRetryAttempts": 0, "destinationConfig": dest},
    )
    return name, queue


def _invoke(emu: Any, function: str, payload: dict[str, Any]) -> tuple[str, str, float]:
    started_after = time.time()
    with FcClient(emu.endpoint, emu.credentials) as client:
        inv = client.invoke_async(function, payload, task_id=f"{function}-{uuid.uuid4().hex[:6]}")
    assert inv.request_id
    return inv.task_id, inv.request_id, started_after


async def _event(trigger: FcAsyncTaskTrigger) -> dict[str, Any]:
    gen = trigger.run()
    try:
        event = await asyncio.wait_for(gen.__anext__(), timeout=180)
    finally:
        await gen.aclose()
    return dict(event.payload)


def _gets(emu: Any, function: str, task_id: str) -> int:
    return int(emu.stats()["paths"].get(f"GET /2023-03-30/functions/{function}/async-tasks/{task_id}", 0))


def _requests(emu: Any, action: str) -> int:
    return int(emu.stats()["requests"].get(action, 0))


@pytest.fixture(autouse=True)
def _fresh_routes() -> None:
    reset_routes()


def test_record_ends_the_triggers_wait_with_one_read(fc_conn: Any) -> None:
    function, queue = _deploy(fc_conn)
    ok = _invoke(fc_conn, function, {"sleep": 2})
    bad = _invoke(fc_conn, function, {"sleep": 2, "fail": True})
    configs0 = _requests(fc_conn, "GetAsyncInvokeConfig")
    deletes0, batch_deletes0 = _requests(fc_conn, "DeleteMessage"), _requests(fc_conn, "BatchDeleteMessage")

    def follow(task_id: str, request_id: str, started: float) -> dict[str, Any]:
        # one at a time: a lone watcher has no shared scan, and its first own read (4 s) comes after the end
        trigger = FcAsyncTaskTrigger(function, task_id, request_id=request_id, started_after=started)
        return asyncio.run(_event(trigger))

    ev_ok, ev_bad = follow(*ok), follow(*bad)
    assert ev_ok["status"] == "success" and ev_ok["ended_by"] == "destination_record", ev_ok
    assert ev_bad["status"] == "failure" and ev_bad["ended_by"] == "destination_record", ev_bad
    assert ev_bad["task"]["taskErrorMessage"]  # the confirming read brought the error message
    # the async config was read once for both triggers (cached per function per process)
    assert route_reads() == 1 and _requests(fc_conn, "GetAsyncInvokeConfig") - configs0 == 1
    # started_after: no first read; the confirming read is each task's only GetAsyncTask, unless the task ran past
    # the fallback's first own read (4 s: a process start on a loaded machine)
    gets = {t: _gets(fc_conn, function, t) for t, _, _ in (ok, bad)}
    with FcClient(fc_conn.endpoint, fc_conn.credentials) as client:
        for task_id, _, started in (ok, bad):
            end = client.get_async_task(function, task_id).end_time
            assert end is not None
            assert 1 <= gets[task_id] <= 1 + op_reads_bound(end.timestamp() - started), gets
    # the records were only looked at: nothing was deleted, both are still in the queue for its consumer
    assert _requests(fc_conn, "DeleteMessage") == deletes0
    assert _requests(fc_conn, "BatchDeleteMessage") == batch_deletes0
    assert len(fc_conn.queues.get(queue).messages) == 2


def test_dropped_record_ends_by_the_fallback_poll(fc_conn: Any) -> None:
    function, queue = _deploy(fc_conn)
    fc_conn.inject_faults(action="DestinationRecord", path=queue, rates={"drop": 1.0})
    task_id, request_id, _ = _invoke(fc_conn, function, {"sleep": 2})
    ev = asyncio.run(_event(FcAsyncTaskTrigger(function, task_id, request_id=request_id, poll_interval=15.0)))
    assert ev["status"] == "success" and ev["ended_by"] == "status_poll", ev
    assert ev["task"]["destinationStatus"] == "Succeeded"  # FC believes it delivered: the record was lost
    assert fc_conn.stats()["faults"].get("DestinationRecord:drop", 0) >= 1


def test_a_fleet_whose_records_are_lost_ends_by_scans_of_running_tasks(fc_conn: Any) -> None:
    """Behind a push the shared scan lists only Running tasks: a task that left the list is read, so every lost
    record is still found, each with one GetAsyncTask at most beyond the fleet's reads."""
    function, queue = _deploy(fc_conn)
    fc_conn.inject_faults(action="DestinationRecord", path=queue, rates={"drop": 1.0})
    tasks = [_invoke(fc_conn, function, {"sleep": 2 + i % 3}) for i in range(6)]
    reset_pollers()

    async def fleet() -> list[dict[str, Any]]:
        triggers = [
            FcAsyncTaskTrigger(function, t, request_id=r, started_after=s, poll_interval=15.0)
            for t, r, s in tasks
        ]
        return list(await asyncio.gather(*(_event(trigger) for trigger in triggers)))

    events = asyncio.run(fleet())
    assert all(e["status"] == "success" and e["ended_by"] == "status_poll" for e in events), events
    stats = poller_stats()
    assert stats.get("gone", 0) >= 1, stats  # at least one end came from a task leaving the Running list
    assert stats["list_requests"] >= 1 and stats.get("errors", 0) == 0, stats


def test_late_record_the_poll_may_win(fc_conn: Any) -> None:
    """A record 30 s late: the fallback poll ends the wait long before it comes."""
    function, queue = _deploy(fc_conn)
    fc_conn.inject_faults(action="DestinationRecord", path=queue, latency=30.0)
    task_id, request_id, _ = _invoke(fc_conn, function, {"sleep": 1})
    ev = asyncio.run(_event(FcAsyncTaskTrigger(function, task_id, request_id=request_id, poll_interval=15.0)))
    assert ev["status"] == "success" and ev["ended_by"] == "status_poll", ev


def test_no_push_without_both_destinations(fc_conn: Any) -> None:
    function, _ = _deploy(fc_conn, failure_only=True)
    task_id, request_id, _ = _invoke(fc_conn, function, {"sleep": 1})
    receives0 = _requests(fc_conn, "BatchReceiveMessage")
    ev = asyncio.run(_event(FcAsyncTaskTrigger(function, task_id, request_id=request_id, poll_interval=15.0)))
    assert ev["status"] == "success" and ev["ended_by"] == "status_poll", ev
    assert _requests(fc_conn, "BatchReceiveMessage") == receives0  # no receiver was started


def test_trigger_with_destination_queue_takes_the_record_it_waited_on(fc_conn: Any) -> None:
    function, queue = _deploy(fc_conn)
    task_id, request_id, started = _invoke(fc_conn, function, {"sleep": 2})
    trigger = FcAsyncTaskTrigger(
        function, task_id, request_id=request_id, started_after=started, destination_queue=queue
    )
    ev = asyncio.run(_event(trigger))
    assert ev["ended_by"] == "destination_record", ev
    claim = ev["destination"]["claim"]
    assert claim["record"]["requestContext"]["requestId"] == request_id
    assert claim["receipt_handle"]  # held for the worker's delete, from the receive that ended the wait
    with MnsClient(fc_conn.endpoint, fc_conn.credentials) as mns:
        mns.delete_message(queue, claim["receipt_handle"])
        assert mns.peek_messages(queue) == []


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferred"])
def test_operator_ends_on_the_record(fc_conn: Any, deferrable: bool) -> None:
    """The operator's wait (blocking, or the trigger it defers to) runs on the fallback schedule and ends on the
    record: no more status reads than ``behind_push`` allows within the task's run, plus the confirming read and
    the result read (plus the worker's read before deferring). Plain polling (from 1 s, every 1 s) reads about 8
    times before an 8 s task ends; the fallback schedule 3 times."""
    from airflow.providers.common.compat.sdk import DAG

    from tests.e2e.conftest import run_dag, task_instance

    function, _ = _deploy(fc_conn)
    configs0 = _requests(fc_conn, "GetAsyncInvokeConfig")
    receives0 = _requests(fc_conn, "BatchReceiveMessage")
    dag_id = f"push_{'deferred' if deferrable else 'blocking'}_{uuid.uuid4().hex[:6]}"
    with DAG(dag_id, schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC), catchup=False) as dag:
        FcInvokeAsyncOperator(
            task_id="invoke",
            function_name=function,
            payload={"sleep": 8},
            deferrable=deferrable,
            poll_interval=15,
        )
    dr = run_dag(dag)
    result = task_instance(dr, "invoke").xcom_pull(task_ids="invoke")
    assert result["status"] == "Succeeded", result
    gets = _gets(fc_conn, function, result["task_id"])
    with FcClient(fc_conn.endpoint, fc_conn.credentials) as client:
        task = client.get_async_task(function, result["task_id"])
    assert task.started_time is not None and task.end_time is not None
    ran = (task.end_time - task.started_time).total_seconds()
    assert gets <= op_reads_bound(ran) + 2 + (1 if deferrable else 0), (gets, ran)
    assert _requests(fc_conn, "GetAsyncInvokeConfig") - configs0 == 1
    assert _requests(fc_conn, "BatchReceiveMessage") > receives0


def op_reads_bound(elapsed: float) -> int:
    """Status reads of the fallback schedule within ``elapsed`` seconds (WaitPolicy.behind_push)."""
    from airflow_fc_async.core.waiting import WaitPolicy

    policy = WaitPolicy.for_poll_interval(15.0).behind_push()
    t, reads = policy.delay(0.0, 0), 0
    while t <= elapsed:
        reads += 1
        t += policy.delay(t, reads)
    return reads


def test_a_signal_closed_with_its_claim_hands_the_handle_to_the_next_waiter(fc_conn: Any) -> None:
    """The trigger closes its record signal when the record came before the terminal status (the status read
    lagged), then claims the record again for its event: that claim must carry the live receipt handle, or the
    worker cannot delete the stored record's message (held 900 s: left in the queue; R8 in CI, 3 of 30)."""
    from airflow_fc_async.core.destination_receiver import aclaim_destination_record
    from airflow_fc_async.core.fc import AsyncFcClient
    from airflow_fc_async.core.mns import AsyncMnsClient
    from airflow_fc_async.core.push_completion import AsyncRecordSignal, apush_route

    function, queue = _deploy(fc_conn)
    _, request_id, _ = _invoke(fc_conn, function, {"sleep": 0})

    async def scenario() -> Any:
        async with AsyncFcClient(fc_conn.endpoint, fc_conn.credentials) as fc:
            route = await apush_route(fc, function)
        assert route is not None
        async with AsyncMnsClient(fc_conn.endpoint, fc_conn.credentials) as mns:
            signal = AsyncRecordSignal(
                mns, route, request_id, function_name=function, claim_queue=queue, hold_seconds=900
            )
            assert await signal.wait(60)
            assert signal.claim is not None and signal.claim.receipt_handle
            await signal.aclose()  # not taken: its handle goes back to the process's dispatch
            return await aclaim_destination_record(
                mns, queue, request_id, timeout=10, hold_seconds=900, function_name=function
            )

    claim = asyncio.run(scenario())
    assert claim is not None and claim.record.request_id == request_id
    assert claim.receipt_handle  # the live handle (before the fix: None, and the message stayed hidden 900 s)
    with MnsClient(fc_conn.endpoint, fc_conn.credentials) as mns:
        mns.delete_message(queue, claim.receipt_handle)
        assert mns.peek_messages(queue) == []
