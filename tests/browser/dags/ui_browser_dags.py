"""The browser test's DAGs: a deferred task that waits on FC (the one the user stops), and one that fails.

Both use connection ``fc_ui`` (the deployment defines no ``fc_default``): the task-instance tab must take the
deferred task's connection from its trigger, and the user types it for the others."""

from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator

START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("ui_browser_wait", schedule=None, start_date=START, is_paused_upon_creation=False, tags=["fc"]):
    FcInvokeAsyncOperator(
        task_id="invoke",
        function_name="ui-wait",
        payload={"seconds": 400},
        deferrable=True,
        poll_interval=2,
        fc_conn_id="fc_ui",
    )

with DAG("ui_browser_fail", schedule=None, start_date=START, is_paused_upon_creation=False, tags=["fc"]):
    FcInvokeAsyncOperator(
        task_id="invoke",
        function_name="ui-fail",
        payload={"why": "a failure to re-run"},
        poll_interval=1,
        fc_conn_id="fc_ui",
    )
