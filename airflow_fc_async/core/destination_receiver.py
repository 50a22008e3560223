"""One receiver per (endpoint, access key id, queue) per process, serving every caller that waits for a record.

Why per process: a receiver is an HTTP long-poll loop plus the memory of what it received (receive counts,
records handed over); a process can share both among its waiters, nothing more (an Airflow deployment runs every
task in its own process, on many machines, and one or more triggerers). So in a triggerer one receiver serves
all its deferred tasks (``FcAsyncTaskTrigger`` waits for the record and its event carries it), and a blocking
task's worker process runs its own while it waits. Between processes the queue itself is the only channel, which
is why :class:`~airflow_fc_async.core.destinations.QueueDispatch` never holds a record of an awaited function
it does not wait for: it hands it back at once (1 s) for the process that does, and never serves a record from
memory (every claim carries a receipt handle, so the stored record's message is deleted).

Waiters register a request id (and their function) with the process-wide registry
(:mod:`~airflow_fc_async.core.receiver_registry`) and wait on a future. The first waiter starts the receiver (an
asyncio task on the caller's loop for triggers, :mod:`~airflow_fc_async.core.receiver_asyncio`; a daemon thread for
sync callers, :mod:`~airflow_fc_async.core.receiver_thread`); it receives batches of 16 with long polling, applies
the dispatch plan and stops when no waiter (and no stored record's message to delete) is left. Every receiver serves
the whole dispatch, so waiters of a second event loop (one ``asyncio.run`` per trigger) use the thread, which
outlives loops: a loop that ends cancels its receiver mid-poll, and an abandoned long poll still takes the next
batch from the server, hidden for the queue's ``VisibilityTimeout`` (see
:class:`~airflow_fc_async.core.receiver_asyncio.AsyncReceiver`).

Deletion happens after storage: a claim carries the receipt handle of a message held invisible for
``hold_seconds``; the caller stores the record (XCom, a trigger event), then calls
:func:`ack_destination_record`. :func:`fetch_destination_record` does both for a caller with a
``before_delete`` callback. A process killed between claim and ack loses nothing: the message becomes visible
when its hold ends and the next waiter (another triggerer, the next try) receives it. This module is the API
(claim, watch, ack, fetch, and their async twins); nothing here imports Airflow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any, TypedDict, Unpack

from airflow_fc_async.core.destinations import QueueDispatch, SharePolicy, Waiter
from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient
from airflow_fc_async.core.models import DestinationRecord
from airflow_fc_async.core.policies import HANDOFF_SECONDS, SYNC_HOLD_SECONDS, TRIGGER_HOLD_SECONDS
from airflow_fc_async.core.receiver_asyncio import AsyncReceiver
from airflow_fc_async.core.receiver_registry import (
    REGISTRY,
    ClaimedRecord,
    acked,
    claims_of,
    delete_failed,
    give_back,
    hit_claim,
    in_flight,
    log,
    receiver_key,
    receiver_stats,
    reset_receivers,
)
from airflow_fc_async.core.receiver_thread import ThreadReceiver, wake_or_start_thread

__all__ = [
    "ClaimOptions",
    "ClaimedRecord",
    "FetchOptions",
    "aack_destination_record",
    "ack_destination_record",
    "aclaim_destination_record",
    "afetch_destination_record",
    "claim_destination_record",
    "fetch_destination_record",
    "give_back_claim",
    "receiver_stats",
    "reset_receivers",
    "stop_receivers",
    "watch_destination_record",
]

_REGISTRY = REGISTRY  # the name the tests inspect


class ClaimOptions(TypedDict, total=False):
    """The keyword arguments of a claim after ``timeout``: ``delete_on_read`` (default True: the message is
    deleted on :func:`ack_destination_record`), ``hold_seconds`` (how long the receipt handle stays valid; the
    default is the sync or the trigger hold), ``policy`` (the queue's :class:`SharePolicy`, when this call creates
    its dispatch) and ``function_name`` (see :func:`aclaim_destination_record`)."""

    delete_on_read: bool
    hold_seconds: int
    policy: SharePolicy | None
    function_name: str | None


class FetchOptions(TypedDict, total=False):
    """The keyword arguments of a fetch after ``wait_seconds``: ``delete_on_read`` and ``function_name`` as for
    a claim, and ``before_delete(record)``, run before the message is deleted (store the record there)."""

    delete_on_read: bool
    before_delete: Callable[[DestinationRecord], Any] | None
    function_name: str | None


def _waiter(request_id: str, options: ClaimOptions, hold: int, settle: Callable[..., None]) -> Waiter:
    return Waiter(
        request_id,
        options.get("delete_on_read", True),
        options.get("hold_seconds", hold),
        settle,
        options.get("function_name"),
    )


def stop_receivers(timeout: float = 45.0) -> None:
    """Stop every receiver thread of this process and wait for them (tests; process shutdown).

    A receiver otherwise lingers after its last waiter while stored records' messages wait to be deleted when seen.
    The wait is at most one long poll (the HTTP read cannot be interrupted).
    """
    with REGISTRY.lock:
        receivers = list(REGISTRY.threads.values())
    for receiver in receivers:
        receiver.stopping = True
        receiver.wake.set()
    for receiver in receivers:
        receiver.thread.join(timeout)


def give_back_claim(client: MnsClient | AsyncMnsClient, claim: ClaimedRecord) -> None:
    """A claim its taker will not use (a record signal closed before its record was stored): the next waiter of
    this process for that request id gets its live receipt handle, so the stored record's message can be deleted."""
    give_back(receiver_key(client, claim.queue), claim)


async def aclaim_destination_record(
    client: AsyncMnsClient, queue: str, request_id: str, *, timeout: float, **options: Unpack[ClaimOptions]
) -> ClaimedRecord | None:
    """Wait up to ``timeout`` seconds for the record of ``request_id`` via this loop's shared receiver.

    ``function_name`` (the record's function): this process then hands back at once every record of that
    function it does not wait for, so a waiter in another process gets it (see ``core.destinations``)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[ClaimedRecord] = loop.create_future()
    key = receiver_key(client, queue)
    left = False  # this call returned (or was cancelled): a claim that comes later goes back to the dispatch

    def settle(result: ClaimedRecord | BaseException) -> None:
        def done() -> None:
            if isinstance(result, BaseException):
                if not future.done():
                    future.set_exception(result)
            elif future.done() or left:
                give_back(key, result)
            else:
                future.set_result(result)

        try:
            loop.call_soon_threadsafe(done)
        except RuntimeError:  # the waiter's loop closed: nobody waits any more
            if not isinstance(result, BaseException):
                give_back(key, result)

    waiter = _waiter(request_id, options, TRIGGER_HOLD_SECONDS, settle)
    with REGISTRY.lock:
        dispatch = REGISTRY.dispatch(key, options.get("policy"))
        hit = dispatch.register(waiter, time.monotonic())
        if hit is None:
            live = REGISTRY.thread(key) or REGISTRY.task(loop, key)
            if live is not None:
                live.poke()
            elif REGISTRY.other_loops(loop, key):  # several loops: one thread serves them all
                REGISTRY.threads[key] = ThreadReceiver(key, dispatch, client)
            else:
                REGISTRY.tasks[(id(loop), key)] = AsyncReceiver(key, dispatch, client)
    if hit is not None:
        return hit_claim(dispatch, hit, queue, waiter)
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout=timeout)
    except TimeoutError:
        await asyncio.sleep(0)  # a delivery scheduled in the same instant still counts
        if not future.done() and in_flight(dispatch, waiter):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), timeout=HANDOFF_SECONDS)
        return future.result() if future.done() and not future.exception() else None
    finally:
        left = True
        with REGISTRY.lock:
            dispatch.unregister(waiter, time.monotonic())
            idle = not dispatch.has_work(time.monotonic())
            receiver = REGISTRY.tasks.get((id(loop), key))
            thread = REGISTRY.thread(key)
        if idle and receiver is not None:
            if receiver.polling:  # nobody left: do not keep a long poll (and this loop) busy
                receiver.task.cancel()
            receiver.wake.set()
        if thread is not None:
            thread.poke()


def claim_destination_record(
    client: MnsClient, queue: str, request_id: str, *, timeout: float, **options: Unpack[ClaimOptions]
) -> ClaimedRecord | None:
    """Block up to ``timeout`` seconds for the record of ``request_id`` via the process's shared receiver thread
    (``function_name`` as in :func:`aclaim_destination_record`)."""
    future: concurrent.futures.Future[ClaimedRecord] = concurrent.futures.Future()
    key = receiver_key(client, queue)
    gone = threading.Event()  # this call returned: a claim that comes later goes back to the dispatch

    def settle(result: ClaimedRecord | BaseException) -> None:
        if isinstance(result, BaseException):
            if not future.done():
                future.set_exception(result)
        elif future.done() or gone.is_set():
            give_back(key, result)
        else:
            future.set_result(result)

    waiter = _waiter(request_id, options, SYNC_HOLD_SECONDS, settle)
    dispatch, hit, leave = _join_thread_receiver(client, queue, waiter, options.get("policy"))
    if hit is not None:
        return hit_claim(dispatch, hit, queue, waiter)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        if not future.done() and in_flight(dispatch, waiter):
            with contextlib.suppress(concurrent.futures.TimeoutError):
                return future.result(timeout=HANDOFF_SECONDS)
        return future.result() if future.done() and not future.exception() else None
    finally:
        gone.set()
        leave()


def watch_destination_record(
    client: MnsClient,
    queue: str,
    request_id: str,
    on_record: Callable[[ClaimedRecord | BaseException], None],
    *,
    function_name: str | None = None,
    policy: SharePolicy | None = None,
) -> Callable[[], None]:
    """Call ``on_record`` (from the receiver thread) when the record of ``request_id`` arrives, without taking it:
    its message is handed back at once for whoever consumes the queue. Returns the call that stops watching.
    ``on_record`` gets an exception instead when the queue fails in a way retrying cannot fix."""
    waiter = Waiter(request_id, False, SYNC_HOLD_SECONDS, on_record, function_name)
    _, hit, leave = _join_thread_receiver(client, queue, waiter, policy)
    if hit is not None:
        on_record(claims_of(hit, queue, None)[0][1])
    return leave


def _join_thread_receiver(
    client: MnsClient, queue: str, waiter: Waiter, policy: SharePolicy | None
) -> tuple[QueueDispatch, Any, Callable[[], None]]:
    """Register ``waiter`` with the process's receiver thread of the queue (started if needed): the dispatch, the
    delivery at once when this process handed the record over already, and the call that unregisters the waiter."""
    key = receiver_key(client, queue)
    with REGISTRY.lock:
        dispatch = REGISTRY.dispatch(key, policy)
        hit = dispatch.register(waiter, time.monotonic())
        if hit is None:
            wake_or_start_thread(key, dispatch, client)

    def leave() -> None:
        with REGISTRY.lock:
            dispatch.unregister(waiter, time.monotonic())
            receiver_ = REGISTRY.threads.get(key)
        if receiver_ is not None:
            receiver_.wake.set()

    return dispatch, hit, leave


# -- acknowledgement and the one-call helpers -------------------------------------------------------------
def ack_destination_record(client: MnsClient, claim: ClaimedRecord, *, settle_seconds: float = 0.0) -> bool:
    """Call once the record is stored: deletes its message (when ``delete_on_read``). True when deleted.

    When the handle no longer works (the hold ran out, or the claim came in a trigger event whose hold passed),
    the message is deleted when a receive of this process sees it again: with ``settle_seconds`` this call starts
    that receive and waits for it (other processes hand the record back at once), so no stored record's message
    stays in the queue."""
    if not claim.delete_on_read:
        return False
    deleted = _ack_once(client, claim)
    if not deleted and settle_seconds > 0:
        deleted = _delete_when_seen(client, claim, settle_seconds)
    return deleted


def _ack_once(client: MnsClient, claim: ClaimedRecord) -> bool:
    deleted = False
    if claim.receipt_handle:
        try:
            client.delete_message(claim.queue, claim.receipt_handle)
            deleted = True
        except FcError as exc:  # the record is stored: a failed delete must not lose it for the caller
            delete_failed(claim, exc)
    acked(client, claim, deleted)
    return deleted


def _delete_when_seen(client: MnsClient, claim: ClaimedRecord, seconds: float) -> bool:
    key = receiver_key(client, claim.queue)
    with REGISTRY.lock:
        dispatch = REGISTRY.dispatch(key, None)
        dispatch.stored_elsewhere(claim.record, claim.message_id, time.monotonic())
        wake_or_start_thread(key, dispatch, client)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with REGISTRY.lock:
            if not dispatch.pending(claim.record.request_id):
                return True
        time.sleep(0.2)
    log.warning(
        "the message of stored record %s on %s was not seen again within %g s: it stays in the queue",
        claim.record.request_id,
        claim.queue,
        seconds,
    )
    return False


async def aack_destination_record(client: AsyncMnsClient, claim: ClaimedRecord) -> bool:
    """The async twin of :func:`ack_destination_record`."""
    if not claim.delete_on_read:
        return False
    deleted = False
    if claim.receipt_handle:
        try:
            await client.delete_message(claim.queue, claim.receipt_handle)
            deleted = True
        except FcError as exc:  # the record is stored: a failed delete must not lose it for the caller
            delete_failed(claim, exc)
    acked(client, claim, deleted)
    return deleted


def fetch_destination_record(
    client: MnsClient, queue: str, request_id: str, *, wait_seconds: float, **options: Unpack[FetchOptions]
) -> DestinationRecord | None:
    """The record of ``request_id`` within ``wait_seconds`` (it may arrive before or after the task's terminal
    status), or None. ``before_delete(record)`` runs before its message is deleted: store the record there."""
    claim = claim_destination_record(
        client, queue, request_id, timeout=wait_seconds, **_claim_part(options, SYNC_HOLD_SECONDS)
    )
    if claim is None:
        return None
    before_delete = options.get("before_delete")
    if before_delete is not None:
        before_delete(claim.record)
    ack_destination_record(client, claim, settle_seconds=30.0)
    return claim.record


async def afetch_destination_record(
    client: AsyncMnsClient,
    queue: str,
    request_id: str,
    *,
    wait_seconds: float,
    **options: Unpack[FetchOptions],
) -> DestinationRecord | None:
    """The async twin of :func:`fetch_destination_record` (``before_delete`` may be a coroutine function)."""
    claim = await aclaim_destination_record(
        client, queue, request_id, timeout=wait_seconds, **_claim_part(options, SYNC_HOLD_SECONDS)
    )
    if claim is None:
        return None
    before_delete = options.get("before_delete")
    if before_delete is not None:
        result = before_delete(claim.record)
        if inspect.isawaitable(result):
            await result
    await aack_destination_record(client, claim)
    return claim.record


def _claim_part(options: FetchOptions, hold_seconds: int) -> ClaimOptions:
    """A fetch's claim: its options that a claim takes, and the hold (a fetch acknowledges at once)."""
    claim: ClaimOptions = {"hold_seconds": hold_seconds}
    if "delete_on_read" in options:
        claim["delete_on_read"] = options["delete_on_read"]
    if "function_name" in options:
        claim["function_name"] = options["function_name"]
    return claim
