"""The FC async task of one Airflow task instance, read from the metadata DB (the task-instance view's source).

The operator pushes the extra link's URL (which names the function, the task id and the qualifier) before it waits,
deferred or not, so the XCom row of the task instance itself says which FC task it follows: no id is guessed.
The connection is not serialized with the DAG: while the task is deferred its trigger names it; otherwise the
caller's choice (default ``fc_default``) is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_fc_async.core.endpoints import parse_console_task_url
from airflow_fc_async.links import FcAsyncTaskLink

__all__ = ["TiFcTask", "fc_task_of"]


@dataclass(frozen=True)
class TiFcTask:
    function: str
    task_id: str
    qualifier: str
    conn_id: str | None
    """The trigger's connection while the task instance is deferred, else None (not recorded)."""
    ti_state: str | None
    destination_record: Any


def _xcom(session: Any, dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> Any:
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    row = session.scalar(
        select(XComModel).where(
            XComModel.dag_id == dag_id,
            XComModel.run_id == run_id,
            XComModel.task_id == task_id,
            XComModel.map_index == map_index,
            XComModel.key == key,
        )
    )
    return None if row is None else XComModel.deserialize_value(row)


def fc_task_of(dag_id: str, run_id: str, task_id: str, map_index: int) -> TiFcTask | None:
    """The FC task the task instance follows (or followed), None when it pushed no FC task link."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        url = _xcom(session, dag_id, run_id, task_id, map_index, FcAsyncTaskLink().xcom_key)
        ref = parse_console_task_url(url) if isinstance(url, str) else None
        if ref is None:
            return None
        ti = session.scalar(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.run_id == run_id,
                TaskInstance.task_id == task_id,
                TaskInstance.map_index == map_index,
            )
        )
        conn_id = None
        if ti is not None and ti.trigger_id is not None:
            trigger = session.get(Trigger, ti.trigger_id)
            kwargs = trigger.kwargs if trigger is not None else {}
            if kwargs.get("async_task_id") == ref[1]:
                conn_id = kwargs.get("fc_conn_id")
        record = _xcom(session, dag_id, run_id, task_id, map_index, "destination_record")
        if record is None:
            result = _xcom(session, dag_id, run_id, task_id, map_index, "return_value")
            record = result.get("destination_record") if isinstance(result, dict) else None
        state = ti.state if ti is not None else None
        return TiFcTask(*ref, conn_id, str(getattr(state, "value", state)) if state else None, record)
