"""FcAsyncTaskSensor: wait for an FC async task that something else started.

Succeeded ends the sensor with the same XCom dict as the invoke operator. Failed, Stopped, Expired and Invalid
raise ``AirflowFailException``: a retry of the sensor would only see the same ended task, and it is the exception
``BaseSensorOperator`` turns into a skip when ``soft_fail=True`` (a plain AirflowException from ``poke`` is not
soft-failed by the task SDK 1.3). The sensor never stops the task it watches.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.policies import DEFER_MARGIN

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_fc_async.core.models import AsyncTask
    from airflow_fc_async.core.progress import ProgressTracker
    from airflow_fc_async.hooks.fc import FcHook

__all__ = ["FcAsyncTaskSensor"]

_PROGRESS_KEY = "fc_sensor_progress"
"""Key of the task state store holding, in reschedule mode, the progress lines already logged in this try."""


class FcAsyncTaskSensor(BaseSensorOperator):
    """Wait until an FC async task ends; succeed when it Succeeded, fail otherwise.

    :param function_name: the FC function (templated).
    :param async_task_id: the task to watch (templated), e.g. ``{{ ti.xcom_pull('invoke')['task_id'] }}``.
    :param qualifier: version or alias (templated).
    :param fc_conn_id: the Airflow connection (templated).
    :param deferrable: wait in the triggerer (``poke_interval`` is then the longest gap between reads).
    :param stream_logs: show the function's log lines in the task log while waiting (see
        ``FcInvokeAsyncOperator``); with ``mode="reschedule"`` each poke starts over, so use poke or deferrable.
    :param log_project: the SLS project (default: GetFunction's ``logConfig``).
    :param log_store: the SLS logstore (default: GetFunction's ``logConfig``).
    :param log_wait: after the end, how long to keep reading for the last attempt's End line (seconds).
    """

    template_fields: Sequence[str] = ("function_name", "async_task_id", "qualifier", "fc_conn_id")
    ui_color = "#ffb27a"

    def __init__(
        self,
        *,
        function_name: str,
        async_task_id: str,
        qualifier: str = "LATEST",
        fc_conn_id: str = "fc_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float | timedelta = 15,
        stream_logs: bool = False,
        log_project: str | None = None,
        log_store: str | None = None,
        log_wait: float = 30.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        for name, value in (("function_name", function_name), ("async_task_id", async_task_id)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        self.function_name = function_name
        self.async_task_id = async_task_id
        self.qualifier = qualifier
        self.fc_conn_id = fc_conn_id
        self.deferrable = deferrable
        self._tracker: ProgressTracker | None = None  # made at the first poke: a DAG parse loads no models
        self.stream_logs = bool(stream_logs)
        self.log_project = log_project
        self.log_store = log_store
        self.log_wait = float(log_wait)
        self._logs: Any = None  # FunctionLogStreamer once opened; False when the logs cannot be located

    def _progress(self) -> ProgressTracker:
        if self._tracker is None:
            from airflow_fc_async.core.progress import ProgressTracker

            self._tracker = ProgressTracker()
        return self._tracker

    @property
    def hook(self) -> FcHook:
        hook = self.__dict__.get("_fc_hook")
        if hook is None:
            from airflow_fc_async.hooks.fc import FcHook

            hook = self.__dict__["_fc_hook"] = FcHook(fc_conn_id=self.fc_conn_id)
        return hook

    def poke(self, context: Context) -> bool | PokeReturnValue:
        try:
            task = self.hook.get_async_task(self.function_name, self.async_task_id, qualifier=self.qualifier)
        except FcError as err:
            if err.retryable:
                self.log.warning(
                    "Transient error reading FC task %s, will poke again: %s", self.async_task_id, err
                )
                return False
            raise AirflowFailException(f"Reading FC async task {self.async_task_id} failed: {err}") from err
        store = self._progress_store(context)
        lines = self._progress().update(task)
        for line in lines:
            self.log.info("FC task %s: %s", self.async_task_id, line)
        if store is not None and lines:
            self._save_progress(store, context)
        self._stream_logs(task)
        return self._outcome(task)

    def _progress_store(self, context: Context) -> Any | None:
        """In reschedule mode each poke is a new process: the lines already logged in this try's log are known
        from the task state store (Airflow 3.3+), so that each line appears once. None: nothing to restore."""
        if self.mode != "reschedule":
            return None
        from airflow_fc_async import compat

        store = compat.task_state_store(context)
        if store is None or self._progress().last_status is not None:
            return store
        try:
            saved = store.get(_PROGRESS_KEY)
        except Exception:
            return None
        try_number = getattr(context["ti"], "try_number", None)
        if isinstance(saved, dict) and saved.get("try_number") == try_number:
            from airflow_fc_async.core.progress import ProgressTracker

            self._tracker = ProgressTracker.from_dict(saved.get("progress"))
        return store

    def _save_progress(self, store: Any, context: Context) -> None:
        value = {
            "try_number": getattr(context["ti"], "try_number", None),
            "progress": self._progress().to_dict(),
        }
        try:
            store.set(_PROGRESS_KEY, value)
        except Exception as err:  # a line may then repeat at the next poke, nothing worse
            self.log.debug("Could not keep the sensor's progress: %s", err)

    def _stream_logs(self, task: AsyncTask) -> None:
        """New function log lines (``stream_logs``); at the end, read on until the last attempt's End line."""
        if not self.stream_logs or self._logs is False:
            return
        if self._logs is None:
            from airflow_fc_async.operators.follower import FunctionLogStreamer
            from airflow_fc_async.operators.outcome import TaskRef

            ref = TaskRef(self.function_name, self.qualifier, self.async_task_id, task.request_id)
            self._logs = FunctionLogStreamer.open(self.hook, ref, self) or False
            if self._logs is False:
                return

        def emit(lines: list[str]) -> None:
            for line in lines:
                self.log.info("FC task %s: %s", self.async_task_id, line)

        if task.is_terminal:
            self._logs.drain(task, time.sleep, emit)
        else:
            emit(self._logs.read(task))

    def _outcome(self, task: AsyncTask) -> bool | PokeReturnValue:
        from airflow_fc_async.operators.outcome import TaskRef, failure_message, task_result

        if not task.is_terminal:
            return False
        if task.is_successful:
            return PokeReturnValue(is_done=True, xcom_value=task_result(task))
        ref = TaskRef(self.function_name, self.qualifier, task.task_id, task.request_id)
        raise AirflowFailException(failure_message(ref, task, self._console_url()))

    def _console_url(self) -> str:
        try:
            return self.hook.console_url(self.function_name, self.async_task_id, qualifier=self.qualifier)
        except Exception:
            return ""

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)  # an ended task never defers (and its XCom is not lost)
        if isinstance(first, PokeReturnValue):
            return first.xcom_value
        if first:
            return None
        from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger

        self.defer(
            trigger=FcAsyncTaskTrigger(
                function_name=self.function_name,
                async_task_id=self.async_task_id,
                qualifier=self.qualifier,
                fc_conn_id=self.fc_conn_id,
                poll_interval=max(self.poke_interval, 1.0),
                timeout_at=time.time() + self.timeout,
                stop_on_kill=False,
                progress=self._progress().to_dict(),
                logs=self._logs.cursor.to_dict() if self._logs else None,
                log_wait=self.log_wait,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + DEFER_MARGIN),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        from airflow.providers.common.compat.sdk import AirflowSensorTimeout

        from airflow_fc_async.operators.outcome import TaskEvent

        done = TaskEvent.from_dict(event, needs_task=False)
        status = done.status  # the trigger's lines are in this task's log already (the triggerer wrote them)
        if status == "success":
            task = self.hook.get_async_task(self.function_name, self.async_task_id, qualifier=self.qualifier)
            result = self._outcome(task)
            return result.xcom_value if isinstance(result, PokeReturnValue) else None
        if status == "failure":
            self._outcome(done.task)
        if status == "timeout":
            raise AirflowSensorTimeout(
                f"FC async task {self.async_task_id} did not end within the sensor timeout ({self.timeout:g} s)"
            )
        raise AirflowFailException(f"Following FC async task {self.async_task_id} failed: {done.message()}")
