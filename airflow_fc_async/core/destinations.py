"""Finding one task's destination record in a shared MNS queue: the decisions, without I/O.

A destination queue is shared: every invocation of a function (and of other functions), and often a person or an
alerting job reading dead letters. MNS has no server-side filter, and every receive raises a message's
``DequeueCount`` (which can push someone else's message into a dead-letter queue). So one receiver per
(connection, queue) per process serves every waiter (see :mod:`~airflow_fc_async.core.destination_receiver`),
and :class:`QueueDispatch` decides, batch by batch, what to do with each message it received:

* **ours** (a record whose request id a waiter registered): handed to the waiters. With ``delete_on_read`` the
  message is *held* (kept invisible long enough for the caller to store the record) and deleted only when the
  caller acknowledges (:meth:`QueueDispatch.acked`): never before the record is stored. Without it, it is handed
  back at once.
* **a copy of a record already handed over** (same request id, or the same message seen again after the
  acknowledgement): deleted; the waiter was resolved once, so a record redelivered twice is stored once.
* **a record of an awaited function that nobody here waits for** (its waiter lives in another process, on this
  or another machine, or registers a moment later): handed back at once (``hand_back``, 1 s), never held, so the
  process that waits for it receives it on its next receive. A process knows the functions its own waiters
  named in the last ``function_memory`` seconds (a waiter that names none hands back nobody's records: a
  record-cycling wildcard would let orphan records of every function block the sweep). After
  ``record_touches`` receives by this process without a claim it counts as foreign (an orphan: bounded cost).
* **foreign** (anything else: not a record, or a record of a function nobody here awaits): never deleted; handed
  back on the schedule of :meth:`SharePolicy.foreign_hold`. A record handed to a waiter that only looked at it
  (``delete_on_read`` False: push completion) is on that schedule from its second touch when it comes back, and
  its return does not count as an idle batch (it is expected; backing off would delay the next record).

Nothing is served from memory: a record always reaches its waiter with a receipt handle from a receive, so its
message is deleted once the record is stored, whichever process received it first.

Cost per record with ``P`` processes receiving from the queue (each with at least one waiter): at most
``1/16`` receive + 1 hold + 1 delete for its owner, plus, for every other process that receives it before the
owner does, ``1/16`` receive + 1 ChangeMessageVisibility: ``<= (P + 1) * (1/16 + 1) + 1`` requests, and at most
``P * record_touches`` hand-backs for a record that nobody claims.

Reconciling "hand foreign messages back at once" with "touch them as rarely as possible": MNS serves visible
messages roughly oldest first, so a message handed back after 1 s is served again ahead of everything newer:
behind a backlog a receiver that hands everything back at once never reaches its record, and raises the same
16 messages' ``DequeueCount`` on every receive. Hence the schedule, per message this process has received
``k`` times:

* ``k = 1`` and the batch was not full (we saw the whole visible queue): hand back at once (1 s);
* ``k = 1`` in a full batch (a backlog to sweep): keep it for ``sweep_hold`` (30 s, what the queue's default
  ``VisibilityTimeout`` does to any consumer's receive; no request at all when the queue's own visibility
  timeout already equals it);
* ``k >= 2`` (we are cycling over the same messages): ``sweep_hold * 2**(k-2)``, capped at ``max_hold``.

So one process receives a given foreign message at most :meth:`SharePolicy.max_touches` times in ``T`` seconds
(2 within the first 31 s, 3 within 91 s, 6 within 7.5 min, then one more per ``max_hold``). Receiving backs off
(1, 2, 4 ... ``max_backoff`` s) while batches hold only messages already seen, and never spins: a long poll
waits for arrivals when nothing is visible.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_fc_async.core.models import DestinationRecord
from airflow_fc_async.core.share_policy import SharePolicy

__all__ = [
    "BatchPlan",
    "Delivery",
    "QueueDispatch",
    "ReceivedMessage",
    "SharePolicy",
    "Waiter",
    "fit_record",
    "format_failure_message",
]


class ReceivedMessage(Protocol):
    """What the dispatch needs of a received message (``core.mns.MnsMessage`` has it)."""

    @property
    def message_id(self) -> str: ...
    @property
    def receipt_handle(self) -> str | None: ...
    @property
    def body(self) -> str: ...


_ids = itertools.count(1)


@dataclass(eq=False)
class Waiter:
    """One caller waiting for the record of ``request_id``; ``slot`` is the driver's (a future)."""

    request_id: str
    delete_on_read: bool = True
    hold_seconds: int = 60
    slot: Any = field(default=None, repr=False)
    function_name: str | None = None
    id: int = field(default_factory=lambda: next(_ids))


@dataclass(frozen=True)
class Delivery:
    """A record for its waiters. ``hold``: seconds to keep the message invisible (a ChangeMessageVisibility that
    yields the handle the caller acknowledges with), 0 when the receive's own visibility suffices, None when the
    message is handed back at once or was not received now (from the cache: ``message`` is None)."""

    record: DestinationRecord
    message_id: str
    waiters: tuple[Waiter, ...]
    message: ReceivedMessage | None
    hold: int | None


@dataclass
class BatchPlan:
    """What to do after one receive: deliveries, visibility changes ``(handle, seconds)``, deletes, the pause."""

    deliveries: list[Delivery] = field(default_factory=list)
    visibility: list[tuple[str, int]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    delay: float = 0.0
    foreign: int = 0
    handed_back: int = 0


@dataclass
class _Handled:
    record: DestinationRecord
    message_id: str
    delete: bool
    at: float
    acked: bool = False
    original_deleted: bool = False
    handle: str | None = None  # a live receipt handle whose waiter left before it took the record

    @property
    def pending(self) -> bool:
        """Stored by the caller, but its message is still in the queue: delete it when seen."""
        return self.delete and self.acked and not self.original_deleted


class QueueDispatch:
    """The state of one (connection, queue) in one process: waiters, seen messages, cached and handled records.

    Pure: the driver passes the clock (``now``, monotonic seconds) and the queue's ``VisibilityTimeout``."""

    def __init__(self, policy: SharePolicy | None = None) -> None:
        self.policy = policy or SharePolicy()
        self._waiters: dict[str, list[Waiter]] = {}
        self._touches: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._functions: dict[str, float] = {}  # function name -> last registration (monotonic)
        self._handled: OrderedDict[str, _Handled] = OrderedDict()
        self._looked: OrderedDict[str, float] = OrderedDict()  # request ids whose only waiters just looked
        self.idle_batches = 0
        self.delivered = 0

    # -- waiters ----------------------------------------------------------------------------------------------
    def register(self, waiter: Waiter, now: float) -> Delivery | None:
        """Add a waiter; a delivery at once only when this process handed the record over already (a second
        waiter for the same request id). Otherwise the next receive finds it: other processes hand it back at once."""
        self._expire(now)
        if waiter.function_name:
            self._functions[waiter.function_name] = now
        handled = self._handled.get(waiter.request_id)
        if handled is not None:
            handled.delete = handled.delete or waiter.delete_on_read
            return Delivery(handled.record, handled.message_id, (waiter,), None, None)
        self._waiters.setdefault(waiter.request_id, []).append(waiter)
        self.idle_batches = 0  # someone new: receive now
        return None

    def handle_back(self, request_id: str, handle: str) -> None:
        """A claim reached a waiter that had already left (cancelled, timed out, its loop closed): keep its live
        handle for the next waiter of the same request id, which would otherwise get the record without one (and
        could not delete the message this process holds invisible)."""
        handled = self._handled.get(request_id)
        if handled is not None and not handled.acked:
            handled.handle = handle

    def take_handle(self, request_id: str) -> str | None:
        """The handle kept by :meth:`handle_back`, once."""
        handled = self._handled.get(request_id)
        if handled is None:
            return None
        handle, handled.handle = handled.handle, None
        return handle

    def awaits_function(self, record: DestinationRecord) -> bool:
        """Whether a waiter of this process named the record's function lately."""
        name = (record.function_name or "").split("/")[0]  # an ARN may go on with a qualifier
        return name in self._functions

    def unregister(self, waiter: Waiter, now: float | None = None) -> None:
        waiters = self._waiters.get(waiter.request_id)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[waiter.request_id]
                if not waiter.delete_on_read and now is not None:
                    # a waiter that only looked left before its record came (push completion: the poll was first)
                    self._looked.pop(waiter.request_id, None)
                    self._looked[waiter.request_id] = now

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    def has_work(self, now: float) -> bool:
        """True while someone waits, or an acknowledged record's message still has to be deleted when seen."""
        self._expire(now)
        return bool(self._waiters) or any(h.pending for h in self._handled.values())

    def taken(self, waiter: Waiter) -> bool:
        """Whether ``waiter`` was taken off with its record by a delivery (its hold may still be in flight)."""
        return waiter not in self._waiters.get(waiter.request_id, ())

    def fail_all(self) -> list[Waiter]:
        """Remove and return every waiter (the queue failed in a way retrying cannot fix)."""
        waiters = [w for ws in self._waiters.values() for w in ws]
        self._waiters.clear()
        return waiters

    def acked(self, request_id: str, now: float, *, deleted: bool) -> None:
        """The caller stored the record and deleted its message (``deleted``), or could not (no handle, or a
        stale one): then its message is deleted when seen again. Copies are deleted when seen either way."""
        handled = self._handled.get(request_id)
        if handled is not None:
            handled.acked = True
            handled.original_deleted = handled.original_deleted or deleted
            handled.at = now
            self._handled.move_to_end(request_id)

    def stored_elsewhere(self, record: DestinationRecord, message_id: str, now: float) -> None:
        """A record stored by its caller whose message this process did not receive (it came in a trigger event)
        and could not delete by handle: delete its message when a receive shows it."""
        self._mark_handled(record, message_id, True, now)
        self.acked(record.request_id, now, deleted=False)

    def pending(self, request_id: str) -> bool:
        handled = self._handled.get(request_id)
        return handled is not None and handled.pending

    # -- one batch ----------------------------------------------------------------------------------------------
    def plan(
        self, messages: Sequence[ReceivedMessage], now: float, queue_visibility: int | None
    ) -> BatchPlan:
        """Decide the fate of every message of one receive (see the module docstring)."""
        self._expire(now)
        plan = BatchPlan()
        full = len(messages) >= self.policy.batch_size
        progress = False
        for msg in messages:
            handle = msg.receipt_handle
            if handle is None:
                continue
            record = DestinationRecord.from_body(msg.body)
            handled = self._handled.get(record.request_id) if record else None
            if (
                record is not None
                and handled is not None
                and handled.delete
                and (msg.message_id != handled.message_id or handled.acked)
            ):
                # a copy of a record already handed over (even in this batch), or its stored message
                plan.deletes.append(handle)
                if handled.acked and msg.message_id == handled.message_id:
                    handled.original_deleted = True
                progress = True
                continue
            if record is not None and record.request_id in self._waiters:
                waiters = tuple(self._waiters.pop(record.request_id))
                delete = any(w.delete_on_read for w in waiters)
                hold: int | None = None
                if delete:
                    want = max(w.hold_seconds for w in waiters)
                    hold = 0 if queue_visibility is not None and want <= queue_visibility - 5 else want
                else:
                    plan.visibility.append((handle, self.policy.hand_back))
                delivery = Delivery(record, msg.message_id, waiters, msg, hold)
                plan.deliveries.append(delivery)
                self._mark_handled(record, msg.message_id, delete, now)
                self.delivered += 1
                progress = True
                continue
            touches = self._touch(msg.message_id, now)
            if touches == 1 or (record is not None and record.request_id in self._looked):
                progress = True  # new, or the record of a looking waiter that left before it came: expected
            if (
                record is not None
                and handled is None
                and touches <= self.policy.record_touches
                and self.awaits_function(record)
            ):
                # someone else's record (another process, or a waiter still to come): back at once, never held
                plan.visibility.append((handle, self.policy.hand_back))
                plan.handed_back += 1
                continue
            if record is not None and handled is not None and not handled.delete:
                # a record handed over without taking it (a waiter only looked: push completion), back after its
                # hand-back: expected, so no back-off (that would delay the next push), and it is on its second
                # touch of the schedule already (the delivery was the first)
                progress = True
                touches += 1

            # foreign: never deleted; handed back on the schedule
            hold_s = self.policy.foreign_hold(touches, full_batch=full)
            if hold_s != queue_visibility:  # the receive already hid it for exactly that long otherwise
                plan.visibility.append((handle, hold_s))
            plan.foreign += 1
        if progress or not messages:
            self.idle_batches = 0
        else:
            self.idle_batches += 1
        plan.delay = self.policy.backoff(self.idle_batches)
        return plan

    # -- memory ---------------------------------------------------------------------------------------------
    def _touch(self, message_id: str, now: float) -> int:
        count = self._touches.pop(message_id, (0, now))[0] + 1
        self._touches[message_id] = (count, now)
        while len(self._touches) > self.policy.memory_size:
            self._touches.popitem(last=False)
        return count

    def touches(self, message_id: str) -> int:
        return self._touches.get(message_id, (0, 0.0))[0]

    def _mark_handled(self, record: DestinationRecord, message_id: str, delete: bool, now: float) -> None:
        self._handled.pop(record.request_id, None)
        self._handled[record.request_id] = _Handled(record, message_id, delete, now)

    def _expire(self, now: float) -> None:
        _drop_older(self._touches, now - self.policy.memory_seconds, lambda v: v[1])
        _drop_older(self._looked, now - self.policy.pending_seconds, lambda v: v)
        live = {w.function_name for ws in self._waiters.values() for w in ws}
        for name in [n for n, t in self._functions.items() if t < now - self.policy.function_memory]:
            if name not in live:  # a function stays awaited while a waiter for it waits
                del self._functions[name]
        horizon = now - self.policy.pending_seconds
        while self._handled:
            key, h = next(iter(self._handled.items()))
            if h.at >= horizon:
                break
            del self._handled[key]


def _drop_older(od: OrderedDict[str, Any], horizon: float, stamp: Any) -> None:
    while od:
        key, value = next(iter(od.items()))
        if stamp(value) >= horizon:
            break
        del od[key]


def format_failure_message(record: DestinationRecord | None, *, limit: int = 2000) -> str:
    """One line quoting the record's condition, functionError and responsePayload (for a failed task's error)."""
    if record is None:
        return "no destination record was found"
    payload = record.response_payload
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, sort_keys=True)
    if len(text) > limit:
        text = text[:limit] + "..."
    parts: Iterable[str] = (
        f"condition={record.condition or '-'}",
        f"functionError={record.function_error or '-'}",
        f"invokeCount={record.approximate_invoke_count}",
        f"responsePayload={text or '-'}",
    )
    return f"destination record of request {record.request_id}: " + ", ".join(parts)


PAYLOAD_KEYS = ("responsePayload", "requestPayload")


def fit_record(record: dict[str, Any], budget: int) -> tuple[dict[str, Any], list[str]]:
    """The record dict within ``budget`` bytes of JSON: ``responsePayload``, then ``requestPayload`` replaced by
    None (with ``<key>_truncated: True``) until it fits. Returns the record and the keys dropped."""
    out, dropped = dict(record), []
    for key in PAYLOAD_KEYS:
        if _json_size(out) <= budget:
            break
        if out.get(key) is not None:
            out[key] = None
            out[f"{key}_truncated"] = True
            dropped.append(key)
    return out, dropped


def _json_size(value: Any) -> int:
    return len(json.dumps(value, default=str))
