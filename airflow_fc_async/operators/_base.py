"""Following one FC async task to its end: the one wait loop, deferral, outcome and cancellation.

Shared by every operator that starts or re-runs a task (``FcInvokeAsyncOperator`` and its subclass
``FcRerunAsyncTaskOperator``): a subclass obtains a :class:`TaskRef` (invoke, re-run or re-attach) and calls :meth:`FcAsyncTaskMixin.follow`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_fc_async.core.errors import (
    FUNCTION_MISSING_CODES,
    FcAuthError,
    FcConflictError,
    FcError,
    FcInvalidArgumentError,
    FcNotFoundError,
    FcValidationError,
)

if TYPE_CHECKING:
    from airflow_fc_async.core.function_logs import LogCursor
    from airflow_fc_async.core.models import AsyncTask
    from airflow_fc_async.core.progress import ProgressTracker
    from airflow_fc_async.hooks.fc import FcHook

__all__ = [
    "MAX_RESULT_BYTES",
    "STATE_KEY",
    "FcAsyncTaskMixin",
    "FunctionLogStreamer",
    "TaskRef",
    "airflow_error",
    "failure_message",
    "task_result",
]

MAX_RESULT_BYTES = 48 * 1024
"""Above this the XCom result drops ``return_payload`` (MySQL's XCom column holds 64 KB; large XComs hurt)."""

STATE_KEY = "fc_async_task"
"""Key of the task state store (Airflow 3.3+) holding the FC task of the current task instance."""

RECORD_KEY = "fc_destination_record"
"""Key of the task state store holding the destination record once it was taken off the queue."""

_RETURN_LOG_CHARS = 200  # the return payload's line in the task log: a glimpse, XCom has it whole
_DEFER_MARGIN = 60.0  # the trigger's own deadline fires this long before the deferral timeout
_RESULT_READ_ATTEMPTS = 3
_STATUS_RECHECK = 5.0  # while waiting for a record, re-read destinationStatus this often
_NOT_DELIVERED = "FC reports destinationStatus Failed: it did not deliver the record"


@dataclass(frozen=True)
class TaskRef:
    """The FC task an operator follows."""

    function_name: str
    qualifier: str
    task_id: str
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "function_name": self.function_name,
            "qualifier": self.qualifier,
            "task_id": self.task_id,
            "request_id": self.request_id,
        }


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


def failure_message(ref: TaskRef, task: AsyncTask, console_url: str) -> str:
    """The one message of a task that ended without success."""
    return (
        f"FC async task {task.task_id} of function {ref.function_name} (qualifier {ref.qualifier}, "
        f"request id {task.request_id or ref.request_id or 'unknown'}) ended {task.status.value}: "
        f"{task.error_message or 'no error message'}. Console: {console_url}"
    )


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
    def open(
        cls,
        hook: FcHook,
        log: Any,
        *,
        function_name: str,
        qualifier: str,
        request_id: str | None,
        log_project: str | None,
        log_store: str | None,
        wait: float,
    ) -> FunctionLogStreamer | None:
        """A streamer, or None (after one warning) when the function's logs cannot be located."""
        try:
            cursor = hook.function_log_cursor(
                function_name, request_id, qualifier=qualifier, log_project=log_project, log_store=log_store
            )
        except FcError as err:
            log.warning(
                "Function logs of %s will not be shown: reading its logConfig failed: %s", function_name, err
            )
            return None
        return None if cursor is None else cls(hook, log, cursor, wait)

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


class FcAsyncTaskMixin:
    """Wait for, report on and cancel one FC async task. Mixed into a ``BaseOperator``.

    Expects the attributes ``fc_conn_id``, ``poll_interval`` (seconds), ``max_wait`` (seconds or None),
    ``stop_on_kill`` and ``deferrable``.
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
    _fc_done: bool = False
    _fc_killed: bool = False
    _fc_kill_event: threading.Event | None = None

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
        """Wait for ``ref`` (blocking, or by deferring) and return its result; raise when it did not succeed."""
        from airflow_fc_async.core.progress import ProgressTracker

        self._start_following(ref)
        tracker = ProgressTracker()
        self._open_logs(ref)
        if first_read is not None:
            self._log_lines(ref, tracker.update(first_read))
            self._stream_logs(ref, first_read)
        if self.deferrable:
            task = first_read or self._read_once(ref)
            if task is not None and first_read is None:
                self._log_lines(ref, tracker.update(task))
                self._stream_logs(ref, task)
            if task is not None and task.is_terminal:
                self._drain_logs(ref, task)
                return self.finish(context, ref, task)
            started = task.started_time.timestamp() if task is not None and task.started_time else None
            self._defer_to_trigger(ref, tracker, started_after=started)
        if first_read is not None and first_read.is_terminal:
            self._drain_logs(ref, first_read)
            return self.finish(context, ref, first_read)
        task = self._wait_blocking(ref, tracker, reads=0 if first_read is None else 1)
        return self.finish(context, ref, task)

    def _read_once(self, ref: TaskRef) -> AsyncTask | None:
        try:
            return self.hook.get_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier)
        except FcError as err:
            if err.retryable:
                self.log.warning("Reading FC task %s failed (%s); deferring anyway", ref.task_id, err)
                return None
            raise self._read_error(ref, err) from err

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
        return airflow_error(err, f"Reading FC async task {ref.task_id}")

    def _wait_blocking(self, ref: TaskRef, tracker: ProgressTracker, reads: int = 0) -> AsyncTask:
        """The one blocking wait loop: WaitPolicy's schedule, the max_wait deadline, transient errors retried.

        When the function's destinations push every end (``core.push_completion``), the task's record wakes the
        wait and one read confirms the end; the schedule is then ``WaitPolicy.behind_push()``, a fallback."""
        from airflow_fc_async.core.waiting import WaitPolicy

        policy = WaitPolicy.for_poll_interval(self.poll_interval, self.max_wait)
        deadline = policy.deadline()
        event = self._fc_kill_event or threading.Event()
        push = self._push_signal(ref, event)
        if push is not None:
            policy = policy.behind_push()
        try:
            while True:
                self._raise_if_killed(ref)
                if deadline.expired():
                    self.stop_task(ref, f"max_wait of {self.max_wait:g} s passed")
                    raise AirflowException(
                        f"FC async task {ref.task_id} of function {ref.function_name} did not finish within "
                        f"max_wait={self.max_wait:g} s; it was stopped. Console: {self.console_url(ref)}"
                    )
                if push is None or not push.arrived:
                    event.wait(deadline.sleep_for(policy, reads))
                self._raise_if_killed(ref)
                pushed = push is not None and push.arrived
                if pushed and push is not None:
                    event.clear()  # set by the record (a kill sets the flag checked above first)
                    push.close()
                    push = None
                task = self._read_in_wait(ref)
                reads += 1
                if task is None:
                    continue
                if pushed and not task.is_terminal:  # a record before the end: poll as usual
                    policy = WaitPolicy.for_poll_interval(self.poll_interval, self.max_wait)
                self._log_lines(ref, tracker.update(task))
                self._stream_logs(ref, task)
                if task.is_terminal:
                    self._raise_if_killed(ref)
                    self._drain_logs(ref, task)
                    return task
        finally:
            if push is not None:
                push.close()

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

    def _read_in_wait(self, ref: TaskRef) -> AsyncTask | None:
        """One status read of the blocking wait; None after a transient error (retried on the schedule)."""
        try:
            return self.hook.get_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier)
        except FcError as err:
            if not err.retryable:
                raise self._read_error(ref, err) from err
            self.log.warning("Transient error reading FC task %s, will retry: %s", ref.task_id, err)
            return None

    def _log_lines(self, ref: TaskRef, lines: list[str]) -> None:
        for line in lines:
            self.log.info("FC task %s: %s", ref.task_id, line)

    # -- function logs (stream_logs) ---------------------------------------------------------------------------
    def _open_logs(self, ref: TaskRef) -> None:
        self._fc_logs = None
        if self.stream_logs:
            self._fc_logs = FunctionLogStreamer.open(
                self.hook,
                self.log,
                function_name=ref.function_name,
                qualifier=ref.qualifier,
                request_id=ref.request_id,
                log_project=self.log_project,
                log_store=self.log_store,
                wait=self.log_wait,
            )

    def _stream_logs(self, ref: TaskRef, task: AsyncTask) -> None:
        if self._fc_logs is not None:
            self._log_lines(ref, self._fc_logs.read(task))

    def _drain_logs(self, ref: TaskRef, task: AsyncTask) -> None:
        if self._fc_logs is not None:
            event = self._fc_kill_event or threading.Event()
            self._fc_logs.drain(task, event.wait, lambda lines: self._log_lines(ref, lines))

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
            timeout=timedelta(seconds=wait + _DEFER_MARGIN) if wait else None,
        )

    def _destination_kwargs(self) -> dict[str, Any]:
        """The trigger waits for the destination record too (when a queue is set): its event carries it."""
        queue = getattr(self, "destination_queue", None)
        if not queue:
            return {}
        return {
            "destination_queue": queue,
            "destination_timeout": float(getattr(self, "destination_timeout", 30.0)),
        }

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: success returns, anything else raises.

        The trigger's lines are not logged again: the triggerer wrote them into this task's log live.
        """
        if not isinstance(event, dict) or "status" not in event or "async_task_id" not in event:
            raise AirflowException(f"Unexpected trigger event: {event!r}")
        ref = TaskRef(
            function_name=event["function_name"],
            qualifier=event.get("qualifier") or "LATEST",
            task_id=event["async_task_id"],
            request_id=event.get("request_id"),
        )
        self._start_following(ref)
        self._fc_destination_event = event.get("destination")
        self._link_url(context, self.console_url(ref), persist=False)
        status = event["status"]
        if status == "success":
            return self.finish(context, ref, self._read_result(ref))
        if status == "failure":
            from airflow_fc_async.core.models import AsyncTask

            return self.finish(context, ref, AsyncTask.from_json(event["task"]))
        if status == "timeout":
            self.stop_task(ref, "the wait for it timed out in the triggerer")
            raise AirflowException(
                f"FC async task {ref.task_id} of function {ref.function_name} did not finish in time "
                f"({event.get('message', 'timeout')}); it was stopped. Console: {self.console_url(ref)}"
            )
        message = f"Following FC async task {ref.task_id} failed: {event.get('message', event)}"
        if event.get("retryable") is False:
            raise AirflowFailException(message)
        raise AirflowException(message)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """A deferral that timed out (the trigger's own deadline did not fire first) still stops the FC task."""
        from airflow_fc_async import compat

        try:
            return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]
        except Exception as exc:
            if not compat.is_deferral_timeout(exc):
                raise
            store = compat.task_state_store(context)
            saved = store.get(STATE_KEY) if store is not None else None
            if self.stop_on_kill and isinstance(saved, dict) and saved.get("task_id"):
                ref = TaskRef(
                    saved["function_name"],
                    saved.get("qualifier") or "LATEST",
                    saved["task_id"],
                    saved.get("request_id"),
                )
                self.stop_task(ref, "the deferral timed out")
            raise

    def _read_result(self, ref: TaskRef) -> AsyncTask:
        """The succeeded task read once more, for its return payload (the trigger event stays small)."""
        for attempt in range(1, _RESULT_READ_ATTEMPTS + 1):
            try:
                return self.hook.get_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier)
            except FcError as err:
                if not err.retryable or attempt == _RESULT_READ_ATTEMPTS:
                    raise airflow_error(err, f"Reading the result of FC async task {ref.task_id}") from err
                self.log.warning("Transient error reading FC task %s, will retry: %s", ref.task_id, err)
                time.sleep(attempt)
        raise AssertionError("unreachable")

    def finish(self, context: Any, ref: TaskRef, task: AsyncTask) -> dict[str, Any]:
        """The outcome: the XCom dict on success, one AirflowException naming everything otherwise."""
        self._fc_done = True
        if not task.is_terminal:
            raise AirflowException(f"FC async task {task.task_id} is still {task.status.value}")
        record = self.destination_record(context, ref, task)
        if task.is_successful:
            result = task_result(task, record)
            if result.get("return_payload_truncated"):
                self.log.warning(
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
                self.log.warning(
                    "The XCom result of FC task %s would exceed %d bytes: %s of its destination record left out",
                    task.task_id,
                    MAX_RESULT_BYTES,
                    " and ".join(cut),
                )
            self.log.info("FC task %s succeeded (request id %s)", task.task_id, task.request_id)
            if task.return_payload:
                self.log.info("FC task %s returned: %s", task.task_id, short_payload(task.return_payload))
            return result
        message = failure_message(ref, task, self.console_url(ref))
        if record is not None:
            from airflow_fc_async.core.destinations import format_failure_message
            from airflow_fc_async.core.models import DestinationRecord

            message += " Destination record: " + format_failure_message(DestinationRecord.from_json(record))
        raise AirflowException(message)

    def destination_record(self, context: Any, ref: TaskRef, task: AsyncTask) -> dict[str, Any] | None:
        """The task's destination record from ``destination_queue`` (None when no queue is set or none came).

        The record may reach the queue before or after the terminal status is read: it is awaited at most
        ``destination_timeout`` seconds, not at all when FC reports ``destinationStatus`` Failed. In deferrable
        mode the trigger waited for it and its event carries it. It is stored (XCom key ``destination_record``,
        the task state store on 3.3+) before its message is deleted, so it is never lost; other consumers'
        messages on the queue are left alone. No record: a warning, or a failure with ``destination_required``.
        """
        queue = getattr(self, "destination_queue", None)
        request_id = task.request_id or ref.request_id
        if not queue or not request_id:
            return None
        from airflow_fc_async import compat
        from airflow_fc_async.core.errors import FcError
        from airflow_fc_async.hooks.mns import MnsHook

        state = compat.task_state_store(context)
        saved = _saved_record(state, request_id)
        if saved is not None:  # an earlier try took the record off the queue; XCom did not outlive that try
            self.log.info("Destination record of %s: kept by an earlier try", request_id)
            self._push_record(context, saved)
            return saved

        def store(value: dict[str, Any]) -> dict[str, Any]:
            value, dropped = fit_destination_record(value)
            if dropped:
                self.log.warning(
                    "The destination record of %s is larger than %d bytes: %s left out of XCom",
                    request_id,
                    MAX_RESULT_BYTES,
                    " and ".join(dropped),
                )
            if state is not None:  # Airflow 3.3+: survives a retry, which XCom does not
                try:
                    state.set(RECORD_KEY, value)
                except Exception as err:
                    self.log.warning("Could not keep the destination record in the task state store: %s", err)
            self._push_record(context, value)
            return value

        timeout = float(getattr(self, "destination_timeout", 30.0))
        hook = MnsHook(fc_conn_id=self.fc_conn_id)
        event = self.__dict__.pop("_fc_destination_event", None)
        if isinstance(event, dict):  # deferrable: the trigger waited for the record
            claim = event.get("claim")
            if not isinstance(claim, dict):
                return self._no_record(queue, request_id, str(event.get("reason") or "none came"), task)
            from airflow_fc_async.core.destination_receiver import ClaimedRecord

            value = store(dict(claim["record"]))
            try:
                hook.ack_destination_record(ClaimedRecord.from_event(claim))
            except FcError as err:  # stored: a failed delete must not fail the task
                self.log.warning(
                    "Deleting the message of record %s from %s failed: %s", request_id, queue, err
                )
            self.log.info(
                "Destination record of %s: condition=%r", request_id, value["requestContext"]["condition"]
            )
            return value
        if task.destination_status == "Failed":
            return self._no_record(queue, request_id, _NOT_DELIVERED, task)
        self.log.info(
            "Waiting up to %g s for the destination record of %s on queue %s", timeout, request_id, queue
        )
        stored: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        rec = None
        while rec is None and time.monotonic() < deadline:
            try:
                rec = hook.wait_for_destination_record(
                    queue,
                    request_id,
                    min(_STATUS_RECHECK, max(0.1, deadline - time.monotonic())),
                    before_delete=lambda r: stored.append(store(r.to_dict())),
                    function_name=ref.function_name,
                )
            except FcError as err:
                return self._no_record(queue, request_id, f"reading the queue failed: {err}", task)
            if rec is None and self._destination_failed(ref):  # FC may report it after the terminal status
                return self._no_record(queue, request_id, _NOT_DELIVERED, task)
        if rec is None:
            return self._no_record(
                queue, request_id, f"none came within destination_timeout={timeout:g} s", task
            )
        self.log.info("Destination record of %s: condition=%r", request_id, rec.condition or "")
        return stored[0]

    def _destination_failed(self, ref: TaskRef) -> bool:
        try:
            task = self.hook.get_async_task(ref.function_name, ref.task_id, qualifier=ref.qualifier)
        except FcError:
            return False
        return task.destination_status == "Failed"

    def _no_record(self, queue: str, request_id: str, reason: str, task: AsyncTask) -> dict[str, Any] | None:
        """No record: the warning (or, with ``destination_required`` on a succeeded task, the failure)."""
        message = (
            f"No destination record for request {request_id} on MNS queue {queue}: {reason}. Check that the "
            f"function's async invoke config sends its records there (destinationConfig onSuccess/onFailure), "
            f"that no other consumer deletes them, and destination_timeout. GetAsyncTask's status "
            f"{task.status.value} stands."
        )
        if getattr(self, "destination_required", False) and task.is_successful:
            raise AirflowFailException(message + " destination_required=True: failing the task.")
        self.log.warning(message)
        return None

    @staticmethod
    def _push_record(context: Any, value: dict[str, Any]) -> None:
        ti = context.get("ti") if isinstance(context, Mapping) else None  # Airflow 2's Context: no dict
        if ti is not None:
            ti.xcom_push(key="destination_record", value=value)

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


def _saved_record(state: Any, request_id: str) -> dict[str, Any] | None:
    """The destination record of ``request_id`` an earlier try kept in the task state store, if any."""
    if state is None:
        return None
    try:
        saved = state.get(RECORD_KEY)
    except Exception:
        return None
    if isinstance(saved, dict) and (saved.get("requestContext") or {}).get("requestId") == request_id:
        return saved
    return None
