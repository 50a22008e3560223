"""The in-memory record of one async task, serialised exactly as GetAsyncTask returns it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_fc_async.core.models import TERMINAL_STATUSES, TaskStatus
from airflow_fc_async.emulator.runtime import Attempt
from airflow_fc_async.emulator.wire import now_ms

__all__ = ["Task", "destination_record"]


@dataclass(eq=False)
class Task:
    """One async invocation; mutated only under the scheduler's lock."""

    task_id: str
    function: str
    function_arn: str
    qualifier: str
    request_id: str
    payload: bytes
    created_ms: int
    visible: bool
    """False when the function has no ``asyncTask: true`` config: FC keeps no queryable record then."""
    status: TaskStatus = TaskStatus.ENQUEUED
    events: list[dict[str, Any]] = field(default_factory=list)
    end_ms: int = 0
    duration_ms: int = 0
    retried: int = 0
    invocations: int = 0
    return_payload: str = ""
    error_message: str = ""
    destination_status: str = ""
    instance_id: str = ""
    attempt: Attempt | None = None
    stop_requested: bool = False
    on_status: Callable[[Task, TaskStatus], None] | None = None
    """Called with the old status after each change (the scheduler's list index)."""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def event(self, status: TaskStatus, detail: str) -> None:
        """Record a transition (the status changes too unless it is only a detail, e.g. a delivery)."""
        old, self.status = self.status, status
        if old is not status and self.on_status is not None:
            self.on_status(self, old)
        self.events.append(
            {
                "eventId": len(self.events) + 1,
                "eventDetail": detail,
                "status": status.value,
                "timestamp": now_ms(),
            }
        )

    def to_json(self, include_payload: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "taskId": self.task_id,
            "status": self.status.value,
            "qualifier": self.qualifier,
            "functionArn": self.function_arn,
            "requestId": self.request_id,
            "instanceId": self.instance_id,
            "startedTime": self.created_ms,
            "endTime": self.end_ms or None,
            "durationMs": self.duration_ms,
            "alreadyRetriedTimes": self.retried,
            "taskErrorMessage": self.error_message,
            "returnPayload": self.return_payload,
            "destinationStatus": self.destination_status,
            "events": list(self.events),
        }
        if include_payload:
            out["taskPayload"] = self.payload.decode("utf-8", "replace")
        return out


def destination_record(task: Task, *, success: bool, condition: str, response_payload: str) -> dict[str, Any]:
    """The record FC sends to onSuccess/onFailure (the seed's format)."""
    return {
        "timestamp": now_ms(),
        "requestContext": {
            "requestId": task.request_id,
            "functionArn": task.function_arn,
            "condition": "" if success else condition,
            "approximateInvokeCount": task.invocations,
        },
        "requestPayload": task.payload.decode("utf-8", "replace"),
        "responseContext": {"statusCode": 200, "functionError": "" if success else condition},
        "responsePayload": response_payload,
    }
