"""DAGs of the long reliability tests: one FC task that waits ``dag_run.conf["seconds"]``, blocking or deferred."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator

for _mode, _deferrable in (("blocking", False), ("deferrable", True)):
    with DAG(
        dag_id=f"rel_fc_{_mode}",
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        is_paused_upon_creation=False,
        tags=["reliability"],
    ) as _dag:
        FcInvokeAsyncOperator(
            task_id="invoke",
            function_name="long-wait",
            payload={"seconds": "{{ dag_run.conf.get('seconds', 120) }}"},
            deferrable=_deferrable,
            poll_interval=2,
            retries=0,
        )
    globals()[_dag.dag_id] = _dag


with DAG(
    dag_id="rel_fc_records",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["reliability"],
) as rel_fc_records:
    # 30 mapped deferred tasks, each with its destination record from one shared queue (issue 14)
    FcInvokeAsyncOperator.partial(
        task_id="invoke",
        function_name="rel-record",
        deferrable=True,
        poll_interval=2,
        destination_queue="rel-records",
        destination_timeout=300,  # a retry's record may still be held by the triggerer for the first try (120 s)
        destination_required=True,
        # Airflow's defer-exit race (README, Scaling out) fails a resumed task now and then on a loaded machine
        # ("finished with state success, but ... queued"): the documented mitigation, a retry that re-attaches
        retries=1,
        retry_delay=timedelta(seconds=5),
    ).expand(payload=[{"seconds": 2 + i % 5, "i": i} for i in range(30)])
