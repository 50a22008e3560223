"""One receiver per (endpoint, access key id, queue) per process, serving every caller that waits for a record.

Why per process: a receiver is an HTTP long-poll loop plus the memory of what it received (receive counts,
records handed over); a process can share both among its waiters, nothing more (an Airflow deployment runs every
task in its own process, on many machines, and one or more triggerers). So in a triggerer one receiver serves
all its deferred tasks (``FcAsyncTaskTrigger`` waits for the record and its event carries it), and a blocking
task's worker process runs its own while it waits. Between processes the queue itself is the only channel, which
is why :class:`~airflow_fc_async.core.destinations.QueueDispatch` never holds a record of an awaited function
it does not wait for: it hands it back at once (1 s) for the process that does, and never serves a record from
memory (every claim carries a receipt handle, so the stored record's message is deleted).

Waiters register a request id (and their function) with the process-wide :class:`_Registry` and wait on a
future. The first waiter starts the receiver (an asyncio task on the caller's loop for triggers, a daemon thread
for sync callers); it receives batches of 16 with long polling, applies the dispatch plan and stops when no
waiter (and no stored record's message to delete) is left. Every receiver serves the whole dispatch, so waiters
of a second event loop (one ``asyncio.run`` per trigger) use the thread, which outlives loops: a loop that ends
cancels its receiver mid-poll, and an abandoned long poll still takes the next batch from the server, hidden for
the queue's ``VisibilityTimeout`` (see :class:`_AsyncReceiver`).

Deletion happens after storage: a claim carries the receipt handle of a message held invisible for
``hold_seconds``; the caller stores the record (XCom, a trigger event), then calls
:func:`ack_destination_record`. :func:`fetch_destination_record` does both for a caller with a
``before_delete`` callback. A process killed between claim and ack loses nothing: the message becomes visible
when its hold ends and the next waiter (another triggerer, the next try) receives it. Nothing here imports
Airflow.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from airflow_fc_async.core.destinations import BatchPlan, QueueDispatch, SharePolicy, Waiter
from airflow_fc_async.core.errors import FcError, FcNotFoundError
from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient
from airflow_fc_async.core.models import DestinationRecord

__all__ = [
    "ClaimedRecord",
    "aack_destination_record",
    "ack_destination_record",
    "aclaim_destination_record",
    "afetch_destination_record",
    "claim_destination_record",
    "fetch_destination_record",
    "receiver_stats",
    "reset_receivers",
    "stop_receivers",
    "watch_destination_record",
]

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
SYNC_HOLD_SECONDS = 60
TRIGGER_HOLD_SECONDS = 900
HANDOFF_SECONDS = 30.0  # how long a timed-out waiter waits for a record already taken off for it (the hold)


@dataclass(frozen=True)
class ClaimedRecord:
    """A record handed to its caller. ``receipt_handle`` deletes its message until ``hold_seconds`` pass; None
    when there is nothing to delete now (not ``delete_on_read``, or the record came from the cache: then the
    receiver deletes the message when it sees it again after :func:`ack_destination_record`)."""

    record: DestinationRecord
    queue: str
    message_id: str
    receipt_handle: str | None
    delete_on_read: bool

    def to_event(self) -> dict[str, Any]:
        """JSON for a trigger event: the record as XCom wants it, and what the worker needs to delete it."""
        return {
            "record": self.record.to_dict(),
            "queue": self.queue,
            "message_id": self.message_id,
            "receipt_handle": self.receipt_handle,
            "delete_on_read": self.delete_on_read,
        }

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> ClaimedRecord:
        record = DestinationRecord.from_json(_raw_record(event["record"]))
        return cls(
            record,
            event["queue"],
            event["message_id"],
            event.get("receipt_handle"),
            bool(event["delete_on_read"]),
        )


def _raw_record(data: dict[str, Any]) -> dict[str, Any]:
    """The wire shape back from :meth:`DestinationRecord.to_dict` (payloads were decoded: re-encode them)."""
    import json

    out = dict(data)
    for key in ("requestPayload", "responsePayload"):
        if not isinstance(out.get(key), str) and out.get(key) is not None:
            out[key] = json.dumps(out[key])
    return out


def receiver_key(client: MnsClient | AsyncMnsClient, queue: str) -> Key:
    return (client.endpoint, client.credentials.access_key_id, queue)


# -- the registry ---------------------------------------------------------------------------------------------
class _Registry:
    """Process-wide: one dispatch per key (shared by every receiver of that key), live receivers by key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.dispatches: dict[Key, QueueDispatch] = {}
        self.threads: dict[Key, _ThreadReceiver] = {}
        self.tasks: dict[tuple[int, Key], _AsyncReceiver] = {}
        self.stats: dict[str, int] = {}

    def dispatch(self, key: Key, policy: SharePolicy | None) -> QueueDispatch:
        found = self.dispatches.get(key)
        if found is None:
            found = self.dispatches[key] = QueueDispatch(policy)
        return found

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def thread(self, key: Key) -> _ThreadReceiver | None:
        found = self.threads.get(key)
        return found if found is not None and found.thread.is_alive() else None

    def task(self, loop: asyncio.AbstractEventLoop, key: Key) -> _AsyncReceiver | None:
        found = self.tasks.get((id(loop), key))
        return found if found is not None and not found.task.done() else None

    def other_loops(self, loop: asyncio.AbstractEventLoop, key: Key) -> bool:
        """Whether a receiver of ``key`` runs on another event loop of this process."""
        return any(k == key and i != id(loop) and not r.task.done() for (i, k), r in self.tasks.items())


_REGISTRY = _Registry()


def receiver_stats() -> dict[str, int]:
    """Requests the receivers of this process sent, by kind (receive, change_visibility, delete, ...)."""
    with _REGISTRY.lock:
        return dict(_REGISTRY.stats)


def reset_receivers() -> None:
    """Forget all dispatch state and counters (tests). Live receivers stop when their waiters are gone."""
    with _REGISTRY.lock:
        _REGISTRY.dispatches.clear()
        _REGISTRY.stats.clear()


def stop_receivers(timeout: float = 45.0) -> None:
    """Stop every receiver thread of this process and wait for them (tests; process shutdown).

    A receiver otherwise lingers after its last waiter while stored records' messages wait to be deleted when seen.
    The wait is at most one long poll (the HTTP read cannot be interrupted).
    """
    with _REGISTRY.lock:
        receivers = list(_REGISTRY.threads.values())
    for receiver in receivers:
        receiver.stopping = True
        receiver.wake.set()
    for receiver in receivers:
        receiver.thread.join(timeout)


def _give_back(key: Key, claim: ClaimedRecord) -> None:
    """A claim its waiter never took: keep its live handle for the next waiter of that request id."""
    if claim.receipt_handle and claim.delete_on_read:
        with _REGISTRY.lock:
            dispatch = _REGISTRY.dispatches.get(key)
            if dispatch is not None:
                dispatch.handle_back(claim.record.request_id, claim.receipt_handle)


def give_back_claim(client: MnsClient | AsyncMnsClient, claim: ClaimedRecord) -> None:
    """A claim its taker will not use (a record signal closed before its record was stored): the next waiter of
    this process for that request id gets its live receipt handle, so the stored record's message can be deleted."""
    _give_back(receiver_key(client, claim.queue), claim)


def _hit_claim(dispatch: QueueDispatch, hit: Any, queue: str, waiter: Waiter) -> ClaimedRecord:
    """The claim of a waiter that registered after this process had handed its record over already: with the
    handle an earlier waiter never took, if there is one (else the message is deleted when seen)."""
    with _REGISTRY.lock:
        handle = dispatch.take_handle(waiter.request_id) if waiter.delete_on_read else None
    return _claims(hit, queue, handle)[0][1]


def _claims(delivery: Any, queue: str, handle: str | None) -> list[tuple[Waiter, ClaimedRecord]]:
    out, given = [], False
    for waiter in delivery.waiters:
        mine = handle if waiter.delete_on_read and not given else None
        given = given or mine is not None
        out.append(
            (waiter, ClaimedRecord(delivery.record, queue, delivery.message_id, mine, waiter.delete_on_read))
        )
    return out


class _ReceiverBase:
    def __init__(self, key: Key, dispatch: QueueDispatch) -> None:
        self.key = key
        self.queue = key[2]
        self.dispatch = dispatch
        self.visibility: int | None = None
        self.stopping = False  # set by stop_receivers(): stop even with stored messages left to delete

    def _next_plan(self, messages: list[Any]) -> BatchPlan:
        with _REGISTRY.lock:
            _REGISTRY.count("receive")
            _REGISTRY.count("received", len(messages))
            return self.dispatch.plan(messages, time.monotonic(), self.visibility)

    def _fail_all(self, exc: BaseException) -> None:
        with _REGISTRY.lock:
            waiters = self.dispatch.fail_all()
        for waiter in waiters:
            waiter.slot(exc)


# -- asyncio ----------------------------------------------------------------------------------------------------
class _AsyncReceiver(_ReceiverBase):
    """The receiver on one event loop; like every receiver it serves the whole dispatch (waiters of other loops and
    threads too). A loop may end while others wait (``asyncio.run`` returns once its trigger has its event): its
    task is cancelled mid-poll, and the server still fills an abandoned long poll with the next batch, hidden for
    the queue's ``VisibilityTimeout``. So waiters of a second loop use a receiver thread (it outlives every loop;
    a receiver per loop, each abandoning a poll at its loop's end, hid one record again each time it came back
    until its waiter gave up, in R1), and a loop that ends while waiters are left hands them over to one."""

    def __init__(self, key: Key, dispatch: QueueDispatch, template: AsyncMnsClient) -> None:
        super().__init__(key, dispatch)
        self.client: AsyncMnsClient = _clone(template)
        self.wake = asyncio.Event()
        self.polling = False
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._run(), name=f"mns-receiver-{self.queue}")

    def poke(self) -> None:
        """Wake it from any thread (a waiter came or left)."""
        with contextlib.suppress(RuntimeError):  # its loop closed: it is gone
            self.loop.call_soon_threadsafe(self.wake.set)

    def _stop_if_idle(self) -> bool:
        with _REGISTRY.lock:
            if self.dispatch.has_work(time.monotonic()) and not self.stopping:
                return False
            _REGISTRY.tasks.pop((id(asyncio.get_running_loop()), self.key), None)
            return True

    async def _run(self) -> None:
        try:
            self.visibility = await _queue_visibility(self.client, self.queue)
            errors = 0
            while not self._stop_if_idle():
                self.polling = True
                try:
                    messages = await self.client.receive_messages(
                        self.queue,
                        max_messages=self.dispatch.policy.batch_size,
                        wait_seconds=self.dispatch.policy.long_poll,
                    )
                except FcError as exc:
                    if not exc.retryable:
                        self._fail_all(exc)
                        break
                    errors += 1
                    log.warning("receiving from MNS queue %s failed (%s); retrying", self.queue, exc)
                    await self._pause(min(30.0, 2.0**errors))
                    continue
                finally:
                    self.polling = False
                errors = 0
                plan = self._next_plan(messages)
                await self._apply(plan)
                if plan.delay:
                    await self._pause(plan.delay)
        finally:
            with _REGISTRY.lock:
                if _REGISTRY.tasks.get((id(asyncio.get_running_loop()), self.key)) is self:
                    del _REGISTRY.tasks[(id(asyncio.get_running_loop()), self.key)]
                if self.dispatch.waiting and _REGISTRY.thread(self.key) is None:
                    # this loop ends while others wait (of other loops or threads): hand them over to a thread
                    _REGISTRY.threads[self.key] = _ThreadReceiver(self.key, self.dispatch, self.client)
            await self.client.aclose()

    async def _pause(self, seconds: float) -> None:
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    async def _apply(self, plan: BatchPlan) -> None:
        unsettled = dict(enumerate(plan.deliveries))

        async def deliver(i: int, delivery: Any) -> None:
            handle = await self._hold(delivery)
            if unsettled.pop(i, None) is not None:
                for waiter, claim in _claims(delivery, self.queue, handle):
                    waiter.slot(claim)

        jobs: list[Awaitable[Any]] = [deliver(i, d) for i, d in unsettled.items()]
        jobs += [self._visibility(h, s) for h, s in plan.visibility]
        if plan.deletes:
            jobs.append(self._delete(plan.deletes))
        try:
            await asyncio.gather(*jobs)
        finally:
            # cancelled mid-hold (this loop ends): the waiters were taken off the dispatch, so they get their
            # record now, with the receive's handle (stale if the hold reached the server: deleted when seen)
            for delivery in unsettled.values():
                handle = (
                    delivery.message.receipt_handle
                    if delivery.hold is not None and delivery.message
                    else None
                )
                for waiter, claim in _claims(delivery, self.queue, handle):
                    waiter.slot(claim)

    async def _hold(self, delivery: Any) -> str | None:
        if delivery.hold is None or delivery.message is None:
            return None
        if delivery.hold == 0:
            return str(delivery.message.receipt_handle)
        return await self._visibility(str(delivery.message.receipt_handle), delivery.hold)

    async def _visibility(self, handle: str, seconds: int) -> str | None:
        with _REGISTRY.lock:
            _REGISTRY.count("change_visibility")
        try:
            return await self.client.change_message_visibility(self.queue, handle, seconds)
        except FcError as exc:
            log.debug("ChangeMessageVisibility on %s failed: %s", self.queue, exc)
            return None

    async def _delete(self, handles: list[str]) -> None:
        with _REGISTRY.lock:
            _REGISTRY.count("delete", len(handles))
        try:
            failed = await self.client.batch_delete_messages(self.queue, handles)
        except FcError as exc:
            log.warning(
                "deleting %d copies of stored records from %s failed: %s", len(handles), self.queue, exc
            )
            return
        if failed:
            log.debug("%d deletes failed on %s: %s", len(failed), self.queue, failed)


async def aclaim_destination_record(
    client: AsyncMnsClient,
    queue: str,
    request_id: str,
    *,
    timeout: float,
    delete_on_read: bool = True,
    hold_seconds: int = TRIGGER_HOLD_SECONDS,
    policy: SharePolicy | None = None,
    function_name: str | None = None,
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
                _give_back(key, result)
            else:
                future.set_result(result)

        try:
            loop.call_soon_threadsafe(done)
        except RuntimeError:  # the waiter's loop closed: nobody waits any more
            if not isinstance(result, BaseException):
                _give_back(key, result)

    waiter = Waiter(request_id, delete_on_read, hold_seconds, settle, function_name)
    with _REGISTRY.lock:
        dispatch = _REGISTRY.dispatch(key, policy)
        hit = dispatch.register(waiter, time.monotonic())
        if hit is None:
            live = _REGISTRY.thread(key) or _REGISTRY.task(loop, key)
            if live is not None:
                live.poke()
            elif _REGISTRY.other_loops(loop, key):  # several loops: one thread serves them all
                _REGISTRY.threads[key] = _ThreadReceiver(key, dispatch, client)
            else:
                _REGISTRY.tasks[(id(loop), key)] = _AsyncReceiver(key, dispatch, client)
    if hit is not None:
        return _hit_claim(dispatch, hit, queue, waiter)
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout=timeout)
    except TimeoutError:
        await asyncio.sleep(0)  # a delivery scheduled in the same instant still counts
        if not future.done() and _in_flight(dispatch, waiter):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), timeout=HANDOFF_SECONDS)
        return future.result() if future.done() and not future.exception() else None
    finally:
        left = True
        with _REGISTRY.lock:
            dispatch.unregister(waiter, time.monotonic())
            idle = not dispatch.has_work(time.monotonic())
            receiver = _REGISTRY.tasks.get((id(loop), key))
            thread = _REGISTRY.thread(key)
        if idle and receiver is not None:
            if receiver.polling:  # nobody left: do not keep a long poll (and this loop) busy
                receiver.task.cancel()
            receiver.wake.set()
        if thread is not None:
            thread.poke()


# -- threads ----------------------------------------------------------------------------------------------------
class _ThreadReceiver(_ReceiverBase):
    def __init__(self, key: Key, dispatch: QueueDispatch, template: MnsClient | AsyncMnsClient) -> None:
        super().__init__(key, dispatch)
        self.client: MnsClient = _clone(template, MnsClient)  # an async receiver hands over to a thread
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"mns-receiver-{self.queue}", daemon=True)
        self.thread.start()

    def _stop_if_idle(self) -> bool:
        with _REGISTRY.lock:
            if self.dispatch.has_work(time.monotonic()) and not self.stopping:
                return False
            _REGISTRY.threads.pop(self.key, None)
            return True

    def poke(self) -> None:
        self.wake.set()

    def _run(self) -> None:
        try:
            self.visibility = _queue_visibility_sync(self.client, self.queue)
            errors = 0
            while not self._stop_if_idle():
                try:
                    messages = self.client.receive_messages(
                        self.queue,
                        max_messages=self.dispatch.policy.batch_size,
                        wait_seconds=self.dispatch.policy.long_poll,
                    )
                except FcError as exc:
                    if not exc.retryable:
                        self._fail_all(exc)
                        break
                    errors += 1
                    log.warning("receiving from MNS queue %s failed (%s); retrying", self.queue, exc)
                    self._pause(min(30.0, 2.0**errors))
                    continue
                errors = 0
                plan = self._next_plan(messages)
                self._apply(plan)
                if plan.delay:
                    self._pause(plan.delay)
        finally:
            with _REGISTRY.lock:
                if _REGISTRY.threads.get(self.key) is self:
                    del _REGISTRY.threads[self.key]
            self.client.close()

    def _pause(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def _apply(self, plan: BatchPlan) -> None:
        for delivery in plan.deliveries:
            handle: str | None = None
            if delivery.hold is not None and delivery.message is not None:
                handle = (
                    str(delivery.message.receipt_handle)
                    if delivery.hold == 0
                    else self._visibility(str(delivery.message.receipt_handle), delivery.hold)
                )
            for waiter, claim in _claims(delivery, self.queue, handle):
                waiter.slot(claim)
        for handle_, seconds in plan.visibility:
            self._visibility(handle_, seconds)
        if plan.deletes:
            with _REGISTRY.lock:
                _REGISTRY.count("delete", len(plan.deletes))
            try:
                self.client.batch_delete_messages(self.queue, plan.deletes)
            except FcError as exc:
                log.warning("deleting copies of stored records from %s failed: %s", self.queue, exc)

    def _visibility(self, handle: str, seconds: int) -> str | None:
        with _REGISTRY.lock:
            _REGISTRY.count("change_visibility")
        try:
            return self.client.change_message_visibility(self.queue, handle, seconds)
        except FcError as exc:
            log.debug("ChangeMessageVisibility on %s failed: %s", self.queue, exc)
            return None


def claim_destination_record(
    client: MnsClient,
    queue: str,
    request_id: str,
    *,
    timeout: float,
    delete_on_read: bool = True,
    hold_seconds: int = SYNC_HOLD_SECONDS,
    policy: SharePolicy | None = None,
    function_name: str | None = None,
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
            _give_back(key, result)
        else:
            future.set_result(result)

    waiter = Waiter(request_id, delete_on_read, hold_seconds, settle, function_name)
    dispatch, hit, leave = _join_thread_receiver(client, queue, waiter, policy)
    if hit is not None:
        return _hit_claim(dispatch, hit, queue, waiter)
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        if not future.done() and _in_flight(dispatch, waiter):
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
        on_record(_claims(hit, queue, None)[0][1])
    return leave


def _join_thread_receiver(
    client: MnsClient, queue: str, waiter: Waiter, policy: SharePolicy | None
) -> tuple[QueueDispatch, Any, Callable[[], None]]:
    """Register ``waiter`` with the process's receiver thread of the queue (started if needed): the dispatch, the
    delivery at once when this process handed the record over already, and the call that unregisters the waiter."""
    key = receiver_key(client, queue)
    with _REGISTRY.lock:
        dispatch = _REGISTRY.dispatch(key, policy)
        hit = dispatch.register(waiter, time.monotonic())
        if hit is None:
            receiver = _REGISTRY.threads.get(key)
            if receiver is None or not receiver.thread.is_alive():
                _REGISTRY.threads[key] = _ThreadReceiver(key, dispatch, client)
            else:
                receiver.wake.set()

    def leave() -> None:
        with _REGISTRY.lock:
            dispatch.unregister(waiter, time.monotonic())
            receiver_ = _REGISTRY.threads.get(key)
        if receiver_ is not None:
            receiver_.wake.set()

    return dispatch, hit, leave


def _in_flight(dispatch: QueueDispatch, waiter: Waiter) -> bool:
    """Whether a receiver took ``waiter`` off the dispatch with its record and is still holding it (its
    ChangeMessageVisibility retries under faults). The record is coming: a waiter that returned None now would
    leave it to the next waiter for the same request id, served from memory without a receipt handle, so its
    message could not be deleted until seen again (one in ten blocking records in R1)."""
    with _REGISTRY.lock:
        return dispatch.taken(waiter)


# -- acknowledgement and the one-call helpers -------------------------------------------------------------
def _acked(client: MnsClient | AsyncMnsClient, claim: ClaimedRecord, deleted: bool) -> None:
    with _REGISTRY.lock:
        dispatch = _REGISTRY.dispatches.get(receiver_key(client, claim.queue))
        if dispatch is not None:
            dispatch.acked(claim.record.request_id, time.monotonic(), deleted=deleted)


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
        except FcNotFoundError:
            log.info("the message of record %s was visible again: deleted when seen", claim.record.request_id)
        except FcError as exc:  # the record is stored: a failed delete must not lose it for the caller
            log.warning(
                "deleting the message of stored record %s failed (%s): deleted when seen",
                claim.record.request_id,
                exc,
            )
    _acked(client, claim, deleted)
    return deleted


def _delete_when_seen(client: MnsClient, claim: ClaimedRecord, seconds: float) -> bool:
    key = receiver_key(client, claim.queue)
    with _REGISTRY.lock:
        dispatch = _REGISTRY.dispatch(key, None)
        dispatch.stored_elsewhere(claim.record, claim.message_id, time.monotonic())
        receiver = _REGISTRY.threads.get(key)
        if receiver is None or not receiver.thread.is_alive():
            _REGISTRY.threads[key] = _ThreadReceiver(key, dispatch, client)
        else:
            receiver.wake.set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with _REGISTRY.lock:
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
        except FcNotFoundError:
            log.info("the message of record %s was visible again: deleted when seen", claim.record.request_id)
        except FcError as exc:  # the record is stored: a failed delete must not lose it for the caller
            log.warning(
                "deleting the message of stored record %s failed (%s): deleted when seen",
                claim.record.request_id,
                exc,
            )
    _acked(client, claim, deleted)
    return deleted


def fetch_destination_record(
    client: MnsClient,
    queue: str,
    request_id: str,
    *,
    wait_seconds: float,
    delete_on_read: bool = True,
    before_delete: Callable[[DestinationRecord], Any] | None = None,
    function_name: str | None = None,
) -> DestinationRecord | None:
    """The record of ``request_id`` within ``wait_seconds`` (it may arrive before or after the task's terminal
    status), or None. ``before_delete(record)`` runs before its message is deleted: store the record there."""
    claim = claim_destination_record(
        client,
        queue,
        request_id,
        timeout=wait_seconds,
        delete_on_read=delete_on_read,
        function_name=function_name,
    )
    if claim is None:
        return None
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
    delete_on_read: bool = True,
    before_delete: Callable[[DestinationRecord], Any] | None = None,
    function_name: str | None = None,
) -> DestinationRecord | None:
    """The async twin of :func:`fetch_destination_record` (``before_delete`` may be a coroutine function)."""
    claim = await aclaim_destination_record(
        client,
        queue,
        request_id,
        timeout=wait_seconds,
        delete_on_read=delete_on_read,
        hold_seconds=SYNC_HOLD_SECONDS,
        function_name=function_name,
    )
    if claim is None:
        return None
    if before_delete is not None:
        result = before_delete(claim.record)
        if inspect.isawaitable(result):
            await result
    await aack_destination_record(client, claim)
    return claim.record


# -- helpers ------------------------------------------------------------------------------------------------------
def _clone(client: Any, cls: type | None = None) -> Any:
    """A receiver's own client (of ``cls``, else the same class): same endpoint, credentials, timeouts (the read
    timeout stays above the long poll), proxies and TLS verification."""
    transport = getattr(client, "_transport", None)
    extra: dict[str, Any] = {}
    if getattr(transport, "_proxies", None):
        extra["proxies"] = transport._proxies  # type: ignore[union-attr]
    if getattr(transport, "_verify", True) is not True:
        extra["verify"] = transport._verify  # type: ignore[union-attr]
    return (cls or type(client))(
        client.endpoint,
        client.credentials,
        connect_timeout=client.connect_timeout,
        read_timeout=max(client.read_timeout, 35.0),
        retry=client.retry,
        **extra,
    )


def _visibility_of(attrs: dict[str, str | int]) -> int | None:
    try:
        return int(attrs.get("VisibilityTimeout", ""))
    except (TypeError, ValueError):
        return None


async def _queue_visibility(client: AsyncMnsClient, queue: str) -> int | None:
    with _REGISTRY.lock:
        _REGISTRY.count("get_queue_attributes")
    try:
        return _visibility_of(await client.get_queue_attributes(queue))
    except FcError as exc:
        log.info(
            "could not read the attributes of MNS queue %s (%s): every hold is set explicitly", queue, exc
        )
        return None


def _queue_visibility_sync(client: MnsClient, queue: str) -> int | None:
    with _REGISTRY.lock:
        _REGISTRY.count("get_queue_attributes")
    try:
        return _visibility_of(client.get_queue_attributes(queue))
    except FcError as exc:
        log.info(
            "could not read the attributes of MNS queue %s (%s): every hold is set explicitly", queue, exc
        )
        return None
