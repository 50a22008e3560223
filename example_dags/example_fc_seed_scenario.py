"""The seed scenario: a function that outlives its timeout.

`my-fc-job` sleeps past its timeout. The DAG sets its async config as code (one retry, dead letters to the
`fc-dlq` queue), invokes it with `{"failure": true}`, and the run fails after FC's retry: the task log shows every
state change (Enqueued -> Dequeued -> Running -> Retrying -> Failed) and the timeout message, and the failure
names the function, task id, request id and console link. With ``stream_logs=True`` the task log also shows the
function's own lines from its SLS logstore (``logConfig``), prefixed ``[attempt 1]`` and ``[attempt 2]``, each ending
with FC's ``FC Invoke End RequestId: ..., Error: Function timed out after 3 seconds`` line.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_fc_async.operators.fc import FcAsyncInvokeConfigOperator, FcInvokeAsyncOperator

with DAG(
    dag_id="example_fc_seed_scenario",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    catchup=False,
    tags=["example", "fc", "expect:failed"],
    doc_md=__doc__,
):
    config = FcAsyncInvokeConfigOperator(
        task_id="async_config",
        function_name="my-fc-job",
        async_task=True,
        max_async_retry_attempts=1,
        max_async_event_age_in_seconds=172800,
        on_success="fc-dlq",
        on_failure="fc-dlq",
    )
    invoke = FcInvokeAsyncOperator(
        task_id="invoke_my_fc_job",
        function_name="my-fc-job",
        payload={"failure": True},
        poll_interval=2,
        max_wait=120,
        stream_logs=True,  # the handler's own lines and the timeout, per attempt, in this task's log
        log_wait=10,
    )
    config >> invoke
