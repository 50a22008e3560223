"""The destination receivers' shared state: the claim value, the process-wide registry, and what both receivers do.

Internal to :mod:`~airflow_fc_async.core.destination_receiver` (whose docstring explains the design; callers import
from there). :data:`REGISTRY` holds one :class:`~airflow_fc_async.core.destinations.QueueDispatch` per key (shared by
every receiver of that key), the live receiver threads and asyncio tasks, and the request counters, all under one
lock. :class:`ReceiverBase` is what the thread receiver (:mod:`~airflow_fc_async.core.receiver_thread`) and the
asyncio receiver (:mod:`~airflow_fc_async.core.receiver_asyncio`) share; they differ only in how they wait and send.
Nothing here imports Airflow.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_fc_async.core.destinations import BatchPlan, QueueDispatch, SharePolicy, Waiter
from airflow_fc_async.core.errors import FcError, FcNotFoundError
from airflow_fc_async.core.models import DestinationRecord
from airflow_fc_async.core.policies import error_pause

if TYPE_CHECKING:
    from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient
    from airflow_fc_async.core.receiver_asyncio import AsyncReceiver
    from airflow_fc_async.core.receiver_thread import ThreadReceiver

__all__ = [
    "REGISTRY",
    "ClaimedRecord",
    "Key",
    "ReceiverBase",
    "receiver_key",
    "receiver_stats",
    "reset_receivers",
]

log = logging.getLogger(
    "airflow_fc_async.core.destination_receiver"
)  # one logger name for the whole receiver

Key = tuple[str, str, str]


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
    out = dict(data)
    for key in ("requestPayload", "responsePayload"):
        if not isinstance(out.get(key), str) and out.get(key) is not None:
            out[key] = json.dumps(out[key])
    return out


def receiver_key(client: MnsClient | AsyncMnsClient, queue: str) -> Key:
    return (client.endpoint, client.credentials.access_key_id, queue)


class _Registry:
    """Process-wide: one dispatch per key (shared by every receiver of that key), live receivers by key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.dispatches: dict[Key, QueueDispatch] = {}
        self.threads: dict[Key, ThreadReceiver] = {}
        self.tasks: dict[tuple[int, Key], AsyncReceiver] = {}
        self.stats: dict[str, int] = {}

    def dispatch(self, key: Key, policy: SharePolicy | None) -> QueueDispatch:
        found = self.dispatches.get(key)
        if found is None:
            found = self.dispatches[key] = QueueDispatch(policy)
        return found

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def locked_count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.count(name, n)

    def thread(self, key: Key) -> ThreadReceiver | None:
        found = self.threads.get(key)
        return found if found is not None and found.thread.is_alive() else None

    def task(self, loop: asyncio.AbstractEventLoop, key: Key) -> AsyncReceiver | None:
        found = self.tasks.get((id(loop), key))
        return found if found is not None and not found.task.done() else None

    def other_loops(self, loop: asyncio.AbstractEventLoop, key: Key) -> bool:
        """Whether a receiver of ``key`` runs on another event loop of this process."""
        return any(k == key and i != id(loop) and not r.task.done() for (i, k), r in self.tasks.items())


REGISTRY = _Registry()


def receiver_stats() -> dict[str, int]:
    """Requests the receivers of this process sent, by kind (receive, change_visibility, delete, ...)."""
    with REGISTRY.lock:
        return dict(REGISTRY.stats)


def reset_receivers() -> None:
    """Forget all dispatch state and counters (tests). Live receivers stop when their waiters are gone."""
    with REGISTRY.lock:
        REGISTRY.dispatches.clear()
        REGISTRY.stats.clear()


def give_back(key: Key, claim: ClaimedRecord) -> None:
    """A claim its waiter never took: keep its live handle for the next waiter of that request id."""
    if claim.receipt_handle and claim.delete_on_read:
        with REGISTRY.lock:
            dispatch = REGISTRY.dispatches.get(key)
            if dispatch is not None:
                dispatch.handle_back(claim.record.request_id, claim.receipt_handle)


def hit_claim(dispatch: QueueDispatch, hit: Any, queue: str, waiter: Waiter) -> ClaimedRecord:
    """The claim of a waiter that registered after this process had handed its record over already: with the
    handle an earlier waiter never took, if there is one (else the message is deleted when seen)."""
    with REGISTRY.lock:
        handle = dispatch.take_handle(waiter.request_id) if waiter.delete_on_read else None
    return claims_of(hit, queue, handle)[0][1]


def claims_of(delivery: Any, queue: str, handle: str | None) -> list[tuple[Waiter, ClaimedRecord]]:
    """The claim of each waiter of ``delivery``: the first that deletes on read gets ``handle``."""
    out, given = [], False
    for waiter in delivery.waiters:
        mine = handle if waiter.delete_on_read and not given else None
        given = given or mine is not None
        out.append(
            (waiter, ClaimedRecord(delivery.record, queue, delivery.message_id, mine, waiter.delete_on_read))
        )
    return out


def settle_all(delivery: Any, queue: str, handle: str | None) -> None:
    """Hand ``delivery``'s record to each of its waiters."""
    for waiter, claim in claims_of(delivery, queue, handle):
        waiter.slot(claim)


def in_flight(dispatch: QueueDispatch, waiter: Waiter) -> bool:
    """Whether a receiver took ``waiter`` off the dispatch with its record and is still holding it (its
    ChangeMessageVisibility retries under faults). The record is coming: a waiter that returned None now would
    leave it to the next waiter for the same request id, served from memory without a receipt handle, so its
    message could not be deleted until seen again (one in ten blocking records in R1)."""
    with REGISTRY.lock:
        return dispatch.taken(waiter)


def acked(client: MnsClient | AsyncMnsClient, claim: ClaimedRecord, deleted: bool) -> None:
    """Tell the dispatch the record of ``claim`` is stored (its message ``deleted`` or to delete when seen)."""
    with REGISTRY.lock:
        dispatch = REGISTRY.dispatches.get(receiver_key(client, claim.queue))
        if dispatch is not None:
            dispatch.acked(claim.record.request_id, time.monotonic(), deleted=deleted)


def delete_failed(claim: ClaimedRecord, exc: FcError) -> None:
    """Log a failed delete of a stored record's message: the record is stored, so the caller loses nothing."""
    if isinstance(exc, FcNotFoundError):
        log.info("the message of record %s was visible again: deleted when seen", claim.record.request_id)
    else:
        log.warning(
            "deleting the message of stored record %s failed (%s): deleted when seen",
            claim.record.request_id,
            exc,
        )


class ReceiverBase:
    """What the thread and the asyncio receiver share: their key, dispatch and the decisions around each receive."""

    def __init__(self, key: Key, dispatch: QueueDispatch) -> None:
        self.key = key
        self.queue = key[2]
        self.dispatch = dispatch
        self.visibility: int | None = None
        self.stopping = False  # set by stop_receivers(): stop even with stored messages left to delete
        self.errors = 0  # failed receives in a row
        self._receive_args = {
            "max_messages": dispatch.policy.batch_size,
            "wait_seconds": dispatch.policy.long_poll,
        }

    def _next_plan(self, messages: list[Any]) -> BatchPlan:
        self.errors = 0
        with REGISTRY.lock:
            REGISTRY.count("receive")
            REGISTRY.count("received", len(messages))
            return self.dispatch.plan(messages, time.monotonic(), self.visibility)

    def _receive_failed(self, exc: FcError) -> float | None:
        """The pause after a failed receive (by the failures in a row); None (every waiter gets ``exc``) when
        retrying cannot fix it."""
        if not exc.retryable:
            self._fail_all(exc)
            return None
        self.errors += 1
        log.warning("receiving from MNS queue %s failed (%s); retrying", self.queue, exc)
        return error_pause(self.errors)

    def _fail_all(self, exc: BaseException) -> None:
        with REGISTRY.lock:
            waiters = self.dispatch.fail_all()
        for waiter in waiters:
            waiter.slot(exc)

    def _visibility_failed(self, exc: FcError) -> None:
        log.debug("ChangeMessageVisibility on %s failed: %s", self.queue, exc)

    def _settle(self, delivery: Any, handle: str | None) -> None:
        """Hand ``delivery``'s record to each of its waiters (``handle``: the receipt handle they acknowledge)."""
        settle_all(delivery, self.queue, handle)

    def _visibility_of(self, attrs: dict[str, str | int]) -> int | None:
        """The queue's ``VisibilityTimeout`` from its attributes (None when missing)."""
        try:
            return int(attrs.get("VisibilityTimeout", ""))
        except (TypeError, ValueError):
            return None

    def _attributes_failed(self, exc: FcError) -> None:
        log.info(
            "could not read the attributes of MNS queue %s (%s): every hold is set explicitly",
            self.queue,
            exc,
        )
