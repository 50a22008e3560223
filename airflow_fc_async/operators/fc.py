"""Operators for FC async tasks.

Importing this module is cheap (a DAG file is parsed every few seconds): the hook, the HTTP libraries, the trigger
and the core modules a running task needs (models, task ids, progress, ``operators.outcome``) are imported inside the methods that use
them (``tests/unit/test_parse_time_imports.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, conf

from airflow_fc_async.core.durations import coerce_seconds
from airflow_fc_async.core.errors import FcError, FcTaskIdInUseError, FcValidationError, task_id_in_use
from airflow_fc_async.links import FcAsyncTaskLink
from airflow_fc_async.operators.following import FcAsyncTaskMixin

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_fc_async.core.models import AsyncTask
    from airflow_fc_async.operators.outcome import TaskRef
    from airflow_fc_async.operators.reattach import EarlierTries

__all__ = ["FcInvokeAsyncOperator"]


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


class FcInvokeAsyncOperator(FcAsyncTaskMixin, BaseOperator):
    """Invoke an FC function asynchronously and follow the task to its end.

    :param function_name: the FC function (templated).
    :param payload: the event: dict or list (sent as compact JSON), str, bytes, or an XComArg (templated).
    :param qualifier: version or alias (templated).
    :param async_task_id: the FC task id (templated); by default a deterministic id per dag, task, run, map
        index and try (see ``airflow_fc_async.core.task_ids``), which makes a repeated invoke harmless and lets
        a retry find an earlier try's task.
    :param wait_for_completion: False returns ``{"task_id", "request_id", "status": "Enqueued"}`` at once.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param poll_interval: longest gap between status reads (seconds or timedelta); reads start about 1 s
        after the invoke and back off to it.
    :param max_wait: give up (and stop the FC task) after this long (seconds or timedelta); None: no limit.
    :param stop_on_kill: stop the FC task when the Airflow task is killed.
    :param destination_queue: the MNS queue (name) of the function's onSuccess/onFailure destination (templated):
        the task's record from it goes into XCom (``destination_record``), and a failure message quotes it. The
        queue may be shared: other messages are handed back untouched.
    :param destination_timeout: how long to wait for that record after the terminal status (seconds or
        timedelta). Not waited for when FC reports ``destinationStatus`` Failed (it did not deliver it). In
        deferrable mode the trigger waits for it (one receiver per triggerer serves all deferred tasks).
    :param destination_required: what a task whose record never came does: False (default) succeeds with a
        warning naming the queue, the request id and what to check; True fails (AirflowFailException).
    :param stream_logs: show the function's own log lines (stdout, stderr) in the task log while the task runs,
        each line once, in order, prefixed by the attempt (``[attempt 2] ...``); read from the SLS logstore of the
        function's ``logConfig``. Deferrable too: the trigger carries the lines to the task log. No logConfig:
        one warning, the task goes on; a GetLogs error never fails the task.
    :param log_project: the SLS project to read (templated; default: GetFunction's ``logConfig.project``).
    :param log_store: the SLS logstore to read (templated; default: ``logConfig.logstore``).
    :param log_wait: after the end, how long to keep reading for the last attempt's End line (seconds).
    :param fc_conn_id: the Airflow connection.

    The XCom return value: ``{"task_id", "request_id", "status", "return_payload", "destination_record"}``.
    """

    template_fields: Sequence[str] = (
        "function_name",
        "payload",
        "qualifier",
        "async_task_id",
        "destination_queue",
        "log_project",
        "log_store",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"payload": "json"}
    operator_extra_links = (FcAsyncTaskLink(),)
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        function_name: str,
        payload: Any = None,
        qualifier: str = "LATEST",
        async_task_id: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | timedelta = 15,
        max_wait: float | timedelta | None = None,
        stop_on_kill: bool = True,
        destination_queue: str | None = None,
        destination_timeout: float | timedelta = 30,
        destination_required: bool = False,
        stream_logs: bool = False,
        log_project: str | None = None,
        log_store: str | None = None,
        log_wait: float | timedelta = 30,
        fc_conn_id: str = "fc_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(function_name, str) or not function_name.strip():
            raise ValueError(f"function_name must be a non-empty string, got {function_name!r}")
        if not isinstance(qualifier, str) or not qualifier.strip():
            raise ValueError(f"qualifier must be a non-empty string, got {qualifier!r}")
        if async_task_id is not None and not _templated(async_task_id):
            from airflow_fc_async.core import task_ids

            task_ids.validate_task_id("async_task_id", async_task_id)
        _check_payload(payload)
        self.function_name = function_name
        self.payload = payload
        self.qualifier = qualifier
        self.async_task_id = async_task_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = coerce_seconds("poll_interval", poll_interval, allow_none=False) or 15.0
        self.max_wait = coerce_seconds("max_wait", max_wait)
        self.stop_on_kill = stop_on_kill
        self.destination_queue = destination_queue
        self.destination_timeout = coerce_seconds("destination_timeout", destination_timeout) or 30.0
        self.destination_required = bool(destination_required)
        self.stream_logs = bool(stream_logs)
        self.log_project = log_project
        self.log_store = log_store
        self.log_wait = coerce_seconds("log_wait", log_wait) or 30.0
        self.fc_conn_id = fc_conn_id

    # -- execute -----------------------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_fc_async import compat
        from airflow_fc_async.core import task_ids
        from airflow_fc_async.operators.outcome import TaskRef
        from airflow_fc_async.operators.reattach import EarlierTries

        ti = context["ti"]
        prefix, explicit = self._task_id_prefix(context)
        try_number = int(ti.try_number or 1)

        tries = EarlierTries(
            context, self.hook, self.function_name, self.qualifier, self.log, stop_on_kill=self.stop_on_kill
        )
        earlier = tries.find(prefix, try_number, explicit)
        first_read: AsyncTask | None = None
        if earlier is not None:
            ref = TaskRef(self.function_name, self.qualifier, earlier.task_id, earlier.request_id)
            first_read = earlier
            if earlier.is_successful:
                self.log.info(
                    "FC task %s of an earlier try already succeeded: returning its result, no new invoke",
                    earlier.task_id,
                )
        else:
            own_id = (
                task_ids.explicit_try_task_id(prefix, try_number)
                if explicit
                else task_ids.try_task_id(prefix, try_number)
            )
            # written ahead: a repeat of this try finds its own id here, the proof that a 409 is its own task
            tries.remember(TaskRef(self.function_name, self.qualifier, own_id))
            ref, first_read = self._invoke(own_id, explicit, tries)
        tries.remember(ref)
        url = self.console_url(ref)
        if url:
            self.log.info("FC console: %s", url)
        self._link_url(context, url, persist=not (self.deferrable and compat.finalize_pushes_links()))
        if first_read is not None and first_read.is_successful:
            self._start_following(ref)
            return self.finish(context, ref, first_read)
        if not self.wait_for_completion:
            status = first_read.status.value if first_read is not None else "Enqueued"
            return {"task_id": ref.task_id, "request_id": ref.request_id, "status": status}
        return self.follow(context, ref, first_read)

    def _task_id_prefix(self, context: Context) -> tuple[str, bool]:
        """``(prefix of this task instance's FC task ids, whether the user gave the id)``."""
        from airflow_fc_async import compat
        from airflow_fc_async.core import task_ids

        if self.async_task_id is not None:
            try:
                return task_ids.validate_task_id("async_task_id", str(self.async_task_id)), True
            except FcValidationError as err:  # a rendered template: no retry renders it differently
                raise AirflowFailException(f"async_task_id rendered to an invalid task id: {err}") from None
        ti = context["ti"]
        marker = compat.dag_run_marker(context)
        return task_ids.task_id_prefix(ti.dag_id, ti.task_id, context["run_id"], ti.map_index, marker), False

    def _invoke(self, task_id: str, explicit: bool, tries: EarlierTries) -> tuple[TaskRef, AsyncTask | None]:
        """Invoke. A taken id (409) is attached to only when the client matched the payload and the task is
        provably this request (:meth:`EarlierTries.not_this_request`); otherwise the try fails at once
        (``task_id_in_use``)."""
        from airflow_fc_async.operators.outcome import TaskRef, airflow_error

        self.log.info(
            "Invoking FC function %s (qualifier %s) as async task %s with event: %s",
            self.function_name,
            self.qualifier,
            task_id,
            _describe_payload(self.payload),
        )
        try:
            inv = self.hook.invoke_async(
                self.function_name, _wire_payload(self.payload), qualifier=self.qualifier, task_id=task_id
            )
        except FcError as err:
            if isinstance(err, FcTaskIdInUseError) and not explicit:  # the advice for a generated id
                raise AirflowFailException(err.message_for(generated=True)) from err
            raise airflow_error(err, f"Invoking FC function {self.function_name}") from err
        if inv.existing is None:
            self.log.info("FC accepted async task %s (request id %s)", inv.task_id, inv.request_id)
            return TaskRef(self.function_name, self.qualifier, inv.task_id, inv.request_id), None
        why = tries.not_this_request(inv, explicit)
        if why:  # only a generated id gets here: a caller's id with this payload is its idempotency key
            raise AirflowFailException(task_id_in_use(task_id, self.function_name, why, generated=True))
        self.log.info(
            "FC task %s exists already with this payload (%s): attaching to it",
            task_id,
            "this call's earlier attempt" if inv.conflict == "retry" else "the same id used before",
        )
        return TaskRef(self.function_name, self.qualifier, task_id, inv.request_id), inv.existing


_PAYLOAD_TYPES = (dict, list, str, bytes)
"""What an invoke sends as is (dict and list as compact JSON); an XComArg renders to one of them."""


def _check_payload(payload: Any) -> None:
    """At DAG-parse time: a payload of a type the invoke can send, or an XComArg that renders to one."""
    if payload is None or isinstance(payload, _PAYLOAD_TYPES):
        return
    from airflow_fc_async import compat  # only for what is not plainly sendable: a DAG parse rarely needs it

    if not compat.is_xcom_arg(payload):
        raise ValueError(
            f"payload must be a dict, list, str, bytes or an XComArg, got {type(payload).__name__}"
        )


def _wire_payload(payload: Any) -> Any:
    """At run time: the rendered payload as sent; any other type fails the task (no retries)."""
    if payload is None:
        return b""
    if isinstance(payload, _PAYLOAD_TYPES):
        return payload
    raise AirflowFailException(
        f"payload rendered to a {type(payload).__name__}; expected a dict, list, str or bytes"
    )


def _describe_payload(payload: Any) -> str:
    import json

    from airflow_fc_async.core.progress import truncate

    if payload is None:
        return "(empty)"
    if isinstance(payload, bytes):
        text = payload.decode("utf-8", "replace")
    elif isinstance(payload, str):
        text = payload
    else:
        text = json.dumps(payload, separators=(",", ":"), default=str)
    return truncate(text, 1024)


_ELSEWHERE = {
    "FcAsyncInvokeConfigOperator": "airflow_fc_async.operators.config",
    "FcListAsyncTasksOperator": "airflow_fc_async.operators.history",
    "FcStopAsyncTaskOperator": "airflow_fc_async.operators.stop",
    "FcRerunAsyncTaskOperator": "airflow_fc_async.operators.rerun",
}


def __getattr__(name: str) -> Any:
    """Every operator is importable from ``operators.fc`` (the README's public names); the management ones live in
    their own modules, loaded on first use."""
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
