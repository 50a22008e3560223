"""What is new in an async task since the last read: the one place that turns successive reads into log lines.

The blocking wait loop, the sensor and the trigger feed every :class:`AsyncTask` they read to a
:class:`ProgressTracker`; it answers the lines to log, each status change and each new task event exactly once.
Its state is a small JSON dict (:meth:`to_dict`/:meth:`from_dict`) so the operator can hand it to the trigger
and the trigger back to ``execute_complete``: the task log then tells the whole story once, e.g.::

    Enqueued
    Enqueued -> Dequeued
    Dequeued -> Running
    Running -> Retrying (attempt 2): Function timed out after 3 seconds
    Retrying (attempt 2) -> Failed: Function timed out after 3 seconds
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_fc_async.core.models import FAILED_STATUSES, AsyncTask, TaskStatus

__all__ = ["ProgressTracker", "truncate"]

_MAX_DETAIL = 500


def truncate(text: str, limit: int = 1024) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


@dataclass
class ProgressTracker:
    """Remembers the last status, the highest event id and the retries seen; pure, no I/O."""

    last_status: str | None = None
    last_event_id: int = -1
    retries_seen: int = 0

    def update(self, task: AsyncTask) -> list[str]:
        """The lines that ``task`` adds to what earlier reads already reported."""
        lines: list[str] = []
        for event in sorted(task.events, key=lambda e: e.event_id):
            if event.event_id <= self.last_event_id:
                continue
            self.last_event_id = event.event_id
            if not event.status:
                if event.detail:
                    lines.append(f"event: {_short(event.detail)}")
                continue
            detail = event.detail if event.detail and event.detail != event.status else ""
            if not detail and _failed(event.status):
                detail = task.error_message or ""
            if _same(event.status, self.last_status) and event.status != TaskStatus.RETRYING.value:
                if detail:  # same status, but something worth saying
                    lines.append(f"{event.status}: {_short(detail)}")
                continue
            lines.append(self._transition(event.status, detail, 0))
        status = task.status.value
        if not _same(status, self.last_status):
            detail = (task.error_message or "") if task.status in FAILED_STATUSES else ""
            lines.append(self._transition(status, detail, task.retried_times))
        elif task.retried_times > self.retries_seen:  # a retry happened between two reads
            self.retries_seen = task.retried_times
            lines.append(f"{status} (attempt {self.retries_seen + 1})")
        return lines

    def _transition(self, status: str, detail: str, retried_times: int) -> str:
        last = None if self.last_status is None else self._label(self.last_status)
        if _same(status, TaskStatus.RETRYING.value):
            self.retries_seen = max(self.retries_seen + 1, retried_times)
        elif retried_times > self.retries_seen and not _terminal(status):
            self.retries_seen = retried_times
        label = self._label(status)
        line = label if last is None else f"{last} -> {label}"
        self.last_status = status
        return f"{line}: {_short(detail)}" if detail and detail != label else line

    def _label(self, status: str) -> str:
        # After a retry, an attempt's own states say which attempt they are: FC's second Dequeued -> Running is
        # not the first one again (a log reader, and a check for repeated lines, can tell them apart).
        if self.retries_seen and not _terminal(status):  # Retrying is not terminal
            return f"{status} (attempt {self.retries_seen + 1})"
        return status

    def to_dict(self) -> dict[str, Any]:
        return {
            "last_status": self.last_status,
            "last_event_id": self.last_event_id,
            "retries_seen": self.retries_seen,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> ProgressTracker:
        if not raw:
            return cls()
        return cls(
            last_status=raw.get("last_status"),
            last_event_id=int(raw.get("last_event_id", -1)),
            retries_seen=int(raw.get("retries_seen", 0)),
        )


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.lower() == b.lower()


def _terminal(status: str) -> bool:
    return TaskStatus(status).is_terminal


def _failed(status: str) -> bool:
    return TaskStatus(status) in FAILED_STATUSES


def _short(text: str) -> str:
    return truncate(" ".join(text.split()), _MAX_DETAIL)
