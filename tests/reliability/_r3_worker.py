"""A worker process for R3 (run as ``python -m tests.reliability._r3_worker MODE DAG_ID FUNCTION PAYLOAD_JSON``).

``first``: ``dag.test()`` of a one-task DAG (``retries=1``): try 1 invokes and waits (the test kills this process
with SIGKILL mid-wait). ``next``: continue the same DAG run the way ``dag.test()``'s own loop and the scheduler
do: ``DagRun.update_state`` picks the task instance (up_for_retry after the kill), the try number goes up, and
``_run_task`` (what ``dag.test()`` and ``airflow tasks test`` call) runs the next try in this process.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from typing import Any

import pendulum

LOGICAL_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")


def build_dag(dag_id: str, function: str, payload: dict[str, Any]) -> Any:
    from airflow.sdk import DAG

    from airflow_fc_async.operators.fc import FcInvokeAsyncOperator

    with DAG(dag_id, schedule=None, start_date=LOGICAL_DATE, catchup=False) as dag:
        FcInvokeAsyncOperator(
            task_id="invoke",
            function_name=function,
            payload=payload,
            poll_interval=0.5,
            retries=1,
            retry_delay=timedelta(0),
        )
    return dag


def first(dag: Any) -> None:
    from tests.e2e.conftest import run_dag

    dr = run_dag(dag)  # SIGKILLed before it returns
    print(f"R3-WORKER first try ended: dag run {dr.state}", flush=True)


def next_try(dag: Any) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with create_session() as session:
        (dr,) = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).all()
        dr.dag = scheduler_dag
        schedulable, _ = dr.update_state(session=session)
        for ti in schedulable:  # as dag.test()'s loop (and the scheduler) do
            ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        ti = dr.get_task_instance("invoke", session=session)
        assert ti is not None and ti.state == TaskInstanceState.SCHEDULED, ti and ti.state
        ti.task = scheduler_dag.get_task("invoke")
        print(f"R3-WORKER running try {ti.try_number}", flush=True)
        _run_task(ti=ti, task=dag.task_dict["invoke"], run_triggerer=True)
        session.expire_all()
        ti = dr.get_task_instance("invoke", session=session)
        print(f"R3-WORKER try {ti.try_number} ended: {ti.state}", flush=True)


if __name__ == "__main__":
    mode, dag_id, function, payload = sys.argv[1:5]
    the_dag = build_dag(dag_id, function, json.loads(payload))
    first(the_dag) if mode == "first" else next_try(the_dag)
