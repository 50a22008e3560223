"""One receiver per (endpoint, access key id, queue) per process, serving every caller that waits for a record.

Waiters never scan the queue themselves: they register a request id with the process-wide :class:`_Registry`
and wait on a future. The first waiter starts the receiver (an asyncio task on the caller's loop for
triggers, a daemon thread for sync callers); it receives batches of 16 with long polling, applies the
:class:`~airflow_fc_async.core.destinations.QueueDispatch` plan (hold ours, hand back or hold foreign ones,
delete copies of stored records) and stops when no waiter is left. The dispatch state (receive counts,
cache of records seen) outlives the receivers, so successive sensor pokes keep the sharing schedule.

Deletion happens after storage: a claim carries the receipt handle of a message held invisible for
``hold_seconds``; the caller stores the record (XCom, a trigger event), then calls
:func:`ack_destination_record`. :func:`fetch_destination_record` does both for a caller with a
``before_delete`` callback. Nothing here imports Airflow.
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
]

log = logging.getLogger(__name__)

Key = tuple[str, str, str]
SYNC_HOLD_SECONDS = 60
TRIGGER_HOLD_SECONDS = 900


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
    def __init__(self, key: Key, dispatch: QueueDispatch, template: AsyncMnsClient) -> None:
        super().__init__(key, dispatch)
        self.client: AsyncMnsClient = _clone(template)
        self.wake = asyncio.Event()
        self.polling = False
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"mns-receiver-{self.queue}")

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
            await self.client.aclose()

    async def _pause(self, seconds: float) -> None:
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    async def _apply(self, plan: BatchPlan) -> None:
        async def deliver(delivery: Any) -> None:
            handle = await self._hold(delivery)
            for waiter, claim in _claims(delivery, self.queue, handle):
                waiter.slot(claim)

        jobs: list[Awaitable[Any]] = [deliver(d) for d in plan.deliveries]
        jobs += [self._visibility(h, s) for h, s in plan.visibility]
        if plan.deletes:
            jobs.append(self._delete(plan.deletes))
        await asyncio.gather(*jobs)

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
) -> ClaimedRecord | None:
    """Wait up to ``timeout`` seconds for the record of ``request_id`` via this loop's shared receiver."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[ClaimedRecord] = loop.create_future()

    def settle(result: ClaimedRecord | BaseException) -> None:
        def done() -> None:
            if not future.done():
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

        loop.call_soon_threadsafe(done)

    waiter = Waiter(request_id, delete_on_read, hold_seconds, settle)
    key = receiver_key(client, queue)
    with _REGISTRY.lock:
        dispatch = _REGISTRY.dispatch(key, policy)
        hit = dispatch.register(waiter, time.monotonic())
        if hit is None:
            receiver = _REGISTRY.tasks.get((id(loop), key))
            if receiver is None or receiver.task.done():
                _REGISTRY.tasks[(id(loop), key)] = _AsyncReceiver(key, dispatch, client)
            else:
                receiver.wake.set()
    if hit is not None:
        return _claims(hit, queue, None)[0][1]
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout=timeout)
    except TimeoutError:
        await asyncio.sleep(0)  # a delivery scheduled in the same instant still counts
        return future.result() if future.done() and not future.exception() else None
    finally:
        with _REGISTRY.lock:
            dispatch.unregister(waiter)
            idle = not dispatch.has_work(time.monotonic())
            receiver = _REGISTRY.tasks.get((id(loop), key))
        if idle and receiver is not None:
            if receiver.polling:  # nobody left: do not keep a long poll (and this loop) busy
                receiver.task.cancel()
            receiver.wake.set()


# -- threads ----------------------------------------------------------------------------------------------------
class _ThreadReceiver(_ReceiverBase):
    def __init__(self, key: Key, dispatch: QueueDispatch, template: MnsClient) -> None:
        super().__init__(key, dispatch)
        self.client: MnsClient = _clone(template)
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"mns-receiver-{self.queue}", daemon=True)
        self.thread.start()

    def _stop_if_idle(self) -> bool:
        with _REGISTRY.lock:
            if self.dispatch.has_work(time.monotonic()) and not self.stopping:
                return False
            _REGISTRY.threads.pop(self.key, None)
            return True

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
) -> ClaimedRecord | None:
    """Block up to ``timeout`` seconds for the record of ``request_id`` via the process's shared receiver thread."""
    future: concurrent.futures.Future[ClaimedRecord] = concurrent.futures.Future()

    def settle(result: ClaimedRecord | BaseException) -> None:
        if future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    waiter = Waiter(request_id, delete_on_read, hold_seconds, settle)
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
    if hit is not None:
        return _claims(hit, queue, None)[0][1]
    try:
        return future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        return future.result() if future.done() and not future.exception() else None
    finally:
        with _REGISTRY.lock:
            dispatch.unregister(waiter)
            receiver_ = _REGISTRY.threads.get(key)
        if receiver_ is not None:
            receiver_.wake.set()


# -- acknowledgement and the one-call helpers -------------------------------------------------------------
def _acked(client: MnsClient | AsyncMnsClient, claim: ClaimedRecord, deleted: bool) -> None:
    with _REGISTRY.lock:
        dispatch = _REGISTRY.dispatches.get(receiver_key(client, claim.queue))
        if dispatch is not None:
            dispatch.acked(claim.record.request_id, time.monotonic(), deleted=deleted)


def ack_destination_record(client: MnsClient, claim: ClaimedRecord) -> bool:
    """Call once the record is stored: deletes its message (when ``delete_on_read``). True when deleted now;
    False when it could not be (no handle, or the hold ran out): a receiver of this process deletes it (and any
    copy) when it sees it again."""
    if not claim.delete_on_read:
        return False
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
) -> DestinationRecord | None:
    """The record of ``request_id`` within ``wait_seconds`` (it may arrive before or after the task's terminal
    status), or None. ``before_delete(record)`` runs before its message is deleted: store the record there."""
    claim = claim_destination_record(
        client, queue, request_id, timeout=wait_seconds, delete_on_read=delete_on_read
    )
    if claim is None:
        return None
    if before_delete is not None:
        before_delete(claim.record)
    ack_destination_record(client, claim)
    return claim.record


async def afetch_destination_record(
    client: AsyncMnsClient,
    queue: str,
    request_id: str,
    *,
    wait_seconds: float,
    delete_on_read: bool = True,
    before_delete: Callable[[DestinationRecord], Any] | None = None,
) -> DestinationRecord | None:
    """The async twin of :func:`fetch_destination_record` (``before_delete`` may be a coroutine function)."""
    claim = await aclaim_destination_record(
        client,
        queue,
        request_id,
        timeout=wait_seconds,
        delete_on_read=delete_on_read,
        hold_seconds=SYNC_HOLD_SECONDS,
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
def _clone(client: Any) -> Any:
    """A receiver's own client: same endpoint, credentials, timeouts (the read timeout stays above the long poll),
    proxies and TLS verification."""
    transport = getattr(client, "_transport", None)
    extra: dict[str, Any] = {}
    if getattr(transport, "_proxies", None):
        extra["proxies"] = transport._proxies  # type: ignore[union-attr]
    if getattr(transport, "_verify", True) is not True:
        extra["verify"] = transport._verify  # type: ignore[union-attr]
    return type(client)(
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
