"""stream_logs end to end: the function's own lines in the Airflow task log (dag.test() against the emulator).

The emulator ships the function's stdout/stderr as SLS rows of its ``logConfig`` and serves GetLogs v1; the
operator (blocking) or the trigger (deferrable) reads them. Task-log records are told from the triggerer's by
their logger name (``airflow.task.*``).
"""

from __future__ import annotations

import re
from typing import Any

import pendulum
import pytest

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.sensors.fc import FcAsyncTaskSensor
from tests.e2e.conftest import run_dag, task_instance

START = pendulum.datetime(2024, 1, 1, tz="UTC")
_LINE = re.compile(r"\[attempt (\d+)\] log line (\d+) of (\d+)")


def dag_with(dag_id: str, **op_kwargs: Any) -> Any:
    from airflow.providers.common.compat.sdk import DAG

    with DAG(dag_id, schedule=None, start_date=START, catchup=False) as dag:
        FcInvokeAsyncOperator(task_id="invoke", poll_interval=1, stream_logs=True, **op_kwargs)
    return dag


def captured(capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """The run's log as ``[logger] message`` lines, each record once.

    Airflow 3.3 sends task logs through structlog to stdout; 2.11 and 3.0 through stdlib logging, where
    ``dag.test()`` also prints every record twice (two handlers): there the captured records are the truth.
    """
    out = capsys.readouterr().out
    records = [r for r in caplog.records if r.name.startswith("airflow.task.")]
    if not records:
        return out
    return "\n".join(f"[{r.name}] {r.getMessage()}" for r in caplog.records)


def task_log(out: str) -> list[str]:
    """The records the Airflow task itself logged (not the triggerer's)."""
    return [line for line in out.splitlines() if "[airflow.task." in line]


def function_lines(lines: list[str]) -> list[tuple[int, int]]:
    """``(attempt, line number)`` of every numbered function line, in log order."""
    return [(int(m[1]), int(m[2])) for m in map(_LINE.search, lines) if m]


@pytest.mark.parametrize("deferrable", [False, True], ids=["blocking", "deferrable"])
def test_all_50_lines_in_order_each_once(
    fc_conn: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, deferrable: bool
) -> None:
    dag_id = f"e2e_logs_{'deferrable' if deferrable else 'blocking'}"
    dag = dag_with(
        dag_id, function_name="log-lines", payload={"count": 50, "seconds": 3}, deferrable=deferrable
    )
    dr = run_dag(dag)
    out = captured(capsys, caplog)
    assert dr.state == "success"
    # Deferrable: what the UI shows is the task's records and the trigger's (the triggerer writes into the task's
    # log live): together they hold each line once, none repeated by execute_complete.
    log = [line for line in out.splitlines() if "[airflow.task." in line or "FcAsyncTaskTrigger]" in line]
    assert function_lines(log) == [(1, n) for n in range(1, 51)]
    request_id = task_instance(dr, "invoke").xcom_pull(task_ids="invoke")["request_id"]
    starts = [
        i for i, line in enumerate(log) if f"[attempt 1] FC Invoke Start RequestId: {request_id}" in line
    ]
    ends = [i for i, line in enumerate(log) if f"[attempt 1] FC Invoke End RequestId: {request_id}" in line]
    assert len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0]


def test_a_retry_shows_as_a_second_attempt(
    fc_conn: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    dag = dag_with(
        "e2e_logs_retry", function_name="log-lines", payload={"count": 5, "seconds": 0.5, "fail_first": True}
    )
    dr = run_dag(dag)
    out = captured(capsys, caplog)
    assert dr.state == "success"
    log = task_log(out)
    assert function_lines(log) == [(1, n) for n in range(1, 6)] + [(2, n) for n in range(1, 6)]
    assert any(
        "[attempt 1] FC Invoke End RequestId:" in line and "first attempt fails" in line for line in log
    )


def test_no_log_config_warns_once_and_succeeds(
    fc_conn: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    dr = run_dag(dag_with("e2e_logs_none", function_name="echo", payload={"a": 1}))
    out = captured(capsys, caplog)
    assert dr.state == "success"
    assert out.count("has no logConfig") == 1
    assert task_instance(dr, "invoke").xcom_pull(task_ids="invoke")["return_payload"] == {"a": 1}


def test_get_logs_errors_do_not_fail_the_task(
    fc_conn: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    before = fc_conn.stats()["faults"].get("GetLogs:500", 0)
    # every attempt of the first GetLogs call fails (the client retries 4 times), later calls succeed
    fc_conn.inject_faults(action="GetLogs", rate_500=1.0, count=4)
    dag = dag_with("e2e_logs_faults", function_name="log-lines", payload={"count": 20, "seconds": 2})
    dr = run_dag(dag)
    out = captured(capsys, caplog)
    assert dr.state == "success"
    assert fc_conn.stats()["faults"].get("GetLogs:500", 0) - before == 4
    assert "Reading function logs from SLS failed (1 so far; the task goes on)" in out
    assert function_lines(task_log(out)) == [(1, n) for n in range(1, 21)]


def test_sensor_streams_the_lines_of_a_task_it_watches(
    fc_conn: Any, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    with DAG("e2e_logs_sensor", schedule=None, start_date=START, catchup=False) as dag:
        invoke = FcInvokeAsyncOperator(
            task_id="invoke",
            function_name="log-lines",
            payload={"count": 10, "seconds": 2},
            wait_for_completion=False,
        )
        watch = FcAsyncTaskSensor(
            task_id="watch",
            function_name="log-lines",
            async_task_id="{{ ti.xcom_pull('invoke')['task_id'] }}",
            poke_interval=1,
            stream_logs=True,
        )
        invoke >> watch
    dr = run_dag(dag)
    out = captured(capsys, caplog)
    assert dr.state == "success"
    assert function_lines(task_log(out)) == [(1, n) for n in range(1, 11)]
