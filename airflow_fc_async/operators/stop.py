"""FcStopAsyncTaskOperator: stop a running async task by hand (or from a DAG), idempotently."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

from airflow_fc_async.core.durations import coerce_seconds
from airflow_fc_async.core.errors import FcError, FcInvalidArgumentError
from airflow_fc_async.operators.following import FcAsyncTaskMixin

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_fc_async.core.models import AsyncTask
    from airflow_fc_async.operators.outcome import TaskRef

__all__ = ["FcStopAsyncTaskOperator"]


class FcStopAsyncTaskOperator(FcAsyncTaskMixin, BaseOperator):
    """Stop an async task and (by default) wait until FC reports it Stopped.

    :param function_name: the function (templated).
    :param async_task_id: the task to stop (templated).
    :param qualifier: its qualifier (templated).
    :param wait_for_stopped: wait for a terminal status after the stop request.
    :param timeout: longest wait for it (seconds or timedelta).
    :param poll_interval: longest gap between status reads while waiting.
    :param fail_if_terminal: fail when the task had already ended; by default that is logged and left alone.

    XCom return value: the task's summary after the stop (``task_id``, ``status``, ``request_id``, times, error).
    A task that ended otherwise just before the stop (Succeeded, Failed) is reported with that status.
    """

    template_fields: Sequence[str] = ("function_name", "async_task_id", "qualifier")
    ui_color = "#e0a0a0"

    def __init__(
        self,
        *,
        function_name: str,
        async_task_id: str,
        qualifier: str = "LATEST",
        wait_for_stopped: bool = True,
        timeout: float | timedelta = 300,
        poll_interval: float | timedelta = 5,
        fail_if_terminal: bool = False,
        fc_conn_id: str = "fc_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.function_name = function_name
        self.async_task_id = async_task_id
        self.qualifier = qualifier
        self.wait_for_stopped = wait_for_stopped
        self.max_wait = coerce_seconds("timeout", timeout, allow_none=False)
        self.poll_interval = coerce_seconds("poll_interval", poll_interval, allow_none=False) or 5.0
        self.fail_if_terminal = fail_if_terminal
        self.fc_conn_id = fc_conn_id
        self.deferrable = False
        self.stop_on_kill = False  # the stop is this operator's job; a kill leaves the task as it is

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_fc_async.operators.outcome import TaskRef, airflow_error

        ref = TaskRef(self.function_name, self.qualifier, self.async_task_id)
        task = self._read(ref)
        if task.is_terminal:
            message = f"FC task {ref.task_id} of {ref.function_name} already ended {task.status.value}"
            if self.fail_if_terminal:
                raise AirflowFailException(message + " (fail_if_terminal=True)")
            self.log.info("%s: nothing to stop", message)
            return task.summary()
        self.log.info("Stopping FC task %s of %s (now %s)", ref.task_id, ref.function_name, task.status.value)
        try:
            self.hook.stop_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier)
        except FcInvalidArgumentError:
            # FC refuses to stop a task that ended between our read and the stop: report what it became.
            task = self._read(ref)
            if not task.is_terminal:
                raise
            self.log.info("FC task %s ended %s before the stop arrived", ref.task_id, task.status.value)
            return task.summary()
        except FcError as err:
            raise airflow_error(err, f"Stopping FC async task {ref.task_id}") from err
        if not self.wait_for_stopped:
            return self._read(ref).summary()
        from airflow_fc_async.core.progress import ProgressTracker

        self._start_following(ref)
        tracker = ProgressTracker()
        tracker.update(task)
        final = self._wait_blocking(ref, self._follower(ref, tracker))
        self.log.info("FC task %s is %s", ref.task_id, final.status.value)
        return final.summary()

    def _read(self, ref: TaskRef) -> AsyncTask:
        from airflow_fc_async.operators.outcome import airflow_error

        try:
            return self.hook.get_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier)
        except FcError as err:
            raise airflow_error(err, f"Reading FC async task {ref.task_id}") from err
