"""Destination records as events: decode an MNS message into an event payload, and decide whether a watcher wants it.

Pure (no I/O, no Airflow): :mod:`airflow_fc_async.triggers.mns_events` receives the messages and hands them on.
A watcher's filter names functions and/or conditions; a message that is not a destination record, or that the
filter excludes, is *foreign*: it is handed back to the queue (visible again after a delay), never deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from airflow_fc_async.core.errors import FcValidationError
from airflow_fc_async.core.mns_requests import MnsMessage
from airflow_fc_async.core.models import DestinationRecord
from airflow_fc_async.core.policies import ERROR_PAUSE_CAP, capped_doubling, error_pause

__all__ = [
    "SUCCESS_CONDITION",
    "DestinationEvent",
    "DestinationFilter",
    "foreign_hand_back_seconds",
    "receive_error_backoff",
]

SUCCESS_CONDITION = "Success"
"""The condition name a filter uses for successful executions (FC's record has an empty condition then)."""

_FAILURE_ALIAS = "Failure"
"""Any failed execution: every non-empty condition (``UnhandledInvocationError``, ``Timeout``, ...)."""


@dataclass(frozen=True)
class DestinationEvent:
    """One destination record taken off a queue, with the message facts a handler needs."""

    record: DestinationRecord
    message_id: str
    enqueue_time: str | None
    dequeue_count: int

    @classmethod
    def from_message(cls, message: MnsMessage) -> DestinationEvent | None:
        """The event of a message, or None when its body is not a destination record."""
        record = DestinationRecord.from_body(message.body)
        if record is None:
            return None
        return cls(
            record=record,
            message_id=message.message_id,
            enqueue_time=message.enqueue_time.isoformat() if message.enqueue_time else None,
            dequeue_count=message.dequeue_count,
        )

    @property
    def condition(self) -> str:
        """FC's condition, or ``Success`` for a successful execution (its record's condition is empty)."""
        return self.record.condition or (SUCCESS_CONDITION if self.record.succeeded else "")

    def to_payload(self, queue: str) -> dict[str, Any]:
        """The trigger event's payload (JSON): the decoded record and where it came from."""
        return {
            "queue": queue,
            "message_id": self.message_id,
            "enqueue_time": self.enqueue_time,
            "dequeue_count": self.dequeue_count,
            "request_id": self.record.request_id,
            "function_name": self.record.function_name,
            "condition": self.condition,
            "record": self.record.to_dict(),
        }


@dataclass(frozen=True)
class DestinationFilter:
    """Which records a watcher wants: ``function_names`` and ``conditions`` (None = any).

    Conditions are FC's (``UnhandledInvocationError``, ``Timeout``, ...), ``Success`` for successful runs, or
    ``Failure`` for any failed one. Matching is exact for function names, case-insensitive for conditions.
    """

    function_names: frozenset[str] | None = None
    conditions: frozenset[str] | None = None

    @classmethod
    def build(
        cls, function_names: Iterable[str] | str | None, conditions: Iterable[str] | str | None
    ) -> DestinationFilter:
        return cls(_names("function_names", function_names), _conditions(conditions))

    def matches(self, event: DestinationEvent) -> bool:
        if self.function_names is not None and event.record.function_name not in self.function_names:
            return False
        if self.conditions is None:
            return True
        condition = event.condition.lower()
        if _FAILURE_ALIAS.lower() in self.conditions and not event.record.succeeded:
            return True
        return condition in self.conditions


def _names(field: str, value: Iterable[str] | str | None) -> frozenset[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    if not items or any(not isinstance(v, str) or not v.strip() for v in items):
        raise FcValidationError(field, f"expected non-empty names, got {value!r}")
    return frozenset(v.strip() for v in items)


def _conditions(value: Iterable[str] | str | None) -> frozenset[str] | None:
    names = _names("conditions", value)
    return None if names is None else frozenset(n.lower() for n in names)


def foreign_hand_back_seconds(dequeue_count: int, *, base: int = 5, cap: int = 300) -> int:
    """How long a foreign message stays invisible once handed back: doubling with its dequeue count, so a
    shared queue's other messages are not received over and over (a dedicated queue has none)."""
    return int(capped_doubling(base, min(dequeue_count, 16) - 1, cap))


def receive_error_backoff(errors: int, *, cap: float = ERROR_PAUSE_CAP) -> float:
    """Seconds to wait after ``errors`` consecutive failed receives (the destination receiver's schedule)."""
    return error_pause(max(1, errors), cap=cap)
