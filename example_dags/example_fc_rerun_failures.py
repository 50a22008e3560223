"""Re-run yesterday's failures: list the Failed async tasks of the last 24 hours under a prefix, re-run each one
(same payload, new task id) as a mapped, deferrable task, and summarise what recovered.

The function and the prefix are DAG params, so the same DAG serves any nightly batch. Each re-run's id is derived
from its source task's id and this task instance, so a retry of a re-run re-attaches instead of running twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from airflow_fc_async.operators.fc import FcListAsyncTasksOperator, FcRerunAsyncTaskOperator

with DAG(
    dag_id="example_fc_rerun_failures",
    start_date=datetime(2024, 1, 1),
    schedule="@daily",
    catchup=False,
    params={"function_name": "batch-job", "prefix": "nightly-"},
    tags=["example", "fc"],
    doc_md=__doc__,
):
    failures = FcListAsyncTasksOperator(
        task_id="list_failures",
        function_name="{{ params.function_name }}",
        prefix="{{ params.prefix }}",
        status="Failed",
        started_after=timedelta(hours=24),
        limit=200,
    )

    @task
    def source_ids(rows: list[dict[str, Any]]) -> list[str]:
        print(f"{len(rows)} failed task(s) to re-run: {[r['task_id'] for r in rows]}")
        return [r["task_id"] for r in rows]

    reruns = FcRerunAsyncTaskOperator.partial(
        task_id="rerun",
        function_name="{{ params.function_name }}",
        deferrable=True,
        poll_interval=2,
        max_wait=600,
    ).expand(source_task_id=source_ids(failures.output))

    @task(trigger_rule="all_done")
    def summarise(results: list[dict[str, Any]] | None) -> dict[str, Any]:
        results = [r for r in (results or []) if r]
        recovered = [r["task_id"] for r in results if r.get("status") == "Succeeded"]
        print(f"re-ran {len(results)} task(s); recovered: {recovered}")
        return {"reran": len(results), "recovered": len(recovered)}

    summarise(reruns.output)  # type: ignore[arg-type]
