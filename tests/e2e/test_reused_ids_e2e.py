"""A reused FC task id never returns an earlier run's result (issue 13 item 1): real ``dag.test()`` on SQLite
against the emulator over HTTP."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pendulum
import pytest
from airflow import __version__ as airflow_version
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_fc_async import compat
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from tests.e2e.conftest import run_dag, task_instance

START = pendulum.datetime(2024, 1, 1, tz="UTC")


def dag_with(dag_id: str, **op_kwargs: Any) -> Any:
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        FcInvokeAsyncOperator(
            task_id="invoke",
            function_name="echo",
            poll_interval=1,
            retries=1,
            retry_delay=timedelta(0),
            **op_kwargs,
        )
    return dag


def executions(emu: Any, prefix: str) -> dict[str, int]:
    return {k: v for k, v in emu.stats()["executions"].items() if k.startswith(prefix)}


def test_a_reused_user_id_with_another_payload_fails_at_once(
    fc_conn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: async_task_id="nightly_job" in run 1 with {"run": 1}, again in a new run with {"run": 2}."""
    key = f"nightly_job_{uuid.uuid4().hex[:8]}"
    first = run_dag(dag_with("e2e_reuse_other_1", async_task_id=key, payload={"run": 1}))
    assert task_instance(first, "invoke").xcom_pull(task_ids="invoke")["return_payload"] == {"run": 1}
    capsys.readouterr()

    second = run_dag(dag_with("e2e_reuse_other_2", async_task_id=key, payload={"run": 2}))
    ti = task_instance(second, "invoke")
    assert second.state == "failed" and ti.state == "failed"
    assert ti.try_number == 1  # AirflowFailException: no retry (a retry cannot make the id free)
    assert ti.xcom_pull(task_ids="invoke") is None  # never the earlier run's result
    out = capsys.readouterr().out
    assert f"async task id '{key}'" in out and "already used (409)" in out and "idempotency key" in out
    assert executions(fc_conn, key) == {key: 1}  # FC ran once: run 1's


def test_a_reused_user_id_with_the_same_payload_is_an_idempotency_key(fc_conn: Any) -> None:
    key = f"nightly-{uuid.uuid4().hex[:8]}"
    first = run_dag(dag_with("e2e_reuse_same_1", async_task_id=key, payload={"day": "2024-01-01"}))
    second = run_dag(dag_with("e2e_reuse_same_2", async_task_id=key, payload={"day": "2024-01-01"}))
    assert second.state == "success"
    one = task_instance(first, "invoke").xcom_pull(task_ids="invoke")
    two = task_instance(second, "invoke").xcom_pull(task_ids="invoke")
    assert two["task_id"] == one["task_id"] == key and two["request_id"] == one["request_id"]
    assert executions(fc_conn, key) == {key: 1}


def test_a_dag_run_created_again_under_its_run_id_never_reports_the_old_result(
    fc_conn: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dag.test()`` twice with the same date: the second call deletes the first DAG run and creates it again
    under the same run id (Airflow 2's ``airflow dags test DAG DATE``; on 3.x also the same run_after). The
    generated id then names the same try of the same run: the new run either gets its own task (a DAG-run marker
    that differs) or is refused at once, and it never reports the deleted run's task."""
    dag_id = f"e2e_recreated_{uuid.uuid4().hex[:6]}"
    when = pendulum.datetime(2024, 3, 1, tz="UTC")
    first = run_dag(dag_with(dag_id, payload={"same": "payload"}), logical_date=when)
    one = task_instance(first, "invoke").xcom_pull(task_ids="invoke")
    assert first.state == "success"
    capsys.readouterr()
    raised: list[BaseException] = []  # what the try failed with (Airflow 3.0's dag.test prints none of it)
    execute = FcInvokeAsyncOperator.execute

    def spy(self: FcInvokeAsyncOperator, context: Any) -> Any:
        try:
            return execute(self, context)
        except BaseException as exc:
            raised.append(exc)
            raise

    monkeypatch.setattr(FcInvokeAsyncOperator, "execute", spy)
    second = run_dag(dag_with(dag_id, payload={"same": "payload"}), logical_date=when)
    assert second.run_id == first.run_id
    two = task_instance(second, "invoke").xcom_pull(task_ids="invoke")
    runs = executions(fc_conn, f"{dag_id}-invoke-")
    if second.state == "success":  # Airflow 2 when the DAG run's database id differs: a new task
        assert two["task_id"] != one["task_id"]
        assert runs == {one["task_id"]: 1, two["task_id"]: 1}
    else:  # refused: the task state store (3.3) has no record of it, or Airflow 2 cannot prove it
        assert two is None and runs == {one["task_id"]: 1}
        assert task_instance(second, "invoke").try_number == 1 and len(raised) == 1
        assert isinstance(raised[0], AirflowFailException)  # no retry can help
        failure = str(raised[0])
        assert f"async task id '{one['task_id']}'" in failure and "already used (409)" in failure
        if compat.AIRFLOW_V_3_3_PLUS:
            assert "task state store of this task instance has no record" in failure
        # Airflow 3.0's dag.test drops the task runner's log; the other lines print the failure.
        if not airflow_version.startswith("3.0."):
            assert failure.splitlines()[0] in capsys.readouterr().out
