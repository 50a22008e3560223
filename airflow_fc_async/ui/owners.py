"""Which Airflow task instance started an FC async task: found through the extra link's XCom, proved by the id.

Our ids are ``<task_id_prefix(dag, task, run, map index)>-t<try>`` (core/task_ids.py): the operator pushes the
console URL (which holds the id) to XCom before it waits. A candidate row is accepted only when the id recomputed
from its own dag, task, run and map index is the FC task's id, so a look-alike id never borrows a DAG's rights.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from airflow_fc_async.core.task_ids import task_id_prefix
from airflow_fc_async.links import FcAsyncTaskLink

__all__ = ["TaskInstanceRef", "owners_of"]

_OURS = re.compile(r"^(?P<prefix>.+-[0-9a-f]{10})-t\d+$")


@dataclass(frozen=True)
class TaskInstanceRef:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int


def owners_of(fc_task_ids: Iterable[str]) -> dict[str, TaskInstanceRef]:
    """``{fc task id: task instance}`` for the ids that are provably ours (one metadata-DB query)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import String, cast, or_, select

    prefixes: dict[str, list[str]] = {}
    for fc_id in fc_task_ids:
        m = _OURS.match(fc_id)
        if m:
            prefixes.setdefault(m["prefix"], []).append(fc_id)
    if not prefixes:
        return {}
    query = select(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index).where(
        XComModel.key == FcAsyncTaskLink().xcom_key,
        or_(*(cast(XComModel.value, String).like(f"%{p}%") for p in prefixes)),
    )
    from airflow.models.dagrun import DagRun

    from airflow_fc_async.compat import dag_run_marker

    out: dict[str, TaskInstanceRef] = {}
    with create_session() as session:
        markers: dict[tuple[str, str], str | None] = {}
        for dag_id, run_id, task_id, map_index in session.execute(query).all():
            if (dag_id, run_id) not in markers:  # the generated ids fold the DAG run's marker into the hash
                dag_run = session.scalar(
                    select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)
                )
                markers[dag_id, run_id] = dag_run_marker({"dag_run": dag_run}) if dag_run else None
            for marker in {markers[dag_id, run_id], None}:
                for fc_id in prefixes.get(task_id_prefix(dag_id, task_id, run_id, map_index, marker), ()):
                    out[fc_id] = TaskInstanceRef(dag_id, run_id, task_id, map_index)
    return out
