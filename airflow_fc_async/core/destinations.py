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
* **foreign** (anything else, including records nobody in this process waits for): never deleted; handed back
  on the schedule of :meth:`SharePolicy.foreign_hold`. Records among them are cached for a while (request id ->
  record), so a waiter that registers a moment later gets its record without another receive.

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
import math
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_fc_async.core.models import DestinationRecord

__all__ = [
    "BatchPlan",
    "Delivery",
    "QueueDispatch",
    "ReceivedMessage",
    "SharePolicy",
    "Waiter",
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


@dataclass(frozen=True)
class SharePolicy:
    """How a receiver shares a queue: holds of foreign messages, receive back-off, memory sizes."""

    hand_back: int = 1
    sweep_hold: int = 30
    max_hold: int = 900
    batch_size: int = 16
    long_poll: int = 20
    max_backoff: float = 30.0
    cache_seconds: float = 300.0
    cache_size: int = 10_000
    memory_size: int = 200_000
    pending_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not 1 <= self.hand_back <= self.sweep_hold <= self.max_hold <= 43200:
            raise ValueError("need 1 <= hand_back <= sweep_hold <= max_hold <= 43200")
        if not 1 <= self.batch_size <= 16:
            raise ValueError(f"batch_size must be 1..16, got {self.batch_size}")
        if not 0 <= self.long_poll <= 30:
            raise ValueError(f"long_poll must be 0..30 s, got {self.long_poll}")

    def foreign_hold(self, touches: int, *, full_batch: bool) -> int:
        """Seconds a foreign message stays invisible after this process received it for the ``touches``-th time."""
        if touches <= 1:
            return self.sweep_hold if full_batch else self.hand_back
        return min(self.max_hold, self.sweep_hold * (1 << min(touches - 2, 30)))

    def backoff(self, idle_batches: int) -> float:
        """The pause before the next receive after ``idle_batches`` batches in a row brought nothing new."""
        if idle_batches <= 0:
            return 0.0
        return min(self.max_backoff, 2.0 ** (idle_batches - 1))

    def max_touches(self, seconds: float) -> int:
        """At most this many receives of one foreign message by one process within ``seconds`` (the bound the
        schedule promises; the shortest holds are assumed: hand back at once on the first receive)."""
        touches, t = 1, 0.0
        while True:
            t += self.foreign_hold(touches, full_batch=False)
            if t > seconds:
                return touches
            touches += 1
            if self.foreign_hold(touches, full_batch=False) >= self.max_hold:
                return touches + math.floor((seconds - t) / self.max_hold)

    @property
    def memory_seconds(self) -> float:
        """How long a message's receive count is remembered: longer than any hold, so the schedule holds."""
        return 2.0 * self.max_hold


_ids = itertools.count(1)


@dataclass(eq=False)
class Waiter:
    """One caller waiting for the record of ``request_id``; ``slot`` is the driver's (a future)."""

    request_id: str
    delete_on_read: bool = True
    hold_seconds: int = 60
    slot: Any = field(default=None, repr=False)
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


@dataclass
class _Handled:
    record: DestinationRecord
    message_id: str
    delete: bool
    at: float
    acked: bool = False
    original_deleted: bool = False

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
        self._cache: OrderedDict[str, tuple[DestinationRecord, str, float]] = OrderedDict()
        self._handled: OrderedDict[str, _Handled] = OrderedDict()
        self.idle_batches = 0
        self.delivered = 0

    # -- waiters ----------------------------------------------------------------------------------------------
    def register(self, waiter: Waiter, now: float) -> Delivery | None:
        """Add a waiter; a delivery at once when the record was seen a moment ago (from the cache) or handed over
        already in this process (a second waiter for the same request id)."""
        self._expire(now)
        cached = self._cache.get(waiter.request_id)
        if cached is not None:
            record, message_id, _ = cached
            self._mark_handled(record, message_id, waiter.delete_on_read, now)
            self.delivered += 1
            return Delivery(record, message_id, (waiter,), None, None)
        handled = self._handled.get(waiter.request_id)
        if handled is not None:
            handled.delete = handled.delete or waiter.delete_on_read
            return Delivery(handled.record, handled.message_id, (waiter,), None, None)
        self._waiters.setdefault(waiter.request_id, []).append(waiter)
        self.idle_batches = min(self.idle_batches, 1)  # someone new: look again soon, but do not spin
        return None

    def unregister(self, waiter: Waiter) -> None:
        waiters = self._waiters.get(waiter.request_id)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiters[waiter.request_id]

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    def has_work(self, now: float) -> bool:
        """True while someone waits, or an acknowledged record's message still has to be deleted when seen."""
        self._expire(now)
        return bool(self._waiters) or any(h.pending for h in self._handled.values())

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
            # foreign: never deleted; cached when it is a record; handed back on the schedule
            if record is not None and handled is None:
                self._cache_record(record, msg.message_id, now)
            touches = self._touch(msg.message_id, now)
            if touches == 1:
                progress = True
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

    def _cache_record(self, record: DestinationRecord, message_id: str, now: float) -> None:
        self._cache.pop(record.request_id, None)
        self._cache[record.request_id] = (record, message_id, now)
        while len(self._cache) > self.policy.cache_size:
            self._cache.popitem(last=False)

    def _mark_handled(self, record: DestinationRecord, message_id: str, delete: bool, now: float) -> None:
        self._cache.pop(record.request_id, None)
        self._handled.pop(record.request_id, None)
        self._handled[record.request_id] = _Handled(record, message_id, delete, now)

    def _expire(self, now: float) -> None:
        _drop_older(self._touches, now - self.policy.memory_seconds, lambda v: v[1])
        _drop_older(self._cache, now - self.policy.cache_seconds, lambda v: v[2])
        horizon = now - max(self.policy.pending_seconds, self.policy.cache_seconds)
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
