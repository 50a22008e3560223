"""The outcome of following one FC async task: what an operator or a sensor hands to XCom or raises.

Public: the invoke, re-run and stop operators and both sensors build their results, failure messages and
exceptions here, so that a new XCom field or a new wording is written once. No I/O: every function takes the
values it reports on. The typed trigger event (:class:`TaskEvent`) is the one reader of the dict
``FcAsyncTaskTrigger`` yields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_fc_async.core.errors import (
    FcAuthError,
    FcConflictError,
    FcError,
    FcInvalidArgumentError,
    FcNotFoundError,
    FcValidationError,
)

if TYPE_CHECKING:
    from airflow_fc_async.core.models import AsyncTask

__all__ = [
    "MAX_RESULT_BYTES",
    "STATE_KEY",
    "TaskEvent",
    "TaskRef",
    "airflow_error",
    "failure_message",
    "fit_destination_record",
    "log_success",
    "short_payload",
    "task_result",
]

MAX_RESULT_BYTES = 48 * 1024
"""Above this the XCom result drops ``return_payload`` (MySQL's XCom column holds 64 KB; large XComs hurt)."""

STATE_KEY = "fc_async_task"
"""Key of the task state store (Airflow 3.3+) holding the FC task of the current task instance."""

_RETURN_LOG_CHARS = 200  # the return payload's line in the task log: a glimpse, XCom has it whole


@dataclass(frozen=True)
class TaskRef:
    """The FC task an operator follows (stored in the task state store as :meth:`to_dict`)."""

    function_name: str
    qualifier: str
    task_id: str
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any], *, task_id_key: str = "task_id") -> TaskRef:
        """The ref a :meth:`to_dict` (or a trigger event, ``task_id_key="async_task_id"``) names; a missing
        qualifier is ``LATEST``."""
        return cls(
            function_name=value["function_name"],
            qualifier=value.get("qualifier") or "LATEST",
            task_id=value[task_id_key],
            request_id=value.get("request_id"),
        )


@dataclass(frozen=True)
class TaskEvent:
    """The event of ``FcAsyncTaskTrigger``, read once: ``status`` is success, failure, timeout or error.

    ``raw`` keeps the dict as the trigger wrote it (its ``message`` is quoted as written, absent or not).
    """

    status: str
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_dict(cls, event: Any, *, needs_task: bool = True) -> TaskEvent:
        """The typed event; ``AirflowException`` for anything else (``needs_task``: it must name the task)."""
        if (
            not isinstance(event, dict)
            or "status" not in event
            or (needs_task and "async_task_id" not in event)
        ):
            raise AirflowException(f"Unexpected trigger event: {event!r}")
        return cls(status=event["status"], raw=event)

    @property
    def ref(self) -> TaskRef:
        return TaskRef.from_dict(self.raw, task_id_key="async_task_id")

    @property
    def task(self) -> AsyncTask:
        """The ended task a failure event carries (its full JSON)."""
        from airflow_fc_async.core.models import AsyncTask

        return AsyncTask.from_json(self.raw["task"])

    @property
    def destination(self) -> Any:
        """What the trigger found of the destination record (``claim`` or ``reason``), None without a queue."""
        return self.raw.get("destination")

    @property
    def retryable(self) -> bool | None:
        return self.raw.get("retryable")

    def message(self, default: Any = None) -> Any:
        return self.raw.get("message", default)


def airflow_error(err: FcError, doing: str) -> AirflowException:
    """The Airflow exception for an FC error: no retry where a retry cannot help."""
    msg = f"{doing} failed: {err}"
    if isinstance(
        err, FcValidationError | FcNotFoundError | FcInvalidArgumentError | FcAuthError | FcConflictError
    ):
        return AirflowFailException(msg)
    return AirflowException(msg)


def task_result(task: AsyncTask, destination_record: dict[str, Any] | None = None) -> dict[str, Any]:
    """The XCom return value, at most ``MAX_RESULT_BYTES`` of JSON as a whole: past it ``return_payload`` is
    dropped (``return_payload_truncated``), then the record's ``responsePayload`` / ``requestPayload``
    (``destination_record.<key>_truncated``); ``return_payload`` parsed when it is JSON."""
    from airflow_fc_async.core.destinations import fit_record
    from airflow_fc_async.core.models import decode_payload

    result: dict[str, Any] = {
        "task_id": task.task_id,
        "request_id": task.request_id,
        "status": task.status.value,
        "return_payload": decode_payload(task.return_payload),
        "destination_record": destination_record,
    }
    if _size(result) > MAX_RESULT_BYTES:
        result["return_payload"] = None
        result["return_payload_truncated"] = True
    if destination_record is not None and _size(result) > MAX_RESULT_BYTES:
        budget = MAX_RESULT_BYTES - (_size(result) - _size(destination_record))
        result["destination_record"], _ = fit_record(destination_record, budget)
    return result


def fit_destination_record(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A record alone within the XCom bound (its own ``destination_record`` XCom and the task state store)."""
    from airflow_fc_async.core.destinations import fit_record

    return fit_record(record, MAX_RESULT_BYTES - 1024)


def _size(value: Any) -> int:
    return len(json.dumps(value, default=str))


def short_payload(payload: str) -> str:
    """The return payload on one short line (whitespace folded, cut to ``_RETURN_LOG_CHARS``)."""
    from airflow_fc_async.core.progress import truncate

    return truncate(" ".join(payload.split()), _RETURN_LOG_CHARS)


def failure_message(
    ref: TaskRef, task: AsyncTask, console_url: str, destination_record: dict[str, Any] | None = None
) -> str:
    """The one message of a task that ended without success (quoting its destination record when one came)."""
    message = (
        f"FC async task {task.task_id} of function {ref.function_name} (qualifier {ref.qualifier}, "
        f"request id {task.request_id or ref.request_id or 'unknown'}) ended {task.status.value}: "
        f"{task.error_message or 'no error message'}. Console: {console_url}"
    )
    if destination_record is not None:
        from airflow_fc_async.core.destinations import format_failure_message
        from airflow_fc_async.core.models import DestinationRecord

        message += " Destination record: " + format_failure_message(
            DestinationRecord.from_json(destination_record)
        )
    return message


def log_success(log: Any, task: AsyncTask, result: dict[str, Any]) -> None:
    """The task log's lines of a succeeded task: what :func:`task_result` left out, the end, the returned value."""
    if result.get("return_payload_truncated"):
        log.warning(
            "The return payload of FC task %s is larger than %d bytes: left out of XCom",
            task.task_id,
            MAX_RESULT_BYTES,
        )
    cut = [
        k
        for k in ("responsePayload", "requestPayload")
        if (result["destination_record"] or {}).get(f"{k}_truncated")
    ]
    if cut:
        log.warning(
            "The XCom result of FC task %s would exceed %d bytes: %s of its destination record left out",
            task.task_id,
            MAX_RESULT_BYTES,
            " and ".join(cut),
        )
    log.info("FC task %s succeeded (request id %s)", task.task_id, task.request_id)
    if task.return_payload:
        log.info("FC task %s returned: %s", task.task_id, short_payload(task.return_payload))
