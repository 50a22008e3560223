"""FcAsyncTaskTrigger: follows one FC async task in the triggerer and fires exactly one event.

Event payloads (``status``):

- ``success``: the task Succeeded (the operator reads it once more for its return payload);
- ``failure``: it ended Failed, Stopped, Expired or Invalid (``task`` holds its JSON without payloads);
- ``timeout``: ``timeout_at`` passed first (the operator stops the task);
- ``error``: a permanent API error (404, 403, ...), ``retryable`` False.

Every event carries ``lines`` (the progress lines seen here, for the task log) and ``progress`` (the tracker
state). Transient errors (throttling, 5xx, connection) are logged and retried within the deadline.

After its first read the trigger joins its loop's shared status poller
(:mod:`~airflow_fc_async.core.status_poller`): with 2 or more tasks of the same function watched, one
ListAsyncTasks scan per tick serves them all and the trigger reads its own task only when no scan showed it
within its WaitPolicy gap.

With ``logs`` (a :class:`~airflow_fc_async.core.function_logs.LogCursor` state, from ``stream_logs``), the
function's new log lines are read from SLS after every status read, logged here in the triggerer, and added to
``lines`` (the last ones, bounded by ``cap_lines``) so that ``execute_complete`` prints them in the task log;
after the terminal status it keeps reading for at most ``log_wait`` seconds until the last attempt's End line.
A GetLogs error is logged and never changes the event.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_fc_async import compat
from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.function_logs import LogCursor, cap_lines
from airflow_fc_async.core.models import AsyncTask
from airflow_fc_async.core.progress import ProgressTracker
from airflow_fc_async.core.status_poller import TaskWatch, watch_task
from airflow_fc_async.core.waiting import Deadline, WaitPolicy

__all__ = ["FcAsyncTaskTrigger"]

_PAYLOAD_KEYS = ("taskPayload", "invocationPayload", "returnPayload")


class FcAsyncTaskTrigger(BaseTrigger):
    """Poll an FC async task until it ends, ``timeout_at`` passes or a permanent error occurs.

    :param function_name: the FC function.
    :param async_task_id: the FC async task id (``task_id`` is taken by ``BaseTrigger``: the Airflow task id).
    :param qualifier: version or alias.
    :param fc_conn_id: the Airflow connection (read in the triggerer, asynchronously; never a secret here).
    :param poll_interval: the longest gap between two reads, seconds (the WaitPolicy backs off to it).
    :param timeout_at: epoch seconds after which a ``timeout`` event fires; None waits without a limit.
    :param stop_on_kill: stop the FC task when a user kills the deferred Airflow task.
    :param progress: the ProgressTracker state so far (so no line is logged twice).
    :param request_id: the invocation's request id, echoed in the event.
    :param logs: the function-log cursor state (``stream_logs``); None reads no function logs.
    :param log_wait: seconds to keep reading function logs after the end, for the last End line.
    """

    def __init__(
        self,
        function_name: str,
        async_task_id: str,
        qualifier: str = "LATEST",
        fc_conn_id: str = "fc_default",
        poll_interval: float = 15.0,
        timeout_at: float | None = None,
        stop_on_kill: bool = True,
        progress: dict[str, Any] | None = None,
        request_id: str | None = None,
        logs: dict[str, Any] | None = None,
        log_wait: float = 30.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.function_name = function_name
        self.async_task_id = async_task_id
        self.qualifier = qualifier
        self.fc_conn_id = fc_conn_id
        self.poll_interval = float(poll_interval)
        self.timeout_at = timeout_at
        self.stop_on_kill = stop_on_kill
        self.progress = dict(progress or {})
        self.request_id = request_id
        self.logs = dict(logs) if logs else None
        self.log_wait = float(log_wait)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "function_name": self.function_name,
                "async_task_id": self.async_task_id,
                "qualifier": self.qualifier,
                "fc_conn_id": self.fc_conn_id,
                "poll_interval": self.poll_interval,
                "timeout_at": self.timeout_at,
                "stop_on_kill": self.stop_on_kill,
                "progress": self.progress,
                "request_id": self.request_id,
                "logs": self.logs,
                "log_wait": self.log_wait,
            },
        )

    def _hook(self) -> Any:
        hook = self.__dict__.get("_fc_hook")
        if hook is None:
            from airflow_fc_async.hooks.fc import FcHook

            hook = self.__dict__["_fc_hook"] = FcHook(fc_conn_id=self.fc_conn_id)
        return hook

    def _event(self, status: str, lines: list[str], tracker: ProgressTracker, **extra: Any) -> TriggerEvent:
        payload: dict[str, Any] = {
            "status": status,
            "function_name": self.function_name,
            "qualifier": self.qualifier,
            "async_task_id": self.async_task_id,
            "request_id": self.request_id,
            "lines": cap_lines(lines) if self.logs else lines,
            "progress": tracker.to_dict(),
        }
        payload.update(extra)
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        tracker = ProgressTracker.from_dict(self.progress)
        lines: list[str] = []
        cursor = LogCursor.from_dict(self.logs) if self.logs else None
        remaining = None if self.timeout_at is None else max(0.0, self.timeout_at - time.time())
        policy = WaitPolicy.for_poll_interval(self.poll_interval)
        deadline = Deadline(remaining, time.monotonic())
        reads = 0
        watch: TaskWatch | None = None  # this loop's shared status poller, after the first read
        asked, seen = False, time.monotonic()
        task: AsyncTask | None = None
        try:
            while True:
                if deadline.expired():
                    self.log.info("FC task %s: no end within the deadline", self.async_task_id)
                    yield self._event("timeout", lines, tracker, message="the deadline passed")
                    return
                delay = deadline.sleep_for(policy, reads)
                listed: AsyncTask | None = None
                if watch is not None:
                    listed = await watch.next(delay)
                    if listed is None and watch.seen_since(seen):
                        seen = time.monotonic()  # a shared scan showed it unchanged: no read of our own
                        if cursor is not None and task is not None:
                            await self._read_logs(cursor, task, lines)
                        continue
                elif math.isfinite(delay) and delay > 0:
                    await asyncio.sleep(delay)
                if listed is not None and listed.is_terminal and not listed.is_successful:
                    listed = listed if listed.error_message else None  # no message listed: read the task
                try:
                    if listed is None:
                        reads += 1
                    task = listed or await self._hook().aget_async_task(
                        self.function_name, self.async_task_id, qualifier=self.qualifier
                    )
                except FcError as err:
                    if err.retryable:
                        self.log.warning("Transient error reading FC task %s: %s", self.async_task_id, err)
                        continue
                    self.log.error("Permanent error reading FC task %s: %s", self.async_task_id, err)
                    yield self._event("error", lines, tracker, message=str(err), retryable=False)
                    return
                seen = time.monotonic()
                if watch is not None and listed is None:
                    watch.observed(task)
                elif not asked and not task.is_terminal:
                    asked, watch = True, await self._watch(task, policy)
                for line in tracker.update(task):
                    self.log.info("FC task %s: %s", self.async_task_id, line)
                    lines.append(line)
                if cursor is not None:
                    await self._read_logs(cursor, task, lines)
                if task.is_terminal:
                    if cursor is not None:
                        await self._drain_logs(cursor, task, lines)
                    status = "success" if task.is_successful else "failure"
                    raw = {k: v for k, v in dict(task.raw).items() if k not in _PAYLOAD_KEYS}
                    raw.setdefault("taskId", task.task_id)
                    raw.setdefault("status", task.status.value)
                    yield self._event(status, lines, tracker, task=raw, task_status=task.status.value)
                    return
        except asyncio.CancelledError as exc:
            # Airflow 3.3+ calls on_kill for user actions; before it, stop only when the task instance left
            # DEFERRED (a user acted), never on a triggerer restart (still DEFERRED).
            fallback = self.stop_on_kill and not compat.trigger_has_on_kill()
            if fallback and not compat.is_user_action_cancel(exc):
                still_deferred = await compat.task_instance_still_deferred(self.task_instance)
                if not still_deferred:
                    await self._stop("the deferred Airflow task was cancelled")
            raise
        finally:  # also runs when a caller takes one event and closes the generator (dag.test does)
            if watch is not None:
                watch.close()
            await self._close_hook()

    async def _watch(self, task: AsyncTask, policy: WaitPolicy) -> TaskWatch | None:
        """Register with this loop's shared status poller (None: the task has no startedTime to list by)."""
        if task.started_time is None:
            return None
        client = await self._hook().aget_conn()
        return await watch_task(client, self.function_name, task, policy, qualifier=self.qualifier)

    async def _read_logs(self, cursor: LogCursor, task: AsyncTask, lines: list[str]) -> None:
        """New function log lines: logged here and kept for the event; an error is logged, never raised."""
        try:
            new = await self._hook().aread_function_logs(cursor, task)
        except FcError as err:
            self._log_errors = getattr(self, "_log_errors", 0) + 1
            if self._log_errors == 1 or self._log_errors % 10 == 0:
                self.log.warning(
                    "Reading function logs from SLS failed (%d so far; the task goes on): %s",
                    self._log_errors,
                    err,
                )
            return
        for line in new:
            self.log.info("FC task %s: %s", self.async_task_id, line)
        lines.extend(new)

    async def _drain_logs(self, cursor: LogCursor, task: AsyncTask, lines: list[str]) -> None:
        deadline = time.monotonic() + self.log_wait
        while cursor.ready and not cursor.complete(task) and time.monotonic() < deadline:
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            await self._read_logs(cursor, task, lines)

    async def on_kill(self) -> None:
        """A user killed the deferred task (Airflow 3.3+): stop the FC task when asked to."""
        if self.stop_on_kill:
            await self._stop("the deferred Airflow task was killed by a user")

    async def _stop(self, why: str) -> None:
        try:
            await self._hook().astop_async_task(
                self.function_name, self.async_task_id, qualifier=self.qualifier
            )
            self.log.info("Stopped FC task %s: %s", self.async_task_id, why)
        except Exception as err:
            self.log.warning("Could not stop FC task %s (%s): %s", self.async_task_id, why, err)

    async def cleanup(self) -> None:
        """Release the HTTP session; never stops the FC task (cleanup also runs on a triggerer restart)."""
        await self._close_hook()

    async def _close_hook(self) -> None:
        hook = self.__dict__.pop("_fc_hook", None)
        if hook is not None and hasattr(hook, "aclose"):
            try:
                await hook.aclose()
            except Exception as err:  # best effort
                self.log.debug("Closing the FC hook failed: %s", err)
