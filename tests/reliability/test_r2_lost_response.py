"""R2: an invoke whose response is lost after FC acted is retried with the same task id; the 409 is recognised
as our own earlier attempt and the function runs exactly once."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from tests.reliability._harness import run_logical_task


def _delta(before: dict[str, Any], after: dict[str, Any], key: str) -> dict[str, int]:
    return {k: v - before[key].get(k, 0) for k, v in after[key].items() if v != before[key].get(k, 0)}


def _op(task_id: str) -> FcInvokeAsyncOperator:
    return FcInvokeAsyncOperator(
        task_id=task_id, function_name="echo", payload={"lost": task_id}, poll_interval=1
    )


def test_a_lost_invoke_response_is_retried_with_the_same_id_and_runs_once(
    conn: Any, caplog: pytest.LogCaptureFixture
) -> None:
    before = conn.stats()
    conn.inject_faults(action="InvokeFunction", reset_after=1.0, count=1)
    out = run_logical_task(lambda: _op("r2_once"), 0, "rel_r2")
    after = conn.stats()
    executions = {k: v for k, v in after["executions"].items() if k.startswith("rel_r2-r2_once-")}
    statuses = _delta(before, after, "statuses")
    print(
        f"\nR2 lost response: invoke requests {statuses.get('InvokeFunction:202', 0)} x 202 + "
        f"{statuses.get('InvokeFunction:409', 0)} x 409, faults {_delta(before, after, 'faults')}, "
        f"executions {executions}, Airflow tries {out.tries}"
    )
    assert out.error is None and out.result is not None
    assert out.result["status"] == "Succeeded" and out.result["return_payload"] == {"lost": "r2_once"}
    assert _delta(before, after, "faults") == {"InvokeFunction:reset_after": 1}
    assert statuses["InvokeFunction:202"] == 1 and statuses["InvokeFunction:409"] == 1  # the repeat: 409
    assert list(executions.values()) == [1] and out.tries == 1
    assert out.result["task_id"] in executions
    assert "already exists with this payload (an earlier attempt of this call)" in caplog.text


def test_responses_lost_until_the_retries_run_out_then_the_next_try_reattaches(
    conn: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    conn.inject_faults(action="InvokeFunction", reset_after=1.0, count=4)  # every attempt of try 1
    out = run_logical_task(lambda: _op("r2_exhausted"), 0, "rel_r2")
    after = conn.stats()
    executions = {k: v for k, v in after["executions"].items() if k.startswith("rel_r2-r2_exhausted-")}
    print(f"\nR2 all 4 responses of try 1 lost: Airflow tries {out.tries}, executions {executions}")
    assert out.error is None and out.result is not None and out.result["status"] == "Succeeded"
    assert out.tries == 2  # try 1 failed on the lost responses (retryable), try 2 found try 1's task
    assert out.result["task_id"].endswith("-t1") and executions == {out.result["task_id"]: 1}
    out_text = capsys.readouterr().out  # the operator's log lines (structlog writes them to stdout)
    assert "Re-attaching to FC task" in out_text or "of an earlier try Succeeded" in out_text
