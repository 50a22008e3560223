"""FcInvokeAsyncOperator end to end: real Airflow ``dag.test()`` on SQLite against the emulator over HTTP."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pendulum
import pytest
import requests

from airflow_fc_async import compat
from airflow_fc_async.core import task_ids
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.sensors.fc import FcAsyncTaskSensor
from tests.e2e.conftest import run_dag, task_instance

START = pendulum.datetime(2024, 1, 1, tz="UTC")


def dag_with(dag_id: str, **op_kwargs: Any) -> Any:
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        FcInvokeAsyncOperator(task_id="invoke", poll_interval=1, **op_kwargs)
    return dag


def ids_of(emu: Any, dag_id: str) -> dict[str, int]:
    """Executions per FC task id of this DAG's tasks (the emulator's stats)."""
    return {k: v for k, v in emu.stats()["executions"].items() if k.startswith(f"{dag_id}-invoke-")}


def test_blocking_success(fc_conn: Any) -> None:
    dr = run_dag(dag_with("e2e_blocking", function_name="echo", payload={"hello": "fc"}))
    assert dr.state == "success"
    ti = task_instance(dr, "invoke")
    result = ti.xcom_pull(task_ids="invoke")
    assert result["status"] == "Succeeded"
    assert result["return_payload"] == {"hello": "fc"}
    assert result["destination_record"] is None
    assert result["task_id"].startswith("e2e_blocking-invoke-") and result["task_id"].endswith("-t1")
    link = ti.xcom_pull(task_ids="invoke", key="fc_async_task_url")
    assert result["task_id"] in link and "/_console/" in link
    page = requests.get(link, timeout=30)  # the extra link opens the emulator's console page, no credential
    assert page.status_code == 200 and "Succeeded" in page.text
    assert ids_of(fc_conn, "e2e_blocking") == {result["task_id"]: 1}


def test_deferrable_success(fc_conn: Any, capsys: pytest.CaptureFixture[str]) -> None:
    dag = dag_with("e2e_deferrable", function_name="sleeper", payload={"seconds": 1.5}, deferrable=True)
    dr = run_dag(dag)
    assert dr.state == "success"
    result = task_instance(dr, "invoke").xcom_pull(task_ids="invoke")
    assert result["status"] == "Succeeded"
    assert result["return_payload"] == {"slept": 1.5}
    out = capsys.readouterr().out
    assert "Deferring" in out
    assert out.count("Running -> Succeeded") >= 1  # told by the trigger, then in the task log


def test_failing_function_fails_the_task_with_the_message(
    fc_conn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dr = run_dag(dag_with("e2e_failing", function_name="failer", payload="x"))
    assert dr.state == "failed"
    assert task_instance(dr, "invoke").state == "failed"
    out = capsys.readouterr().out
    assert "ended Failed" in out and "function failer" in out and "qualifier LATEST" in out
    assert "Retrying (attempt 2)" in out  # the FC-side retry is part of the story


def test_a_failed_first_try_invokes_anew_never_a_false_success(fc_conn: Any) -> None:
    dag = dag_with(
        "e2e_retry_failed", function_name="failer", payload="y", retries=1, retry_delay=timedelta(0)
    )
    dr = run_dag(dag)
    assert dr.state == "failed"
    ti = task_instance(dr, "invoke")
    assert ti.try_number == 2
    tries = sorted(k.rsplit("-t", 1)[1] for k in ids_of(fc_conn, "e2e_retry_failed"))
    assert tries == ["1", "2"]  # a second invocation, with the second try's id


@pytest.mark.parametrize(
    "store",
    [True, False] if compat.AIRFLOW_V_3_3_PLUS else [False],  # the task state store came with 3.3
    ids=["task_state_store", "prefix_lookup"] if compat.AIRFLOW_V_3_3_PLUS else ["prefix_lookup"],
)
def test_a_retry_after_a_killed_try_reattaches_and_runs_once(
    fc_conn: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, store: bool
) -> None:
    """Try 1 is killed mid-wait by execution_timeout (stop_on_kill=False leaves FC running); try 2 re-attaches.

    Both ways: through Airflow 3.3's task state store, and (store hidden, as before 3.3) the ListAsyncTasks lookup.
    """
    if not store:
        monkeypatch.setattr(compat, "task_state_store", lambda context: None)
    dag_id = f"e2e_reattach_{store}"
    dag = dag_with(
        dag_id,
        function_name="sleeper",
        # Still running when try 2 reaches FC, done within try 2's own limit. Between try 1's kill and try 2's
        # first request Airflow itself takes 0.5 s (3.3) to 3.5 s (3.0's in-process execution API): 10 s covers it.
        payload={"seconds": 15},
        stop_on_kill=False,
        retries=1,
        retry_delay=timedelta(0),
        execution_timeout=timedelta(seconds=10),
    )
    dr = run_dag(dag)
    ti = task_instance(dr, "invoke")
    out = capsys.readouterr().out
    assert dr.state == "success", out[-3000:]
    assert ti.try_number == 2
    result = ti.xcom_pull(task_ids="invoke")
    assert result["task_id"].endswith("-t1")  # the first try's task, re-attached
    assert result["return_payload"] == {"slept": 15}
    assert ids_of(fc_conn, dag_id) == {result["task_id"]: 1}  # exactly one execution
    assert "Re-attaching to FC task" in out
    assert ("from the task state store" in out) is store
    assert ("found by prefix" in out) is not store


def test_sensor_waits_for_a_task_the_operator_started(fc_conn: Any) -> None:
    from airflow.providers.common.compat.sdk import DAG

    with DAG("e2e_sensor", schedule=None, start_date=START, catchup=False) as dag:
        invoke = FcInvokeAsyncOperator(
            task_id="invoke", function_name="sleeper", payload={"seconds": 1}, wait_for_completion=False
        )
        watch = FcAsyncTaskSensor(
            task_id="watch",
            function_name="sleeper",
            async_task_id="{{ ti.xcom_pull(task_ids='invoke')['task_id'] }}",
            poke_interval=0.5,
            timeout=60,
        )
        invoke >> watch
    dr = run_dag(dag)
    assert dr.state == "success"
    assert task_instance(dr, "watch").xcom_pull(task_ids="watch")["return_payload"] == {"slept": 1}


def test_task_id_prefix_is_what_the_operator_used(fc_conn: Any) -> None:
    dr = run_dag(dag_with("e2e_ids", function_name="echo"))
    ti = task_instance(dr, "invoke")
    marker = compat.dag_run_marker({"dag_run": dr})  # this DAG run's run_after (3.x) or db id (2.x)
    prefix = task_ids.task_id_prefix("e2e_ids", "invoke", dr.run_id, -1, marker)
    assert ti.xcom_pull(task_ids="invoke")["task_id"] == f"{prefix}-t1"


@pytest.mark.parametrize(
    "limit",
    [{"max_wait": 2}, {"max_wait": 2, "deferrable": True}, {"execution_timeout": timedelta(seconds=2)}],
    ids=["max_wait", "max_wait_deferrable", "execution_timeout"],
)
def test_a_time_limit_stops_the_fc_task_and_fails(fc_conn: Any, limit: dict[str, Any]) -> None:
    from airflow_fc_async.hooks.fc import FcHook

    dag_id = f"e2e_limit_{'_'.join(sorted(limit))}"
    dag = dag_with(dag_id, function_name="sleeper", payload={"seconds": 20}, **limit)
    dr = run_dag(dag)
    assert dr.state == "failed"
    (task_id,) = [t.task_id for t in FcHook().list_async_tasks("sleeper", prefix=f"{dag_id}-invoke-")]
    deadline = time.monotonic() + 10
    status = None
    while time.monotonic() < deadline:
        status = FcHook().get_async_task("sleeper", task_id).status.value
        if status == "Stopped":
            break
        time.sleep(0.2)
    assert status == "Stopped"
