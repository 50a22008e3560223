"""Destination waiters on several event loops of one process (one ``asyncio.run`` per trigger, as the reliability
harness and ``dag.test()`` run triggers), over HTTP against the emulator.

Every receiver serves the whole process's dispatch, and a loop's receiver is cancelled when its loop ends. Before
the fix each loop ran its own receiver: each ended loop abandoned a long poll, which the server still filled with
the next batch (hidden for the queue's 30 s visibility), and one record was hidden again each time it came back,
until its waiter gave up (R1: 199/200 records); a receiver cancelled while holding another waiter's record never
gave it to that waiter.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from typing import Any

import pytest

from airflow_fc_async.core import destination_receiver as dr
from airflow_fc_async.core.destinations import Waiter
from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient
from tests.emulator.conftest import wait_for

FUNCTION = "loops-fn"


def record_body(request_id: str) -> str:
    return json.dumps(
        {
            "timestamp": int(time.time() * 1000),
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"acs:fc:cn-hangzhou:123:functions/{FUNCTION}",
                "condition": "",
                "approximateInvokeCount": 1,
            },
            "requestPayload": "{}",
            "responseContext": {"statusCode": 200, "functionError": ""},
            "responsePayload": json.dumps({"ok": request_id}),
        }
    )


@pytest.fixture
def queue(emu: Any) -> Any:
    name = f"loops-{uuid.uuid4().hex[:12]}"
    with MnsClient(emu.endpoint, emu.credentials) as client:
        client.create_queue(name)
        yield name
        client.delete_queue(name)


def key_of(emu: Any, queue: str) -> tuple[str, str, str]:
    return (emu.endpoint, emu.credentials.access_key_id, queue)


def waiting(emu: Any, queue: str) -> int:
    dispatch = dr._REGISTRY.dispatches.get(key_of(emu, queue))
    return 0 if dispatch is None else dispatch.waiting


def test_overlapping_trigger_loops_share_one_receiver_and_get_every_record(emu: Any, queue: str) -> None:
    """Five triggers, each on its own loop in its own thread, their lifetimes overlapping: the first loop's
    receiver, then one thread (for the second loop on, and after the first loop ends) serve them all."""
    dr.reset_receivers()
    rids = [f"loop-{i}-{uuid.uuid4().hex[:6]}" for i in range(5)]
    got: dict[str, Any] = {}

    def trigger(rid: str) -> None:
        async def run() -> None:
            client = AsyncMnsClient(emu.endpoint, emu.credentials)
            try:
                claim = await dr.aclaim_destination_record(
                    client, queue, rid, timeout=120, function_name=FUNCTION
                )
                got[rid] = claim
                if claim is not None:
                    await dr.aack_destination_record(client, claim)
            finally:
                await client.aclose()

        asyncio.run(run())  # the loop ends with its trigger: its receiver (if any) is cancelled mid-poll

    threads = [threading.Thread(target=trigger, args=(rid,)) for rid in rids]
    with MnsClient(emu.endpoint, emu.credentials) as sender:
        for i, thread in enumerate(threads):
            thread.start()
            # waiting: this one, and the previous one until its record comes
            wait_for(lambda i=i: waiting(emu, queue) == min(i + 1, 2), timeout=60)
            if i:  # the previous loop gets its record and ends while the later ones still wait
                sender.send_message(queue, record_body(rids[i - 1]))
                wait_for(lambda i=i: rids[i - 1] in got, timeout=60)
        sender.send_message(queue, record_body(rids[-1]))
        for thread in threads:
            thread.join(150)
    assert all(got.get(rid) is not None and got[rid].record.request_id == rid for rid in rids), got
    # a receiver reads the queue's attributes once when it starts: the first loop's, and one thread's
    assert dr.receiver_stats().get("get_queue_attributes", 0) <= 2, dr.receiver_stats()
    assert wait_for(lambda: not emu.queues.get(queue).messages, timeout=60)  # every record's message deleted


def test_a_hold_cancelled_with_its_loop_still_hands_the_record_to_its_waiter(emu: Any, queue: str) -> None:
    """The loop's receiver takes a waiter of another thread off the dispatch with its record, and its loop ends
    while the hold (ChangeMessageVisibility, slowed to 20 s) is in flight: the waiter gets the record with the
    receive's handle, which still deletes the message (the hold has not reached the server)."""
    dr.reset_receivers()
    rid, own = f"held-{uuid.uuid4().hex[:6]}", f"own-{uuid.uuid4().hex[:6]}"
    key = key_of(emu, queue)
    settled: list[Any] = []
    other = Waiter(rid, True, 60, settled.append, FUNCTION)  # a waiter of another thread of this process
    with MnsClient(emu.endpoint, emu.credentials) as sender:
        sender.send_message(queue, record_body(rid))
    emu.inject_faults([{"action": "ChangeMessageVisibility", "latency": 20}])

    async def trigger() -> None:
        client = AsyncMnsClient(emu.endpoint, emu.credentials)
        try:
            with dr._REGISTRY.lock:
                assert dr._REGISTRY.dispatch(key, None).register(other, time.monotonic()) is None
            wait = asyncio.create_task(
                dr.aclaim_destination_record(client, queue, own, timeout=60, function_name=FUNCTION)
            )
            deadline = time.monotonic() + 60
            while dr._REGISTRY.dispatches[key].waiting != 1 and time.monotonic() < deadline:
                await asyncio.sleep(
                    0.05
                )  # until the receiver took `other` off the dispatch: its hold is sent
            assert dr._REGISTRY.dispatches[key].waiting == 1
            await asyncio.sleep(0.5)
            wait.cancel()  # this trigger is done (cancelled), and the loop ends under the receiver's hold
        finally:
            await client.aclose()

    asyncio.run(trigger())
    emu.clear_faults()
    assert len(settled) == 1, "the waiter never got its record"
    claim = settled[0]
    assert claim.record.request_id == rid and claim.receipt_handle
    with MnsClient(emu.endpoint, emu.credentials) as client:
        assert dr.ack_destination_record(client, claim) is True
    assert not emu.queues.get(queue).messages


def test_a_waiter_whose_time_runs_out_during_its_records_hold_gets_the_record(emu: Any, queue: str) -> None:
    """The receiver took the waiter off with its record, and the hold (slowed to 8 s) outlasts the waiter's
    timeout: the waiter still gets the record with the hold's handle. Before the fix it returned None, and its
    next wait (the operator waits in slices of 5 s) got the record from memory, without a handle: its message
    stayed in the queue (the 'not seen again within 30 s' warnings of R1)."""
    dr.reset_receivers()
    rid = f"late-{uuid.uuid4().hex[:6]}"
    with MnsClient(emu.endpoint, emu.credentials) as client:
        client.send_message(queue, record_body(rid))
        emu.inject_faults([{"action": "ChangeMessageVisibility", "latency": 8}])
        try:
            claim = dr.claim_destination_record(client, queue, rid, timeout=4, function_name=FUNCTION)
        finally:
            emu.clear_faults()
        assert claim is not None and claim.record.request_id == rid and claim.receipt_handle
        assert dr.ack_destination_record(client, claim) is True
    assert not emu.queues.get(queue).messages


def test_a_record_for_a_loop_that_closed_leaves_the_receiver_thread_serving(emu: Any, queue: str) -> None:
    """A trigger on its own loop is cancelled after the receiver thread took it off with its record (the hold
    slowed to 5 s), and its loop closes: settling it must not raise in the thread (before: RuntimeError 'Event
    loop is closed' ended the receiver, and every other waiter of the process waited in vain)."""
    dr.reset_receivers()
    gone, stays = f"gone-{uuid.uuid4().hex[:6]}", f"stays-{uuid.uuid4().hex[:6]}"
    key = key_of(emu, queue)
    result: dict[str, Any] = {}
    client = MnsClient(emu.endpoint, emu.credentials)

    def blocking() -> None:
        result["claim"] = dr.claim_destination_record(
            client, queue, stays, timeout=90, function_name=FUNCTION
        )

    waiter = threading.Thread(target=blocking)
    waiter.start()
    try:
        wait_for(lambda: waiting(emu, queue) == 1 and dr._REGISTRY.thread(key) is not None, timeout=60)
        emu.inject_faults([{"action": "ChangeMessageVisibility", "latency": 5}])

        async def trigger() -> None:
            aclient = AsyncMnsClient(emu.endpoint, emu.credentials)
            try:
                task = asyncio.create_task(
                    dr.aclaim_destination_record(aclient, queue, gone, timeout=60, function_name=FUNCTION)
                )
                await asyncio.sleep(0.2)
                client.send_message(queue, record_body(gone))
                deadline = time.monotonic() + 60
                while waiting(emu, queue) != 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)  # the thread took `gone` off: its hold is on the way
                task.cancel()
            finally:
                await aclient.aclose()

        asyncio.run(trigger())  # the loop closes before the hold returns
        time.sleep(6)  # the hold returns, the thread settles the closed loop's waiter
        emu.clear_faults()
        client.send_message(queue, record_body(stays))
        waiter.join(90)
        claim = result.get("claim")
        assert claim is not None and claim.record.request_id == stays
        assert dr.ack_destination_record(client, claim) is True
    finally:
        emu.clear_faults()
        waiter.join(90)
        client.close()


def test_a_waiter_that_leaves_during_its_records_hold_passes_the_handle_to_the_next_one(
    emu: Any, queue: str
) -> None:
    """A trigger's push waiter is closed while the receiver holds its record (ChangeMessageVisibility slowed to
    4 s): the trigger then claims the record again for its event. The second claim gets the hold's handle, which
    deletes the message. Before the fix it got the record without a handle, the worker waited 30 s for a message
    this process kept invisible, and the message stayed in the queue (R8: "not seen again within 30 s")."""
    dr.reset_receivers()
    rid = f"handoff-{uuid.uuid4().hex[:6]}"
    key = key_of(emu, queue)
    with MnsClient(emu.endpoint, emu.credentials) as sender:
        sender.send_message(queue, record_body(rid))
    emu.inject_faults([{"action": "ChangeMessageVisibility", "latency": 4}])

    async def trigger() -> Any:
        client = AsyncMnsClient(emu.endpoint, emu.credentials)
        try:
            first = asyncio.create_task(
                dr.aclaim_destination_record(client, queue, rid, timeout=60, function_name=FUNCTION)
            )
            deadline = time.monotonic() + 60
            while (key not in dr._REGISTRY.dispatches or not dr._REGISTRY.dispatches[key]._handled) and (
                time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)  # until the receiver took the waiter off with its record
            assert dr._REGISTRY.dispatches[key]._handled, "the record was never handed over"
            first.cancel()  # the push signal closes while the hold is in flight
            await asyncio.gather(first, return_exceptions=True)
            await asyncio.sleep(6)  # the hold ends: its handle reaches a waiter that has left
            return await dr.aclaim_destination_record(client, queue, rid, timeout=30, function_name=FUNCTION)
        finally:
            await client.aclose()

    claim = asyncio.run(trigger())
    emu.clear_faults()
    assert claim is not None and claim.record.request_id == rid
    assert claim.receipt_handle, "the second claim got the record without the hold's handle"
    with MnsClient(emu.endpoint, emu.credentials) as client:
        assert dr.ack_destination_record(client, claim) is True
    assert not emu.queues.get(queue).messages
