"""The worker side of following one FC async task: the one blocking wait loop and the function log streamer.

:class:`TaskFollower` reads the task through an injected ``read`` and waits through an injected ``sleep``; it logs
the progress lines and the function's own log lines and returns the ended task, or None when the deadline passed.
What to do then (stop the task, raise) is the caller's: ``FcAsyncTaskMixin`` (operators) and the sensors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_fc_async.core.errors import FcError

if TYPE_CHECKING:
    from airflow_fc_async.core.function_logs import LogCursor
    from airflow_fc_async.core.models import AsyncTask
    from airflow_fc_async.core.progress import ProgressTracker
    from airflow_fc_async.core.waiting import Deadline, WaitPolicy
    from airflow_fc_async.hooks.fc import FcHook
    from airflow_fc_async.operators.outcome import TaskRef

__all__ = ["FunctionLogStreamer", "LogSettings", "TaskFollower"]


class LogSettings(Protocol):
    """What ``stream_logs`` reads of an operator or sensor: where the logs are, how long to drain, the logger."""

    log_project: str | None
    log_store: str | None
    log_wait: float

    @property
    def log(self) -> Any: ...  # a property of Airflow's LoggingMixin


class FunctionLogStreamer:
    """The worker side of ``stream_logs``: new function log lines of one task, read from SLS between status reads.

    A GetLogs error never fails the task: it is logged (the first one as a warning, then every tenth) and the
    next read carries on where the last good one stopped. After the terminal status, :meth:`drain` keeps reading
    for at most ``wait`` seconds until the End line of the task's last attempt appears.
    """

    def __init__(self, hook: FcHook, log: Any, cursor: LogCursor, wait: float) -> None:
        self.hook = hook
        self.log = log
        self.cursor = cursor
        self.wait = wait
        self.errors = 0

    @classmethod
    def open(cls, hook: FcHook, ref: TaskRef, owner: LogSettings) -> FunctionLogStreamer | None:
        """A streamer of ``ref``'s logs with ``owner``'s settings and logger, or None (after one warning) when
        the function's logs cannot be located."""
        try:
            cursor = hook.function_log_cursor(
                ref.function_name,
                ref.request_id,
                qualifier=ref.qualifier,
                log_project=owner.log_project,
                log_store=owner.log_store,
            )
        except FcError as err:
            owner.log.warning(
                "Function logs of %s will not be shown: reading its logConfig failed: %s",
                ref.function_name,
                err,
            )
            return None
        return None if cursor is None else cls(hook, owner.log, cursor, owner.log_wait)

    def read(self, task: AsyncTask | None) -> list[str]:
        try:
            return self.hook.read_function_logs(self.cursor, task)
        except FcError as err:
            self.errors += 1
            if self.errors == 1 or self.errors % 10 == 0:
                self.log.warning(
                    "Reading function logs from SLS failed (%d so far; the task goes on): %s",
                    self.errors,
                    err,
                )
            return []

    def drain(self, task: AsyncTask, sleep: Any, emit: Any) -> None:
        """After the terminal status: read until the last attempt's End line, at most ``wait`` seconds."""
        deadline = time.monotonic() + self.wait
        while True:
            emit(self.read(task))
            if self.cursor.complete(task) or not self.cursor.ready or time.monotonic() >= deadline:
                break
            sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if self.cursor.ready and not self.cursor.complete(task):
            self.log.info("Function logs: the last attempt's End line did not appear within %g s", self.wait)


@dataclass
class TaskFollower:
    """Follows one task in this process: reads it, logs what changed, waits between reads.

    :param ref: the task (its id prefixes every log line).
    :param read: one GetAsyncTask of it; an ``FcError`` it raises is retried on the schedule when retryable and
        turned into the caller's exception by ``read_error`` otherwise.
    :param sleep: wait up to that many seconds (a kill event's ``wait``: a kill ends the sleep early).
    :param tracker: the progress lines already logged (a trigger's or an earlier read's).
    :param logs: the function log streamer (``stream_logs``), or None.
    :param check: called before and after every sleep and at the end; raises when the wait must stop (a kill).
    """

    ref: TaskRef
    read: Callable[[], AsyncTask]
    sleep: Callable[[float], object]
    log: Any
    tracker: ProgressTracker
    read_error: Callable[[FcError], Exception]
    logs: FunctionLogStreamer | None = None
    check: Callable[[], None] = lambda: None

    def read_once(
        self, transient: str = "Transient error reading FC task %s, will retry: %s"
    ) -> AsyncTask | None:
        """One status read; None after a transient error (logged with ``transient``), else the caller's error."""
        try:
            return self.read()
        except FcError as err:
            if not err.retryable:
                raise self.read_error(err) from err
            self.log.warning(transient, self.ref.task_id, err)
            return None

    def observe(self, task: AsyncTask) -> None:
        """Log what changed since the last read: progress lines, then new function log lines."""
        self.emit(self.tracker.update(task))
        if self.logs is not None:
            self.emit(self.logs.read(task))

    def drain(self, task: AsyncTask) -> None:
        """After the end: the function's last log lines (``stream_logs``)."""
        if self.logs is not None:
            self.logs.drain(task, self.sleep, self.emit)

    def emit(self, lines: list[str]) -> None:
        for line in lines:
            self.log.info("FC task %s: %s", self.ref.task_id, line)

    def wait(
        self,
        policy: WaitPolicy,
        deadline: Deadline,
        *,
        reads: int = 0,
        push: Any = None,
        polling: Callable[[], WaitPolicy] | None = None,
        rearm: Callable[[], None] = lambda: None,
    ) -> AsyncTask | None:
        """The one blocking wait loop: ``policy``'s schedule to ``deadline``, transient errors retried.

        Returns the ended task (its logs drained), or None once ``deadline`` expired. ``push`` (a
        ``RecordSignal``) wakes the sleep when the task's destination record arrives; one read then confirms the
        end, ``rearm`` re-arms the sleep, and a task not yet ended is polled on ``polling()``'s schedule. ``reads``
        counts the reads made already (the schedule's position).
        """
        try:
            while True:
                self.check()
                if deadline.expired():
                    return None
                if push is None or not push.arrived:
                    self.sleep(deadline.sleep_for(policy, reads))
                self.check()
                pushed = push is not None and push.arrived
                if pushed and push is not None:
                    rearm()  # the record set the sleep's event (a kill sets the flag checked above first)
                    push.close()
                    push = None
                task = self.read_once()
                reads += 1
                if task is None:
                    continue
                if pushed and not task.is_terminal and polling is not None:  # a record before the end
                    policy = polling()
                self.observe(task)
                if task.is_terminal:
                    self.check()
                    self.drain(task)
                    return task
        finally:
            if push is not None:
                push.close()
