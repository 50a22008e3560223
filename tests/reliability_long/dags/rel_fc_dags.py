"""DAGs of the long reliability tests: one FC task that waits ``dag_run.conf["seconds"]``, blocking or deferred."""

from __future__ import annotations

from datetime import datetime

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
