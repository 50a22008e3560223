"""Everything that depends on the Airflow version, in one place.

- ``AIRFLOW_V_3_3_PLUS``: Airflow 3.3 added ``async BaseTrigger.on_kill`` (called on user actions only) and the
  task state store (``context["task_state_store"]``) behind ``ResumableJobMixin``.
- :func:`trigger_has_on_kill`: whether the triggerer calls ``on_kill``; before that, a trigger catches
  ``CancelledError`` and stops remote work only when its task instance is no longer deferred.
- :func:`task_state_store`: the 3.3 store, or None before (re-attach then relies on the ListAsyncTasks lookup).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "AIRFLOW2_DEFERRAL_TIMEOUT_ERROR",
    "AIRFLOW_V_3_3_PLUS",
    "USER_ACTION_CANCEL_MSG",
    "dag_run_clear_number",
    "is_deferral_timeout",
    "is_user_action_cancel",
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


@functools.cache
def trigger_has_on_kill() -> bool:
    """True when ``BaseTrigger`` defines ``on_kill`` (the triggerer then calls it on user actions)."""
    from airflow.triggers.base import BaseTrigger

    return callable(getattr(BaseTrigger, "on_kill", None))


def is_user_action_cancel(exc: BaseException) -> bool:
    return bool(exc.args) and exc.args[0] == USER_ACTION_CANCEL_MSG


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
