"""A function without ``asyncTask: true``: FC accepts the invoke, then GetAsyncTask 404s. The task fails at once
with a message that says why and how to fix it (issue 13 item 11). Real ``dag.test()`` against the emulator."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pendulum
import pytest

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from tests.e2e.conftest import run_dag, task_instance

START = pendulum.datetime(2024, 1, 1, tz="UTC")


@pytest.mark.parametrize(
    ("config", "deferrable"),
    [(None, False), ({"maxAsyncRetryAttempts": 0}, True)],
    ids=["no_config_blocking", "no_async_task_deferrable"],
)
def test_a_404_after_an_accepted_invoke_names_the_missing_async_task_config(
    fc_conn: Any, capsys: pytest.CaptureFixture[str], config: Any, deferrable: bool
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    name = f"norecords-{uuid.uuid4().hex[:8]}"
    fc_conn.deploy(
        name,
        source="def handler(event, context):\n    return 'ran'\n",
        **({"async_invoke_config": config} if config else {}),
    )
    with DAG(f"e2e_{name.replace('-', '_')}", schedule=None, start_date=START, catchup=False) as dag:
        FcInvokeAsyncOperator(
            task_id="invoke",
            function_name=name,
            poll_interval=1,
            deferrable=deferrable,
            retries=2,
            retry_delay=timedelta(0),
        )
    dr = run_dag(dag)
    ti = task_instance(dr, "invoke")
    out = capsys.readouterr().out
    assert f"function {name} (qualifier LATEST)" in out
    assert "asyncTask: true" in out and "FcAsyncInvokeConfigOperator" in out and "async_task=True" in out
    assert dr.state == "failed" and ti.try_number == 1  # AirflowFailException: a retry cannot help
