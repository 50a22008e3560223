"""One invocation of an async task on an instance, and what its end does to the task: expiry
(``maxAsyncEventAgeInSeconds``), success, a retry (``maxAsyncRetryAttempts``) or failure, a stop, and the
destination record (``onSuccess`` / ``onFailure``).

The attempt itself runs outside the scheduler's lock, in its own process (``runtime.py``); every change to the
task happens under that lock, which :class:`Invoker` shares with the :class:`~.scheduler.Scheduler`.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.emulator.config import AsyncInvokeConfigSpec, FunctionSpec
from airflow_fc_async.emulator.invocation_logs import InvocationLogs
from airflow_fc_async.emulator.runtime import Attempt, AttemptResult, Runtime
from airflow_fc_async.emulator.settings import Settings
from airflow_fc_async.emulator.tasks import Task, destination_record
from airflow_fc_async.emulator.wire import now_ms

__all__ = ["Deliver", "Invoker"]

Deliver = Callable[[str, str], str | None]
"""``deliver(destination_arn, body) -> None`` on success or an error text."""


@dataclass(eq=False)
class Invoker:
    """Runs attempts and applies their outcome to the task, under ``lock`` (the scheduler's).

    ``config_of(task)`` is the async invoke config that governs a task (its qualifier's, else LATEST's);
    ``closed()`` is true once the emulator shuts down (a failed attempt is not retried then).
    """

    settings: Settings
    runtime: Runtime
    deliver: Deliver
    lock: threading.RLock = field(kw_only=True)
    logs: InvocationLogs = field(kw_only=True)
    config_of: Callable[[Task], AsyncInvokeConfigSpec] = field(kw_only=True)
    closed: Callable[[], bool] = field(kw_only=True)
    executions: Counter[str] = field(default_factory=Counter, init=False)
    """Attempts started per task id (the admin API's stats)."""

    def context(self, spec: FunctionSpec, request_id: str, instance: str, retry: int) -> dict[str, Any]:
        """What the runtime hands the handler: the function, its environment and the invocation's ids."""
        return {
            "function_name": spec.name,
            "handler": spec.handler,
            "runtime": spec.runtime,
            "memory_size": spec.memory_size,
            "timeout": spec.timeout,
            "code_dir": str(spec.code_dir),
            "environment": {
                **spec.environment,
                "FC_FUNCTION_NAME": spec.name,
                "FC_FUNCTION_HANDLER": spec.handler,
                "FC_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
                "FC_REGION": self.settings.region,
                "FC_ACCOUNT_ID": self.settings.account_id,
                "FC_INSTANCE_ID": instance,
                "FC_EMULATOR": "1",
            },
            "request_id": request_id,
            "region": self.settings.region,
            "account_id": self.settings.account_id,
            "instance_id": instance,
            "retry_count": retry,
        }

    def invoke_sync(self, spec: FunctionSpec, payload: bytes, request_id: str) -> AttemptResult:
        """A synchronous InvokeFunction: one attempt, no task."""
        result = self.runtime.run(self.context(spec, request_id, "sync", 0), payload, spec.timeout)
        self.logs.record(request_id, result.logs)
        return result

    def run(self, spec: FunctionSpec, task: Task, instance: str) -> bool:
        """Run the task's next attempt on ``instance`` (unless it expired or was stopped meanwhile) and apply
        its outcome. True when the task is to be queued again for a retry."""
        config = self.config_of(task)
        with self.lock:
            if task.terminal or task.stop_requested:
                return False
            if now_ms() - task.created_ms > config.max_async_event_age_in_seconds * 1000:
                task.end_ms = now_ms()
                task.error_message = f"the event is older than maxAsyncEventAgeInSeconds ({config.max_async_event_age_in_seconds})"
                task.event(TaskStatus.EXPIRED, "Expired: " + task.error_message)
                # GUESS: the condition of an expired event (undocumented)
                self._destination(task, config, success=False, condition="EventExpired", response="")
                return False
            task.event(TaskStatus.DEQUEUED, f"Dequeued (attempt {task.invocations + 1})")
            task.attempt = Attempt()
            task.instance_id = instance
            task.invocations += 1
            self.executions[task.task_id] += 1
            task.event(TaskStatus.RUNNING, f"Function invoked on instance {instance}")
            attempt = task.attempt
        shipping = self.logs.ship_start(spec, task.request_id, instance)
        result = self.runtime.run(
            self.context(spec, task.request_id, instance, task.retried), task.payload, spec.timeout, attempt
        )
        self.logs.ship_end(task.request_id, shipping, result)
        self.logs.record(task.request_id, result.logs)
        with self.lock:
            task.attempt = None
            task.duration_ms = result.duration_ms
            if result.kind == "killed" or task.stop_requested:
                self.stopped(task)
                return False
            if result.ok:
                task.end_ms = now_ms()
                task.return_payload = result.payload.decode("utf-8", "replace")
                task.error_message = ""
                task.event(TaskStatus.SUCCEEDED, "Function succeeded")
                self._destination(task, config, success=True, condition="", response=task.return_payload)
                return False
            return self._failed(task, config, result)

    def _failed(self, task: Task, config: AsyncInvokeConfigSpec, result: AttemptResult) -> bool:
        """A failed attempt (under the lock): Retrying while attempts are left, else Failed and onFailure."""
        task.return_payload = result.error_payload().decode("utf-8")
        message = result.error.get("errorMessage", "")
        # taskErrorMessage "UnhandledInvocationError" for a raised exception: the value of the API
        # reference's example (AsyncTask.taskErrorMessage; FC 2.0 StatefulAsyncInvocation
        # .invocationErrorMessage, https://www.alibabacloud.com/help/en/functioncompute/api-fc-open-2021-04-06-struct-statefulasyncinvocation)
        # and FC's x-fc-error-type for an unhandled error. GUESS: the timeout/crash message itself.
        task.error_message = message if result.kind in ("timeout", "crash") else "UnhandledInvocationError"
        if task.retried < config.max_async_retry_attempts and not self.closed():
            task.retried += 1
            task.event(TaskStatus.RETRYING, f"Attempt {task.invocations} failed: {message}; retrying")
            return True
        task.end_ms = now_ms()
        task.event(TaskStatus.FAILED, f"Attempt {task.invocations} failed: {message}")
        body = (
            json.dumps({"errorMessage": message}, separators=(",", ":"))
            if result.kind == "timeout"
            else task.return_payload
        )
        # condition/functionError "InvocationError": the documented sample record (a timed-out
        # task, https://help.aliyun.com/en/functioncompute/fc/use-cases/best-practices-for-asynchronous-tasks);
        # GUESS: the same value for a raised exception (no list of conditions is documented).
        self._destination(task, config, success=False, condition="InvocationError", response=body)
        return False

    def stopped(self, task: Task) -> None:
        """End a task Stopped (under the lock): its attempt was killed, or it was not running."""
        task.end_ms = now_ms()
        task.error_message = task.error_message or "the task was stopped"
        task.event(TaskStatus.STOPPED, "Stopped")
        # GUESS: a stopped task goes to onFailure (FC 2.0 evidence) with this condition (undocumented)
        self._destination(task, self.config_of(task), success=False, condition="TaskStopped", response="")

    def _destination(
        self, task: Task, config: AsyncInvokeConfigSpec, *, success: bool, condition: str, response: str
    ) -> None:
        arn = config.on_success if success else config.on_failure
        if not arn:
            return
        record = destination_record(task, success=success, condition=condition, response_payload=response)
        body = json.dumps(record, separators=(",", ":"))
        if self.settings.base64_destinations:
            body = base64.b64encode(body.encode("utf-8")).decode("ascii")
        error = self.deliver(arn, body)
        task.destination_status = "Failed" if error else "Succeeded"
        detail = f"Destination {'onSuccess' if success else 'onFailure'} {arn}: " + (error or "delivered")
        status = task.status
        task.event(status, detail)  # GUESS: a second event with the task's status records the delivery
