"""Fire and check later: invoke without waiting, then a sensor in reschedule mode frees the worker between checks.

Useful when the invoking DAG should not hold a worker while a long job runs, or when the task id comes from
elsewhere (another DAG, a person who started the run by hand): the sensor takes any async task id.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.sensors.fc import FcAsyncTaskSensor

with DAG(
    dag_id="example_fc_sensor",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    tags=["example", "fc"],
    doc_md=__doc__,
):
    start = FcInvokeAsyncOperator(
        task_id="start_job",
        function_name="batch-job",
        payload={"name": "report", "text": "one two three four", "extra_seconds": 3},
        wait_for_completion=False,
    )
    wait = FcAsyncTaskSensor(
        task_id="wait_for_job",
        function_name="batch-job",
        async_task_id="{{ ti.xcom_pull(task_ids='start_job')['task_id'] }}",
        mode="reschedule",
        poke_interval=2,
        timeout=300,
    )
    start >> wait
