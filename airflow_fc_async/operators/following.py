"""Following one FC async task from an operator: the hook, deferral and resumption, the outcome, cancellation.

Shared by every operator that starts, re-runs or stops a task (``FcInvokeAsyncOperator``, its subclass
``FcRerunAsyncTaskOperator``, ``FcStopAsyncTaskOperator``): a subclass obtains a :class:`TaskRef` (invoke, re-run
or re-attach) and calls :meth:`FcAsyncTaskMixin.follow`. The blocking wait is a :class:`TaskFollower`
(``operators.follower``), the XCom value and the messages come from ``operators.outcome``, the destination record
from ``operators.destination_record``: each imported in the methods that use it, so a DAG parse loads none of them.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_fc_async.core.errors import FUNCTION_MISSING_CODES, FcError, FcNotFoundError
from airflow_fc_async.core.policies import DEFER_MARGIN, result_reread_delay

if TYPE_CHECKING:
    from airflow_fc_async.core.models import AsyncTask
    from airflow_fc_async.core.progress import ProgressTracker
    from airflow_fc_async.hooks.fc import FcHook
    from airflow_fc_async.operators.follower import FunctionLogStreamer, TaskFollower
    from airflow_fc_async.operators.outcome import TaskRef

__all__ = ["FcAsyncTaskMixin"]

_RESULT_READ_ATTEMPTS = 3


class FcAsyncTaskMixin:
    """Wait for, report on and cancel one FC async task. Mixed into a ``BaseOperator``.

    Expects the attributes ``fc_conn_id``, ``poll_interval`` (seconds), ``max_wait`` (seconds or None),
    ``stop_on_kill`` and ``deferrable``; the optional ones (destination record, function logs) are declared
    below with their defaults.
    """

    fc_conn_id: str
    poll_interval: float
    max_wait: float | None
    stop_on_kill: bool
    deferrable: bool
    if TYPE_CHECKING:
        log: Any
        execution_timeout: timedelta | None

        def defer(self, **kwargs: Any) -> NoReturn: ...

    _fc_ref: TaskRef | None = None
    _fc_logs: FunctionLogStreamer | None = None
    stream_logs: bool = False
    log_project: str | None = None
    log_store: str | None = None
    log_wait: float = 30.0
    destination_queue: str | None = None
    destination_timeout: float = 30.0
    destination_required: bool = False
    _fc_done: bool = False
    _fc_killed: bool = False
    _fc_kill_event: threading.Event | None = None
    _fc_destination_event: Any = None  # what the trigger found of the record, until finish() takes it

    # -- hooks -------------------------------------------------------------------------------------------------
    def _new_hook(self) -> FcHook:
        from airflow_fc_async.hooks.fc import FcHook

        return FcHook(fc_conn_id=self.fc_conn_id)

    @property
    def hook(self) -> FcHook:
        hook = self.__dict__.get("_fc_hook")
        if hook is None:
            hook = self.__dict__["_fc_hook"] = self._new_hook()
        return hook

    def console_url(self, ref: TaskRef) -> str:
        try:
            return self.hook.console_url(ref.function_name, ref.task_id, qualifier=ref.qualifier)
        except Exception:  # the link is a convenience: never fail a task over it
            return ""

    def _link_url(self, context: Any, url: str, *, persist: bool) -> None:
        """Remember the console URL for :class:`FcAsyncTaskLink` (Airflow's finalize step pushes it to XCom at
        every exit of this process, deferral included) and push it now when the link must work while a blocking
        wait runs. A deferrable task pushes nothing itself and finalize reads nothing back: two API round trips
        fewer in the deferral exit, which widens Airflow's defer-exit race (README, Scaling out)."""
        from airflow_fc_async.links import FcAsyncTaskLink

        self.__dict__["_fc_console_url"] = url
        if persist and url:
            FcAsyncTaskLink.persist(context, url)

    # -- following ---------------------------------------------------------------------------------------------
    def _start_following(self, ref: TaskRef) -> None:
        self._fc_ref = ref
        self._fc_done = False
        if self._fc_kill_event is None:
            self._fc_kill_event = threading.Event()

    def follow(self, context: Any, ref: TaskRef, first_read: AsyncTask | None = None) -> dict[str, Any]:
        """Wait for ``ref`` (blocking, or by deferring) and return its result; raise when it did not succeed.

        ``first_read``: the task as read already (an attach or re-attach). Without one, a deferrable task reads
        it once here (an ended task never defers); a blocking wait starts on its schedule.
        """
        from airflow_fc_async.core.progress import ProgressTracker

        self._start_following(ref)
        follower = self._follower(ref, ProgressTracker(), self._open_logs(ref))
        task = first_read
        if task is None and self.deferrable:
            task = follower.read_once("Reading FC task %s failed (%s); deferring anyway")
        if task is not None:
            follower.observe(task)
            if task.is_terminal:
                follower.drain(task)
                return self.finish(context, ref, task)
        if self.deferrable:
            started = task.started_time.timestamp() if task is not None and task.started_time else None
            self._defer_to_trigger(ref, follower.tracker, started_after=started)
        return self.finish(
            context, ref, self._wait_blocking(ref, follower, reads=0 if first_read is None else 1)
        )

    def _follower(
        self, ref: TaskRef, tracker: ProgressTracker, logs: FunctionLogStreamer | None = None
    ) -> TaskFollower:
        from airflow_fc_async.operators.follower import TaskFollower

        event = self._fc_kill_event or threading.Event()
        return TaskFollower(
            ref=ref,
            read=lambda: self.hook.get_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier),
            sleep=event.wait,
            log=self.log,
            tracker=tracker,
            read_error=lambda err: self._read_error(ref, err),
            logs=logs,
            check=lambda: self._raise_if_killed(ref),
        )

    def _read_error(self, ref: TaskRef, err: FcError) -> AirflowException:
        """The exception for a failed GetAsyncTask; a 404 of a task FC accepted is explained when it can be.

        FC accepts an async invoke of a function whose async invoke config lacks ``asyncTask: true``, runs it,
        and keeps no task record: GetAsyncTask answers 404. The config is read to say so.
        """
        if isinstance(err, FcNotFoundError) and err.code not in FUNCTION_MISSING_CODES:
            try:
                config = self.hook.get_async_invoke_config(ref.function_name, qualifier=ref.qualifier)
            except FcError as config_err:
                self.log.warning(
                    "Reading the async invoke config of %s failed: %s", ref.function_name, config_err
                )
            else:
                if config is None or config.async_task is not True:
                    what = (
                        "has no async invoke config"
                        if config is None
                        else "has an async invoke config without asyncTask: true"
                    )
                    return AirflowFailException(
                        f"FC accepted async task {ref.task_id}, but GetAsyncTask cannot find it: function "
                        f"{ref.function_name} (qualifier {ref.qualifier}) {what}, so FC keeps no task records (the "
                        "invocation runs, but it cannot be followed or stopped). Enable it with "
                        f"FcAsyncInvokeConfigOperator(function_name={ref.function_name!r}, async_task=True) or "
                        "'asyncTask: true' under the function's asyncInvokeConfig in s.yaml"
                    )
        from airflow_fc_async.operators.outcome import airflow_error

        return airflow_error(err, f"Reading FC async task {ref.task_id}")

    def _wait_blocking(self, ref: TaskRef, follower: TaskFollower, reads: int = 0) -> AsyncTask:
        """The blocking wait (``TaskFollower.wait``): WaitPolicy's schedule to the max_wait deadline, which
        stops the task and raises.

        When the function's destinations push every end (``core.push_completion``), the task's record wakes the
        wait and one read confirms the end; the schedule is then ``WaitPolicy.behind_push()``, a fallback."""
        from airflow_fc_async.core.waiting import WaitPolicy

        def polling() -> WaitPolicy:
            return WaitPolicy.for_poll_interval(self.poll_interval, self.max_wait)

        policy = polling()
        deadline = policy.deadline()
        event = self._fc_kill_event or threading.Event()
        push = self._push_signal(ref, event)
        if push is not None:
            policy = policy.behind_push()
        task = follower.wait(policy, deadline, reads=reads, push=push, polling=polling, rearm=event.clear)
        if task is None:
            self.stop_task(ref, f"max_wait of {self.max_wait:g} s passed")
            raise AirflowException(
                f"FC async task {ref.task_id} of function {ref.function_name} did not finish within "
                f"max_wait={self.max_wait:g} s; it was stopped. Console: {self.console_url(ref)}"
            )
        return task

    def _push_signal(self, ref: TaskRef, event: threading.Event) -> Any:
        """The destination record as the end signal of a blocking wait, when the function pushes every end."""
        if not ref.request_id:
            return None
        from airflow_fc_async.core.push_completion import RecordSignal, push_route
        from airflow_fc_async.hooks.mns import MnsHook

        try:
            route = push_route(self.hook.get_conn(), ref.function_name, ref.qualifier)
            if route is None:
                return None
            client = MnsHook(fc_conn_id=self.fc_conn_id).get_conn()
        except Exception as err:  # an optimisation: the poll alone still ends the wait
            self.log.info("FC task %s: no push completion (%s); polling", ref.task_id, err)
            return None
        return RecordSignal(client, route, ref.request_id, function_name=ref.function_name, wake=event)

    def _open_logs(self, ref: TaskRef) -> FunctionLogStreamer | None:
        """The function log streamer of ``stream_logs`` (None when off or the logs cannot be located)."""
        self._fc_logs = None
        if self.stream_logs:
            from airflow_fc_async.operators.follower import FunctionLogStreamer

            self._fc_logs = FunctionLogStreamer.open(self.hook, ref, self)
        return self._fc_logs

    def _defer_to_trigger(
        self, ref: TaskRef, tracker: ProgressTracker, started_after: float | None = None
    ) -> NoReturn:
        from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger

        wait = self.max_wait
        if wait is None and self.execution_timeout is not None:
            wait = self.execution_timeout.total_seconds()
        trigger = FcAsyncTaskTrigger(
            function_name=ref.function_name,
            async_task_id=ref.task_id,
            qualifier=ref.qualifier,
            fc_conn_id=self.fc_conn_id,
            poll_interval=self.poll_interval,
            timeout_at=time.time() + wait if wait else None,
            stop_on_kill=self.stop_on_kill,
            progress=tracker.to_dict(),
            request_id=ref.request_id,
            logs=self._fc_logs.cursor.to_dict() if self._fc_logs is not None else None,
            log_wait=self.log_wait,
            started_after=started_after,
            **self._destination_kwargs(),
        )
        self.log.info("Deferring: the triggerer follows FC task %s", ref.task_id)
        self.defer(
            trigger=trigger,
            method_name="execute_complete",
            timeout=timedelta(seconds=wait + DEFER_MARGIN) if wait else None,
        )

    def _destination_kwargs(self) -> dict[str, Any]:
        """The trigger waits for the destination record too (when a queue is set): its event carries it."""
        if not self.destination_queue:
            return {}
        return {
            "destination_queue": self.destination_queue,
            "destination_timeout": float(self.destination_timeout),
        }

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: success returns, anything else raises.

        The trigger's lines are not logged again: the triggerer wrote them into this task's log live.
        """
        from airflow_fc_async.operators.outcome import TaskEvent

        done = TaskEvent.from_dict(event)
        ref = done.ref
        self._start_following(ref)
        self._fc_destination_event = done.destination
        self._link_url(context, self.console_url(ref), persist=False)
        if done.status == "success":
            return self.finish(context, ref, self._read_result(ref))
        if done.status == "failure":
            return self.finish(context, ref, done.task)
        if done.status == "timeout":
            self.stop_task(ref, "the wait for it timed out in the triggerer")
            raise AirflowException(
                f"FC async task {ref.task_id} of function {ref.function_name} did not finish in time "
                f"({done.message('timeout')}); it was stopped. Console: {self.console_url(ref)}"
            )
        message = f"Following FC async task {ref.task_id} failed: {done.message(event)}"
        if done.retryable is False:
            raise AirflowFailException(message)
        raise AirflowException(message)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """A deferral that timed out (the trigger's own deadline did not fire first) still stops the FC task."""
        from airflow_fc_async import compat
        from airflow_fc_async.operators.outcome import STATE_KEY, TaskRef

        try:
            return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]
        except Exception as exc:
            if not compat.is_deferral_timeout(exc):
                raise
            store = compat.task_state_store(context)
            saved = store.get(STATE_KEY) if store is not None else None
            if self.stop_on_kill and isinstance(saved, dict) and saved.get("task_id"):
                self.stop_task(TaskRef.from_dict(saved), "the deferral timed out")
            raise

    def _read_result(self, ref: TaskRef) -> AsyncTask:
        """The succeeded task read once more, for its return payload (the trigger event stays small)."""
        from airflow_fc_async.operators.outcome import airflow_error

        for attempt in range(1, _RESULT_READ_ATTEMPTS + 1):
            try:
                return self.hook.get_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier)
            except FcError as err:
                if not err.retryable or attempt == _RESULT_READ_ATTEMPTS:
                    raise airflow_error(err, f"Reading the result of FC async task {ref.task_id}") from err
                self.log.warning("Transient error reading FC task %s, will retry: %s", ref.task_id, err)
                time.sleep(result_reread_delay(attempt))
        raise AssertionError("unreachable")

    def finish(self, context: Any, ref: TaskRef, task: AsyncTask) -> dict[str, Any]:
        """The outcome: the XCom dict on success, one AirflowException naming everything otherwise."""
        from airflow_fc_async.operators.outcome import failure_message, log_success, task_result

        self._fc_done = True
        if not task.is_terminal:
            raise AirflowException(f"FC async task {task.task_id} is still {task.status.value}")
        record = self.destination_record(context, ref, task)
        if task.is_successful:
            result = task_result(task, record)
            log_success(self.log, task, result)
            return result
        raise AirflowException(failure_message(ref, task, self.console_url(ref), record))

    def destination_record(self, context: Any, ref: TaskRef, task: AsyncTask) -> dict[str, Any] | None:
        """The task's destination record from ``destination_queue`` (None when no queue is set or none came);
        see :class:`~airflow_fc_async.operators.destination_record.DestinationRecordWait`. In deferrable mode
        the trigger waited for it and its event carries it."""
        if not self.destination_queue or not (task.request_id or ref.request_id):
            return None
        from airflow_fc_async.operators.destination_record import DestinationRecordWait

        wait = DestinationRecordWait(
            queue=self.destination_queue,
            timeout=float(self.destination_timeout),
            required=self.destination_required,
            fc_conn_id=self.fc_conn_id,
            log=self.log,
            destination_failed=lambda: self._destination_failed(ref),
        )
        return wait.record(context, ref, task, self.__dict__.pop("_fc_destination_event", None))

    def _destination_failed(self, ref: TaskRef) -> bool:
        try:
            task = self.hook.get_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier)
        except FcError:
            return False
        return task.destination_status == "Failed"

    # -- cancellation --------------------------------------------------------------------------------------
    def _raise_if_killed(self, ref: TaskRef) -> None:
        if self._fc_killed:
            what = "it was stopped" if self.stop_on_kill else "it was left running (stop_on_kill=False)"
            raise AirflowException(
                f"The Airflow task was killed while following FC async task {ref.task_id} of function "
                f"{ref.function_name}; {what}."
            )

    def on_kill(self) -> None:
        """Airflow killed the task (mark failed/success, clear, execution_timeout): stop the FC task, end the loop."""
        self._fc_killed = True
        if self._fc_kill_event is not None:
            self._fc_kill_event.set()
        ref = self._fc_ref
        if ref is not None and self.stop_on_kill and not self._fc_done:
            self.stop_task(ref, "the Airflow task was killed")

    def stop_task(self, ref: TaskRef, why: str) -> None:
        """Stop the FC task, best effort (a fresh hook: on_kill may interrupt a call of the shared one)."""
        try:
            self._new_hook().stop_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier)
            self.log.info("Stopped FC task %s: %s", ref.task_id, why)
        except Exception as err:
            self.log.warning("Could not stop FC task %s (%s): %s", ref.task_id, why, err)
