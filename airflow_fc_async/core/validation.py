"""Checks made before any request leaves the process.

A bad name, a payload that is too large or a filter that cannot match costs a round trip and, worse, an error
message from the server that does not say which argument was wrong. Each check here raises
:class:`FcValidationError` naming the field and the rule.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from airflow_fc_async.core.errors import FcValidationError
from airflow_fc_async.core.models import AsyncInvokeConfig, TaskStatus

__all__ = [
    "KNOWN_STATUSES",
    "MAX_ASYNC_PAYLOAD",
    "MAX_MNS_MESSAGE",
    "check_async_invoke_config",
    "check_delay",
    "check_destination_arn",
    "check_function_name",
    "check_int_range",
    "check_message_body",
    "check_page_limit",
    "check_qualifier",
    "check_queue_name",
    "check_rerun_payload",
    "check_statuses",
    "check_task_id",
    "check_time_range",
    "encode_payload",
    "new_task_id",
]

MAX_ASYNC_PAYLOAD = 128 * 1024
MAX_MNS_MESSAGE = 64 * 1024
KNOWN_STATUSES: dict[str, TaskStatus] = {
    s.value.lower(): s for s in TaskStatus if s is not TaskStatus.UNKNOWN
}


class _NameRule:
    """A name rule: the pattern a name matches whole, and what the error says it is not."""

    def __init__(self, pattern: str, what: str) -> None:
        self.pattern = re.compile(pattern)
        self.what = what

    def check(self, field: str, value: object) -> str:
        text = _require_str(field, value)
        if not self.pattern.fullmatch(text):
            raise FcValidationError(field, f"{text!r} is not {self.what}")
        return text


_FUNCTION_NAME = _NameRule(
    r"[A-Za-z_][A-Za-z0-9_-]{0,63}",
    "a valid function name (letters, digits, _ and -; first a letter or _; 1-64 chars)",
)
_TASK_ID = _NameRule(
    r"[A-Za-z_][A-Za-z0-9_-]{0,127}",
    "a valid async task id (a letter or _ first, then [A-Za-z0-9_-], <= 128 chars)",
)
_QUEUE = _NameRule(r"[A-Za-z0-9-]{1,120}", "a valid queue name (letters, digits and -, 1-120 chars)")
_ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,127}")
# XML 1.0 forbids most control characters: such a body cannot travel raw in an MNS request.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DESTINATION_ARNS = (
    re.compile(r"acs:mns:[\w-]*:\w*:/queues/[A-Za-z0-9-]{1,120}/messages"),
    re.compile(r"acs:mns:[\w-]*:\w*:/topics/[A-Za-z0-9-]{1,255}/messages"),
    re.compile(r"acs:fc:[\w-]*:\w*:functions/[A-Za-z_][A-Za-z0-9_-]{0,63}"),
    re.compile(r"acs:eventbridge:[\w-]*:\w*:eventbus/[\w.-]+(/.*)?"),
    re.compile(r"acs:(mq|rocketmq):[\w-]*:\w*:/?instances/[\w.-]+(/.*)?"),
)


def _require_str(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise FcValidationError(field, f"must be a string, got {type(value).__name__}")
    return value


def check_function_name(name: object, field: str = "function_name") -> str:
    """FC rule: letters, digits, ``_`` and ``-``; starts with a letter or ``_``; 1-64 characters."""
    return _FUNCTION_NAME.check(field, name)


def check_qualifier(qualifier: object, field: str = "qualifier") -> str:
    """``LATEST``, a version number, or an alias name (a letter first, then ``[A-Za-z0-9_-]``, at most 128)."""
    qualifier = _require_str(field, qualifier)
    if qualifier == "LATEST" or qualifier.isdigit() or _ALIAS.fullmatch(qualifier):
        return qualifier
    raise FcValidationError(field, f"{qualifier!r} is not LATEST, a version number or an alias name")


def check_task_id(task_id: object, field: str = "task_id") -> str:
    """FC rule: a letter or ``_`` first, then ``[A-Za-z0-9_-]``, at most 128 characters."""
    return _TASK_ID.check(field, task_id)


def new_task_id() -> str:
    """A fresh task id: generated on the client so that a retried invoke can never run the function twice."""
    return f"task-{uuid.uuid4().hex}"


def check_rerun_payload(task_id: str, payload: str | None) -> bytes:
    """The bytes to re-send for a task whose recorded payload is ``payload``, refused when they cannot be its own.

    FC records a payload as text: bytes that were not UTF-8 come back as U+FFFD, so the original is lost and a
    re-run would silently send other bytes.
    """
    text = payload or ""
    if "\ufffd" in text:
        at = text.index("\ufffd")
        raise FcValidationError(
            "taskPayload",
            f"the recorded payload of task {task_id!r} holds U+FFFD at character {at}: FC records payloads as "
            "text, and bytes that were not UTF-8 come back replaced, so the original payload cannot be re-sent. "
            "Invoke again with the original bytes (or send binary data base64-encoded, as text)",
        )
    return text.encode("utf-8")


def encode_payload(payload: Any, *, field: str = "payload", limit: int = MAX_ASYNC_PAYLOAD) -> bytes:
    """The bytes to send: dict/list as compact JSON, str as UTF-8, bytes as they are, None as empty."""
    if payload is None:
        data = b""
    elif isinstance(payload, bytes | bytearray | memoryview):
        data = bytes(payload)
    elif isinstance(payload, str):
        data = payload.encode("utf-8")
    elif isinstance(payload, dict | list | tuple):
        try:
            data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
                "utf-8"
            )
        except (TypeError, ValueError) as exc:
            raise FcValidationError(field, f"is not JSON serialisable: {exc}") from None
    else:
        raise FcValidationError(
            field, f"must be a dict, list, str, bytes or None, got {type(payload).__name__}"
        )
    if len(data) > limit:
        raise FcValidationError(
            field, f"is {len(data)} bytes, over the {limit} byte ({limit // 1024} KB) limit"
        )
    return data


def check_int_range(field: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FcValidationError(field, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise FcValidationError(field, f"must be between {low} and {high}, got {value}")
    return value


def check_delay(delay_seconds: Any, field: str = "delay_seconds") -> int:
    """The ``x-fc-async-delay`` of an async invoke: 0-3600 seconds."""
    return check_int_range(field, delay_seconds, 0, 3600)


def check_page_limit(limit: Any, field: str = "page_size") -> int:
    return check_int_range(field, limit, 1, 100)


def check_statuses(status: Any, field: str = "status") -> list[TaskStatus]:
    """One status or several (names or :class:`TaskStatus`); each must be a status FC documents."""
    items: Iterable[Any] = [status] if isinstance(status, str | TaskStatus) else status
    try:
        values = list(items)
    except TypeError:
        raise FcValidationError(
            field, f"must be a status name or an iterable of them, got {status!r}"
        ) from None
    if not values:
        raise FcValidationError(field, "is empty: give at least one status, or None for all")
    out: list[TaskStatus] = []
    for value in values:
        key = value.value if isinstance(value, TaskStatus) else value
        found = KNOWN_STATUSES.get(key.lower()) if isinstance(key, str) else None
        if found is None:
            known = ", ".join(s.value for s in KNOWN_STATUSES.values())
            raise FcValidationError(field, f"{value!r} is not a known status ({known})")
        if found not in out:
            out.append(found)
    return out


def check_time_range(started_after: datetime | None, started_before: datetime | None) -> None:
    for name, value in (("started_after", started_after), ("started_before", started_before)):
        if value is not None and not isinstance(value, datetime):
            raise FcValidationError(name, f"must be a datetime, got {type(value).__name__}")
    if started_after is not None and started_before is not None:
        a, b = started_after, started_before
        if (a.tzinfo is None) != (b.tzinfo is None):
            raise FcValidationError("started_before", "compare aware with aware datetimes (one is naive)")
        if not a < b:
            raise FcValidationError("started_before", f"must be after started_after ({a.isoformat()})")


def check_queue_name(name: object, field: str = "queue") -> str:
    """MNS rule: letters, digits and ``-``, at most 120 characters."""
    return _QUEUE.check(field, name)


def check_message_body(body: object, field: str = "body") -> str:
    """An MNS message body: a string of at most 64 KB (UTF-8) that XML can carry."""
    body = _require_str(field, body)
    size = len(body.encode("utf-8", "surrogatepass"))
    if size > MAX_MNS_MESSAGE:
        raise FcValidationError(field, f"is {size} bytes, over the {MAX_MNS_MESSAGE} byte (64 KB) limit")
    bad = _XML_INVALID.search(body)
    if bad:
        raise FcValidationError(
            field, f"holds the character {bad.group()!r} that XML cannot carry: base64-encode the body first"
        )
    return body


def check_destination_arn(arn: object, field: str) -> str:
    """An onSuccess/onFailure destination: an MNS queue or topic, a function, EventBridge or RocketMQ ARN."""
    arn = _require_str(field, arn)
    if not any(p.fullmatch(arn) for p in _DESTINATION_ARNS):
        raise FcValidationError(
            field,
            f"{arn!r} is not a destination ARN (e.g. acs:mns:<region>:<account>:/queues/<queue>/messages "
            "or acs:fc:<region>:<account>:functions/<name>)",
        )
    return arn


def check_async_invoke_config(config: AsyncInvokeConfig) -> AsyncInvokeConfig:
    """Ranges FC documents: retries 0-8, event age 1-2592000 s; destinations must be ARNs."""
    if config.async_task is not None and not isinstance(config.async_task, bool):
        raise FcValidationError("async_task", f"must be a bool, got {config.async_task!r}")
    if config.max_async_retry_attempts is not None:
        check_int_range("max_async_retry_attempts", config.max_async_retry_attempts, 0, 8)
    if config.max_async_event_age_in_seconds is not None:
        check_int_range("max_async_event_age_in_seconds", config.max_async_event_age_in_seconds, 1, 2_592_000)
    if config.on_success is not None:
        check_destination_arn(config.on_success, "on_success")
    if config.on_failure is not None:
        check_destination_arn(config.on_failure, "on_failure")
    return config
