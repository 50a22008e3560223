"""Values of the FC async-task API: statuses, tasks, invocations, configs, destination records.

Parsers accept the FC 3.0 names and the FC 2.0 names older documents show, and tolerate missing optional fields.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

__all__ = [
    "FAILED_STATUSES",
    "TERMINAL_STATUSES",
    "AsyncInvocation",
    "AsyncInvokeConfig",
    "AsyncTask",
    "DestinationRecord",
    "TaskEvent",
    "TaskStatus",
    "decode_payload",
    "from_epoch_ms",
    "to_epoch_ms",
]

log = logging.getLogger(__name__)


class TaskStatus(str, Enum):
    """The status of an async task. A value FC adds later becomes a non-terminal UNKNOWN keeping its string."""

    ENQUEUED = "Enqueued"
    DEQUEUED = "Dequeued"
    RUNNING = "Running"
    RETRYING = "Retrying"
    STOPPING = "Stopping"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    UNKNOWN = "Unknown"

    @classmethod
    def _missing_(cls, value: object) -> TaskStatus | None:
        if not isinstance(value, str):
            return None
        for member in cls:  # FC is consistent in case, but a proxy or a person may not be
            if member.value.lower() == value.lower():
                return member
        if value not in _SEEN_UNKNOWN:
            _SEEN_UNKNOWN.add(value)
            log.warning("FC returned an unknown async task status %r: treated as not terminal", value)
        pseudo = str.__new__(cls, value)
        pseudo._name_ = "UNKNOWN"
        pseudo._value_ = value
        return pseudo

    @property
    def is_unknown(self) -> bool:
        return self.name == "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_successful(self) -> bool:
        return self is TaskStatus.SUCCEEDED

    def __str__(self) -> str:
        return str(self.value)


_SEEN_UNKNOWN: set[str] = set()

TERMINAL_STATUSES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.STOPPED, TaskStatus.EXPIRED, TaskStatus.INVALID}
)
FAILED_STATUSES = TERMINAL_STATUSES - {TaskStatus.SUCCEEDED}


def from_epoch_ms(value: Any) -> datetime | None:
    """An aware UTC datetime from epoch milliseconds (or an ISO 8601 string); None for 0, '' and None."""
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        try:
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
        except (OverflowError, OSError) as exc:  # beyond the platform's time_t: as malformed as any other
            raise ValueError(f"not a timestamp: {value!r} ({exc})") from None
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a timestamp: {value!r}")


def to_epoch_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def decode_payload(value: Any) -> Any:
    """A payload string parsed as JSON when it is JSON; otherwise returned as it is ('' stays '')."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, str) and value.strip():
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    return int(value)


@dataclass(frozen=True)
class TaskEvent:
    """One entry of a task's ``events``: a transition FC recorded."""

    event_id: int
    status: str
    detail: str
    timestamp: datetime | None

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TaskEvent:
        return cls(
            event_id=int(raw.get("eventId", 0) or 0),
            status=str(raw.get("status", "") or ""),
            detail=str(raw.get("eventDetail", "") or ""),
            timestamp=from_epoch_ms(raw.get("timestamp")),
        )


@dataclass(frozen=True)
class AsyncTask:
    """One async task as GetAsyncTask or ListAsyncTasks returned it; ``raw`` is the JSON as received."""

    task_id: str
    status: TaskStatus
    request_id: str | None = None
    function_arn: str | None = None
    qualifier: str | None = None
    instance_id: str | None = None
    started_time: datetime | None = None
    end_time: datetime | None = None
    duration_ms: int | None = None
    retried_times: int = 0
    payload: str | None = None
    error_message: str | None = None
    return_payload: str | None = None
    destination_status: str | None = None
    events: tuple[TaskEvent, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_successful(self) -> bool:
        return self.status.is_successful

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AsyncTask:
        task_id = raw.get("taskId") or raw.get("TaskId")
        status = raw.get("status") or raw.get("Status")
        if not task_id or not status:
            raise ValueError(f"an async task needs taskId and status, got keys {sorted(raw)}")
        return cls(
            task_id=str(task_id),
            status=TaskStatus(str(status)),
            request_id=raw.get("requestId"),
            function_arn=raw.get("functionArn"),
            qualifier=raw.get("qualifier"),
            instance_id=raw.get("instanceId"),
            started_time=from_epoch_ms(raw.get("startedTime")),
            end_time=from_epoch_ms(raw.get("endTime")),
            duration_ms=_int(raw.get("durationMs")),
            retried_times=_int(raw.get("alreadyRetriedTimes")) or 0,
            payload=_first(raw, "taskPayload", "invocationPayload"),
            error_message=_first(raw, "taskErrorMessage", "invocationErrorMessage") or None,
            return_payload=_first(raw, "returnPayload"),
            destination_status=raw.get("destinationStatus") or None,
            events=tuple(TaskEvent.from_json(e) for e in raw.get("events") or () if isinstance(e, Mapping)),
            raw=dict(raw),
        )

    def summary(self, *, include_payload: bool = False) -> dict[str, Any]:
        """A small JSON-able dict (for XCom and logs)."""
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "status": self.status.value,
            "request_id": self.request_id,
            "started_time": self.started_time.isoformat() if self.started_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "duration_ms": self.duration_ms,
            "retried_times": self.retried_times,
            "error_message": self.error_message,
        }
        if include_payload:
            out["payload"] = self.payload
        return out


def _first(raw: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if raw.get(name) is not None:
            return raw[name]
    return None


@dataclass(frozen=True)
class AsyncInvocation:
    """What an async InvokeFunction returned: the task id and the request id (``x-fc-request-id``).

    ``existing`` is set when FC answered 409 (the id was taken) and the task read back holds this very payload:
    ``conflict`` then says whose it was, ``"retry"`` (an earlier attempt of this same call reached FC) or
    ``"same-id"`` (the id was used before this call, with the same payload: an idempotency key's repeat).
    """

    task_id: str
    request_id: str | None
    existing: AsyncTask | None = None
    conflict: str | None = None


@dataclass(frozen=True)
class AsyncInvokeConfig:
    """PutAsyncInvokeConfig's body and GetAsyncInvokeConfig's reply."""

    async_task: bool | None = None
    max_async_retry_attempts: int | None = None
    max_async_event_age_in_seconds: int | None = None
    on_success: str | None = None
    on_failure: str | None = None
    function_arn: str | None = None
    created_time: str | None = None
    last_modified_time: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AsyncInvokeConfig:
        dest = raw.get("destinationConfig") or {}
        return cls(
            async_task=raw.get("asyncTask"),
            max_async_retry_attempts=_int(raw.get("maxAsyncRetryAttempts")),
            max_async_event_age_in_seconds=_int(raw.get("maxAsyncEventAgeInSeconds")),
            on_success=((dest.get("onSuccess") or {}).get("destination")) or None,
            on_failure=((dest.get("onFailure") or {}).get("destination")) or None,
            function_arn=raw.get("functionArn"),
            created_time=raw.get("createdTime"),
            last_modified_time=raw.get("lastModifiedTime"),
            raw=dict(raw),
        )

    def to_json(self) -> dict[str, Any]:
        """The request body: only the fields that are set."""
        body: dict[str, Any] = {}
        if self.async_task is not None:
            body["asyncTask"] = self.async_task
        if self.max_async_retry_attempts is not None:
            body["maxAsyncRetryAttempts"] = self.max_async_retry_attempts
        if self.max_async_event_age_in_seconds is not None:
            body["maxAsyncEventAgeInSeconds"] = self.max_async_event_age_in_seconds
        dest: dict[str, Any] = {}
        if self.on_success:
            dest["onSuccess"] = {"destination": self.on_success}
        if self.on_failure:
            dest["onFailure"] = {"destination": self.on_failure}
        if dest:
            body["destinationConfig"] = dest
        return body

    def settings(self) -> dict[str, Any]:
        """The settable fields, for comparing a wanted config with the current one."""
        return {
            "async_task": self.async_task,
            "max_async_retry_attempts": self.max_async_retry_attempts,
            "max_async_event_age_in_seconds": self.max_async_event_age_in_seconds,
            "on_success": self.on_success,
            "on_failure": self.on_failure,
        }


@dataclass(frozen=True)
class DestinationRecord:
    """The record FC sends to an onSuccess/onFailure destination; ``request_id`` ties it to a task."""

    request_id: str
    function_arn: str | None
    condition: str
    approximate_invoke_count: int
    timestamp: datetime | None
    request_payload: Any
    status_code: int | None
    function_error: str | None
    response_payload: Any
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def function_name(self) -> str | None:
        """The function's name from either ARN shape (3.0 ``functions/fn``, 2.0 ``services/s.q/functions/fn``)."""
        if not self.function_arn or "functions/" not in self.function_arn:
            return None
        return self.function_arn.rsplit("functions/", 1)[1]

    @property
    def succeeded(self) -> bool:
        return not self.condition and not self.function_error

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DestinationRecord:
        ctx = raw.get("requestContext")
        if not isinstance(ctx, Mapping) or not ctx.get("requestId"):
            raise ValueError("not a destination record: requestContext.requestId is missing")
        resp = raw.get("responseContext") or {}
        return cls(
            request_id=str(ctx["requestId"]),
            function_arn=ctx.get("functionArn"),
            condition=str(ctx.get("condition") or ""),
            approximate_invoke_count=_int(ctx.get("approximateInvokeCount")) or 0,
            timestamp=from_epoch_ms(raw.get("timestamp")),
            request_payload=decode_payload(raw.get("requestPayload")),
            status_code=_int(resp.get("statusCode")),
            function_error=resp.get("functionError") or None,
            response_payload=decode_payload(raw.get("responsePayload")),
            raw=dict(raw),
        )

    @classmethod
    def from_body(cls, body: str | bytes) -> DestinationRecord | None:
        """Parse an MNS message body (raw JSON or base64 JSON); None when it is not a destination record."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        text = text.strip()
        if not text.startswith("{"):
            try:
                text = base64.b64decode(text, validate=True).decode("utf-8").strip()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return None
        try:
            raw = json.loads(text)
            return cls.from_json(raw) if isinstance(raw, Mapping) else None
        except ValueError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict for XCom: the record's own shape, payload strings decoded."""
        return {
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "requestContext": {
                "requestId": self.request_id,
                "functionArn": self.function_arn,
                "condition": self.condition,
                "approximateInvokeCount": self.approximate_invoke_count,
            },
            "requestPayload": self.request_payload,
            "responseContext": {"statusCode": self.status_code, "functionError": self.function_error},
            "responsePayload": self.response_payload,
        }
