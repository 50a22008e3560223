"""The seed scenario's dead letter: read the destination record of a failed run into XCom and print why it failed.

``my-fc-job`` sleeps past its 3 s timeout; FC retries it once, then sends the record to its onFailure queue
``fc-dlq``. The invoke returns at once (``wait_for_completion=False``); ``FcDestinationSensor`` resolves the
task's request id with GetAsyncTask and waits for that one record on the shared queue (other messages there,
such as other runs' dead letters, are left alone), stores it in XCom, then deletes it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.providers.common.compat.sdk import DAG, task

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.sensors.mns import FcDestinationSensor

with DAG(
    dag_id="example_fc_dead_letter",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    tags=["example", "fc", "mns"],
    doc_md=__doc__,
):
    invoke = FcInvokeAsyncOperator(
        task_id="invoke",
        function_name="my-fc-job",
        payload={"failure": True},
        wait_for_completion=False,
    )
    dead_letter = FcDestinationSensor(
        task_id="dead_letter",
        queue_name="fc-dlq",
        function_name="my-fc-job",
        async_task_id="{{ ti.xcom_pull(task_ids='invoke')['task_id'] }}",
        poke_interval=5,
        timeout=120,
        deferrable=True,
    )

    @task
    def report(record: dict[str, Any]) -> str:
        context = record["requestContext"]
        line = (
            f"condition={context['condition']!r} invokeCount={context['approximateInvokeCount']} "
            f"responsePayload={record['responsePayload']!r}"
        )
        print(line)
        return line

    invoke >> dead_letter
    report(dead_letter.output)
