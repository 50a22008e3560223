"""FcInvokeAsyncOperator(destination_queue=...): the task's own record from MNS into XCom, and into failures."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest

from airflow_fc_async.core.mns import MnsClient
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from tests.e2e.conftest import run_dag, task_instance


def dag_with(dag_id: str, **kwargs: Any) -> Any:
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        FcInvokeAsyncOperator(task_id="invoke", poll_interval=1, destination_timeout=20, **kwargs)
    return dag


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_success_puts_its_own_record_in_xcom_and_leaves_others(fc_conn: Any, deferrable: bool) -> None:
    mns = MnsClient(fc_conn.endpoint, fc_conn.credentials)
    foreign = mns.send_message("fc-test-echo", '{"not": "a record"}')
    dag = dag_with(
        f"e2e_dest_ok_{deferrable}",
        function_name="echo",
        payload={"k": "v"},
        destination_queue="fc-test-echo",
        deferrable=deferrable,
    )
    dr = run_dag(dag)
    assert dr.state == "success"
    ti = task_instance(dr, "invoke")
    result = ti.xcom_pull(task_ids="invoke")
    record = result["destination_record"]
    assert record["requestContext"]["requestId"] == result["request_id"]
    assert record["requestPayload"] == {"k": "v"} and record["responsePayload"] == {"k": "v"}
    assert ti.xcom_pull(task_ids="invoke", key="destination_record") == record
    # The other consumer's message is still in the queue (maybe invisible for a moment: it was handed back).
    assert foreign in fc_conn.queues.get("fc-test-echo").messages
    assert result["request_id"] not in str(
        [m.body for m in fc_conn.queues.get("fc-test-echo").messages.values()]
    )


def test_failure_message_quotes_the_record(fc_conn: Any, capsys: pytest.CaptureFixture[str]) -> None:
    dr = run_dag(
        dag_with("e2e_dest_fail", function_name="failer", payload="z", destination_queue="fc-test-failer")
    )
    assert dr.state == "failed"
    out = capsys.readouterr().out
    assert "ended Failed" in out
    assert "Destination record:" in out and "condition=" in out and "invokeCount=2" in out


def test_the_xcom_bound_covers_the_destination_record(
    fc_conn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13 item 2: a 30 KB echo gave a 90 KB return value (the record carries the payload twice) and a 60 KB
    ``destination_record`` XCom; both now stay within MAX_RESULT_BYTES, payloads dropped with a flag, logged."""
    import json

    from airflow_fc_async.operators.outcome import MAX_RESULT_BYTES

    blob = "x" * 30_000
    dr = run_dag(
        dag_with(
            "e2e_dest_big", function_name="echo", payload={"blob": blob}, destination_queue="fc-test-echo"
        )
    )
    assert dr.state == "success"
    ti = task_instance(dr, "invoke")
    result = ti.xcom_pull(task_ids="invoke")
    record = ti.xcom_pull(task_ids="invoke", key="destination_record")
    assert len(json.dumps(result)) <= MAX_RESULT_BYTES and len(json.dumps(record)) <= MAX_RESULT_BYTES
    assert result["return_payload_truncated"] is True
    assert result["destination_record"]["responsePayload_truncated"] is True
    assert result["destination_record"]["requestContext"]["requestId"] == result["request_id"]
    assert record["responsePayload_truncated"] is True and record["requestPayload"] == {"blob": blob}
    assert "of its destination record left out" in capsys.readouterr().out


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_a_record_fc_did_not_deliver_is_not_waited_for(
    fc_conn: Any, deferrable: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 13 item 3: a 70 KB echo makes a record over MNS's 64 KB limit (destinationStatus Failed). It used to
    wait out destination_timeout and succeed silently; with destination_required it now fails at once, saying why
    (a 600 s timeout: the message could only come from the destinationStatus path)."""
    from airflow.providers.common.compat.sdk import DAG

    with DAG(
        f"e2e_dest_undelivered_{deferrable}",
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    ) as dag:
        FcInvokeAsyncOperator(
            task_id="invoke",
            function_name="echo",
            payload={"blob": "y" * 70_000},
            poll_interval=1,
            destination_queue="fc-test-echo",
            destination_timeout=600,
            destination_required=True,
            deferrable=deferrable,
        )
    dr = run_dag(dag)
    assert dr.state == "failed"
    out = capsys.readouterr().out
    assert "destinationStatus Failed: it did not deliver the record" in out
    assert "destination_required=True" in out and "fc-test-echo" in out
