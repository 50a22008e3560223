"""DAGs of the deployment tier (CeleryExecutor, two workers, two triggerers).

- ``dep_fc_mapped``: ``conf["count"]`` deferrable invocations of ``dep-wait`` (mapped), each waiting for its
  destination record on the shared queue ``dep-results``;
- ``dep_fc_blocking`` / ``dep_fc_deferrable``: one invocation waiting ``conf["seconds"]``, no retry (user actions);
- ``dep_fc_retry``: one blocking invocation with one retry (a worker SIGKILLed mid-wait; the retry re-attaches).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator

_DEFAULTS: dict[str, Any] = {
    "schedule": None,
    "start_date": datetime(2024, 1, 1),
    "catchup": False,
    "is_paused_upon_creation": False,
    "tags": ["deployment"],
}

with DAG(dag_id="dep_fc_mapped", max_active_tasks=64, **_DEFAULTS):

    @task
    def items(**context: Any) -> list[dict[str, Any]]:
        conf = context["dag_run"].conf or {}
        return [{"item": i, "seconds": conf.get("seconds", 10)} for i in range(int(conf.get("count", 50)))]

    FcInvokeAsyncOperator.partial(
        task_id="invoke",
        function_name="dep-wait",
        deferrable=True,
        poll_interval=2,
        destination_queue="dep-results",
        destination_timeout=30,
        retries=0,
    ).expand(payload=items())

for _mode, _deferrable, _retries in (("blocking", False, 0), ("deferrable", True, 0), ("retry", False, 1)):
    with DAG(dag_id=f"dep_fc_{_mode}", **_DEFAULTS) as _dag:
        FcInvokeAsyncOperator(
            task_id="invoke",
            function_name="dep-wait",
            payload={"item": _mode, "seconds": "{{ dag_run.conf.get('seconds', 60) }}"},
            deferrable=_deferrable,
            poll_interval=2,
            retries=_retries,
            retry_delay=timedelta(seconds=2),
        )
    globals()[_dag.dag_id] = _dag
