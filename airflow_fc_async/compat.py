"""Everything that depends on the Airflow version, in one place.

- ``AIRFLOW_V_3_3_PLUS``: Airflow 3.3 added ``async BaseTrigger.on_kill`` (called on user actions only) and the
  task state store (``context["task_state_store"]``) behind ``ResumableJobMixin``.
- :func:`trigger_has_on_kill`: whether the triggerer calls ``on_kill``; before that, a trigger catches
  ``CancelledError`` and stops remote work only when its task instance is no longer deferred.
- :func:`task_state_store`: the 3.3 store, or None before (re-attach then relies on the ListAsyncTasks lookup).
- :func:`context_task_instance`: the ``ti`` of a context, a dict on 3 and a ``Mapping`` (no dict) on 2.
- :func:`require_event_driven_scheduling`: event triggers (``BaseEventTrigger``, asset watchers) are 3.0+;
  :func:`shared_stream_ack_mode`: 3.3 added shared streams with a persist-gated ack (``airflow.triggers.shared_stream``).
- :func:`finalize_pushes_links`: Airflow 3's task runner pushes every extra link's value to XCom when the task
  process ends (its finalize step, deferral included); Airflow 2's webserver only reads what the task pushed.
- :func:`cancel_stops_remote_work`: before 3.3 a cancelled trigger itself tells a user's action from a restart.
- :func:`is_deferral_timeout`: which exception of ``resume_execution`` is a deferral timeout (none of its own on 2).
- :func:`aget_connection`: common-compat's async connection lookup, or the sync one in a thread (older provider).
- :func:`connection_form_widgets`: Airflow 2's connection form (3.2+ reads ``conn-fields`` from the provider info).
- :func:`is_xcom_arg`: ``XComArg`` lives in the task SDK on 3, in ``airflow.models`` on 2.

One branch lives elsewhere: ``get_provider_info`` (Airflow 3's event trigger and queue) reads the version from
package metadata itself, because provider discovery imports that module and it imports nothing, this one included.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = [
    "AIRFLOW2_DEFERRAL_TIMEOUT_ERROR",
    "AIRFLOW_V_3_3_PLUS",
    "USER_ACTION_CANCEL_MSG",
    "aget_connection",
    "cancel_stops_remote_work",
    "connection_form_widgets",
    "context_task_instance",
    "dag_run_clear_number",
    "dag_run_marker",
    "finalize_pushes_links",
    "is_deferral_timeout",
    "is_user_action_cancel",
    "is_xcom_arg",
    "require_event_driven_scheduling",
    "shared_stream_ack_mode",
    "task_deferral_timeout",
    "task_instance_still_deferred",
    "task_state_store",
    "trigger_has_on_kill",
]

USER_ACTION_CANCEL_MSG = "__airflow_user_action__"
"""The message the 3.3 triggerer cancels a trigger with when a user acted on its task (then it calls on_kill)."""


def _airflow_version() -> tuple[int, int]:
    from airflow import __version__

    parts = [*(int(p) for p in __version__.split(".")[:2] if p.isdigit()), 0, 0]
    return parts[0], parts[1]


try:
    from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS
except ImportError:  # an older common-compat provider
    AIRFLOW_V_3_3_PLUS = _airflow_version() >= (3, 3)


EVENT_DRIVEN_MIN_VERSION = (3, 0)


def require_event_driven_scheduling(module: str) -> None:
    """Raise ImportError naming the required Airflow version when event-driven scheduling is missing (2.x)."""
    if _airflow_version() < EVENT_DRIVEN_MIN_VERSION:
        from airflow import __version__

        raise ImportError(
            f"{module} needs Apache Airflow 3.0 or later (event-driven scheduling: BaseEventTrigger, "
            f"AssetWatcher); this is Airflow {__version__}. The rest of airflow-fc-async works on it."
        )


@functools.cache
def shared_stream_ack_mode() -> bool:
    """True when the triggerer shares event-trigger streams and confirms persisted events (Airflow 3.3+)."""
    try:
        from airflow.triggers.shared_stream import AdvanceOutcome, reject_shared_stream_event  # noqa: F401
    except ImportError:
        return False
    return True


def ui_plugin_supported() -> bool:
    """The UI plugin (``fastapi_apps`` + ``external_views`` with destinations) needs Airflow 3.1+."""
    return _airflow_version() >= (3, 1)


@functools.cache
def finalize_pushes_links() -> bool:
    return _airflow_version() >= (3, 0)


def trigger_has_on_kill() -> bool:
    """True when ``BaseTrigger`` defines ``on_kill`` (the triggerer then calls it on user actions)."""
    from airflow.triggers.base import BaseTrigger

    return callable(getattr(BaseTrigger, "on_kill", None))


def is_user_action_cancel(exc: BaseException) -> bool:
    return bool(exc.args) and exc.args[0] == USER_ACTION_CANCEL_MSG


async def cancel_stops_remote_work(exc: BaseException, task_instance: Any) -> bool:
    """Whether a trigger cancelled with ``exc`` stops its remote work itself (when its user asked for that).

    Only before 3.3 (no ``on_kill``): then only a task instance that left DEFERRED means a user acted; one still
    DEFERRED is a triggerer restart, and its remote work goes on under the next triggerer. From 3.3 ``on_kill``
    does it, and a cancel is never a reason to stop.
    """
    if trigger_has_on_kill() or is_user_action_cancel(exc):
        return False
    return not await task_instance_still_deferred(task_instance)


AIRFLOW2_DEFERRAL_TIMEOUT_ERROR = "Trigger/execution timeout"
"""Airflow 2's ``next_kwargs["error"]`` for a timed-out deferral (it raises ``TaskDeferralError`` with it)."""


def task_deferral_timeout() -> type[Exception]:
    """The exception ``resume_execution`` raises for a deferral timeout.

    ``TaskDeferralTimeout`` (task SDK on 3.3, core on 3.0-3.2); Airflow 2 has none and raises ``TaskDeferralError``
    for every failed deferral: :func:`is_deferral_timeout` tells a timeout from a trigger failure there.
    """
    try:
        from airflow.sdk.exceptions import TaskDeferralTimeout
    except ImportError:
        try:
            from airflow.exceptions import TaskDeferralTimeout  # type: ignore[no-redef]
        except ImportError:  # Airflow 2
            from airflow.exceptions import TaskDeferralError as TaskDeferralTimeout  # type: ignore[no-redef]
    return TaskDeferralTimeout


def is_deferral_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (raised by ``resume_execution``) means the deferral timed out."""
    cls = task_deferral_timeout()
    if not isinstance(exc, cls):
        return False
    return cls.__name__ == "TaskDeferralTimeout" or str(exc) == AIRFLOW2_DEFERRAL_TIMEOUT_ERROR


def is_xcom_arg(value: Any) -> bool:
    """Whether ``value`` is an ``XComArg`` (an operator argument resolved only when the task runs)."""
    try:
        from airflow.sdk.definitions.xcom_arg import XComArg
    except ImportError:  # pragma: no cover - Airflow 2
        from airflow.models.xcom_arg import XComArg
    return isinstance(value, XComArg)


async def aget_connection(conn_id: str, hook: type[Any]) -> tuple[Any, dict[str, Any]]:
    """A connection and its extras, read without blocking the event loop (a trigger's hook)."""
    try:
        from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
    except ImportError:  # an older common-compat provider: the sync lookup, in a thread
        from airflow.providers.common.compat.sdk import BaseHook
        from asgiref.sync import sync_to_async

        conn = await sync_to_async(BaseHook.get_connection)(conn_id)
        extra = await sync_to_async(lambda: conn.extra_dejson)()
    else:
        conn = await get_async_connection(conn_id, hook=hook)
        extra = await get_async_extra_dejson(conn)
    return conn, extra


def connection_form_widgets(labels: Mapping[str, str], secrets: Collection[str]) -> dict[str, Any]:
    """Airflow 2's connection form: a Flask-AppBuilder text field per extra (``{name: label}``), a password field
    for each name in ``secrets``. Airflow 3.2+ builds its form from ``conn-fields`` in the provider info."""
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import PasswordField, StringField

    def widget(name: str, label: str) -> Any:
        if name in secrets:
            return PasswordField(lazy_gettext(label), widget=BS3PasswordFieldWidget())
        return StringField(lazy_gettext(label), widget=BS3TextFieldWidget())

    return {name: widget(name, label) for name, label in labels.items()}


def context_task_instance(context: Any) -> Any | None:
    """The task instance (``ti``) of ``context``, or None when it is no mapping (a caller without a context).

    Airflow 3's Context is a dict; Airflow 2's is a ``MutableMapping`` that is no dict.
    """
    return context.get("ti") if isinstance(context, Mapping) else None


def task_state_store(context: Mapping[str, Any]) -> Any | None:
    """The task state store of the running try (Airflow 3.3+), or None."""
    try:
        return context.get("task_state_store")
    except Exception:  # a Context that raises KeyError-like errors on older versions
        return None


def dag_run_clear_number(context: Mapping[str, Any]) -> int | None:
    """How often the DAG run was cleared (Airflow 3: ``DagRun.clear_number``), or None when unknown."""
    try:
        number = getattr(context.get("dag_run"), "clear_number", None)
    except Exception:
        return None
    return number if isinstance(number, int) else None


def dag_run_marker(context: Mapping[str, Any]) -> str | None:
    """What tells this DAG run from an earlier one under the same run id, when Airflow keeps anything.

    A DAG run can be deleted and created again under its run id (``airflow dags test DAG DATE`` twice): the
    generated FC task ids fold this marker in, so the new run usually does not meet the old run's tasks. Airflow 3:
    ``run_after``; Airflow 2: the DAG run's database id and start date. Neither is sure (``dags test`` with the same
    date may repeat both), so a 409 is still never taken as this run's without the task state store.
    """
    try:
        dag_run = context.get("dag_run")
    except Exception:
        return None
    run_after = getattr(dag_run, "run_after", None)
    if isinstance(run_after, datetime):
        return f"a{_epoch_us(run_after)}"
    parts = []
    run_db_id = getattr(dag_run, "id", None)
    if isinstance(run_db_id, int):
        parts.append(f"i{run_db_id}")
    start = getattr(dag_run, "start_date", None)
    if isinstance(start, datetime):
        parts.append(f"s{_epoch_us(start)}")
    return "-".join(parts) or None


def _epoch_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1_000_000)


async def task_instance_still_deferred(task_instance: Any) -> bool:
    """Whether the trigger's task instance is still DEFERRED (a triggerer restart), for Airflow before 3.3.

    When the state cannot be read the answer is True: better leave a remote task running than stop it on a
    mere restart.
    """
    if task_instance is None:
        return True
    from asgiref.sync import sync_to_async

    try:
        if _airflow_version() >= (3, 0):
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=task_instance.dag_id,
                map_index=task_instance.map_index,
                task_ids=[task_instance.task_id],
                run_ids=[task_instance.run_id],
            )
            mi = task_instance.map_index
            key = task_instance.task_id if mi is None or mi < 0 else f"{task_instance.task_id}_{mi}"
            state = states.get(task_instance.run_id, {}).get(key)
        else:  # pragma: no cover - Airflow 2
            state = await sync_to_async(_airflow2_ti_state)(task_instance)
    except Exception:
        return True
    return str(state).lower() in ("deferred", "taskinstancestate.deferred")


def _airflow2_ti_state(task_instance: Any) -> Any:  # pragma: no cover - Airflow 2
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(
                dag_id=task_instance.dag_id,
                task_id=task_instance.task_id,
                run_id=task_instance.run_id,
                map_index=task_instance.map_index,
            )
            .one_or_none()
        )
        return ti.state if ti else None
