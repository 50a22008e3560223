"""Task management against the emulator: history filters, pagination, stop, re-run, async config as code."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.operators.fc import (
    FcAsyncInvokeConfigOperator,
    FcListAsyncTasksOperator,
    FcRerunAsyncTaskOperator,
    FcStopAsyncTaskOperator,
)
from tests.e2e.conftest import run_dag, task_instance

NOW = datetime.now(UTC)


@pytest.fixture
def client(fc_conn: Any) -> FcClient:
    return FcClient(fc_conn.endpoint, fc_conn.credentials)


def ctx() -> dict[str, Any]:
    return {"data_interval_end": datetime.now(UTC), "logical_date": datetime.now(UTC)}


def wait_terminal(client: FcClient, fn: str, task_id: str, timeout: float = 20) -> TaskStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get_async_task(fn, task_id)
        if task.is_terminal:
            return task.status
        time.sleep(0.1)
    raise AssertionError(f"{task_id} did not end")


def requests_of(emu: Any, action: str) -> int:
    return int(emu.stats()["requests"].get(action, 0))


# --- history ------------------------------------------------------------------------------------------------------


def test_list_filters_by_prefix_status_time_and_order(client: FcClient) -> None:
    prefix = f"hist{uuid.uuid4().hex[:6]}-"
    ok = [client.invoke_async("echo", {"i": i}, task_id=f"{prefix}ok{i}").task_id for i in range(3)]
    bad = [client.invoke_async("failer", "x", task_id=f"{prefix}bad{i}").task_id for i in range(2)]
    for t in ok:
        assert wait_terminal(client, "echo", t) is TaskStatus.SUCCEEDED
    client.invoke_async("echo", {}, task_id=f"other{uuid.uuid4().hex[:6]}")

    rows = FcListAsyncTasksOperator(task_id="l", function_name="echo", prefix=prefix).execute(ctx())  # type: ignore[arg-type]
    assert sorted(r["task_id"] for r in rows) == sorted(ok)
    assert [r["task_id"] for r in rows] == sorted(ok, reverse=True) or rows[0]["started_time"] >= rows[-1][
        "started_time"
    ]
    assert all(r["status"] == "Succeeded" and "payload" not in r for r in rows)

    oldest_first = FcListAsyncTasksOperator(
        task_id="l", function_name="echo", prefix=prefix, newest_first=False, include_payload=True
    ).execute(ctx())  # type: ignore[arg-type]
    assert [r["started_time"] for r in oldest_first] == sorted(r["started_time"] for r in oldest_first)
    assert {r["payload"] for r in oldest_first} == {'{"i":0}', '{"i":1}', '{"i":2}'}

    for t in bad:
        wait_terminal(client, "failer", t)
    failed = FcListAsyncTasksOperator(
        task_id="l",
        function_name="failer",
        prefix=prefix,
        status=["Failed"],
        started_after=timedelta(hours=1),
    ).execute(ctx())  # type: ignore[arg-type]
    assert sorted(r["task_id"] for r in failed) == sorted(bad)
    assert all(r["error_message"] for r in failed)

    future = FcListAsyncTasksOperator(
        task_id="l", function_name="echo", prefix=prefix, started_after=(NOW + timedelta(days=1)).isoformat()
    ).execute(ctx())  # type: ignore[arg-type]
    assert future == []
    past = FcListAsyncTasksOperator(
        task_id="l", function_name="echo", prefix=prefix, started_before=NOW - timedelta(days=1)
    ).execute(ctx())  # type: ignore[arg-type]
    assert past == []


def test_list_paginates_lazily_past_100(fc_conn: Any, client: FcClient) -> None:
    prefix = f"page{uuid.uuid4().hex[:6]}-"
    # Delayed an hour: they stay Enqueued, so the test costs no function runs. Stopped at the end.
    ids = [
        client.invoke_async("echo", {}, task_id=f"{prefix}{i:03d}", delay_seconds=3600).task_id
        for i in range(130)
    ]
    try:
        before = requests_of(fc_conn, "ListAsyncTasks")
        rows = FcListAsyncTasksOperator(task_id="l", function_name="echo", prefix=prefix, limit=130).execute(
            ctx()
        )  # type: ignore[arg-type]
        assert sorted(r["task_id"] for r in rows) == sorted(ids)
        assert {r["status"] for r in rows} == {"Enqueued"}
        assert requests_of(fc_conn, "ListAsyncTasks") - before == 2  # 100 + 30

        before = requests_of(fc_conn, "ListAsyncTasks")
        few = FcListAsyncTasksOperator(task_id="l", function_name="echo", prefix=prefix, limit=5).execute(
            ctx()
        )  # type: ignore[arg-type]
        assert len(few) == 5
        assert requests_of(fc_conn, "ListAsyncTasks") - before == 1  # lazy: no second page fetched
    finally:
        for t in ids:
            client.stop_async_task("echo", t)


# --- stop ---------------------------------------------------------------------------------------------------------


def test_stop_a_queued_task(client: FcClient) -> None:
    tid = client.invoke_async("echo", {}, delay_seconds=600).task_id
    out = FcStopAsyncTaskOperator(
        task_id="s", function_name="echo", async_task_id=tid, timeout=30, poll_interval=0.5
    ).execute(ctx())  # type: ignore[arg-type]
    assert out["status"] == "Stopped"
    assert client.get_async_task("echo", tid).status is TaskStatus.STOPPED


def test_stop_a_running_task(fc_conn: Any, client: FcClient) -> None:
    tid = client.invoke_async("sleeper", {"seconds": 25}).task_id
    deadline = time.monotonic() + 15
    while client.get_async_task("sleeper", tid).status is not TaskStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    out = FcStopAsyncTaskOperator(
        task_id="s", function_name="sleeper", async_task_id=tid, timeout=30, poll_interval=0.5
    ).execute(ctx())  # type: ignore[arg-type]
    assert out["status"] == "Stopped"
    assert fc_conn.stats()["executions"][tid] == 1


def test_stop_of_a_terminal_task_is_idempotent_unless_asked_to_fail(fc_conn: Any, client: FcClient) -> None:
    tid = client.invoke_async("echo", {"done": 1}).task_id
    assert wait_terminal(client, "echo", tid) is TaskStatus.SUCCEEDED
    before = requests_of(fc_conn, "StopAsyncTask")
    out = FcStopAsyncTaskOperator(task_id="s", function_name="echo", async_task_id=tid).execute(ctx())  # type: ignore[arg-type]
    assert out["status"] == "Succeeded"
    assert requests_of(fc_conn, "StopAsyncTask") == before  # nothing sent
    with pytest.raises(AirflowFailException, match="already ended Succeeded"):
        FcStopAsyncTaskOperator(
            task_id="s", function_name="echo", async_task_id=tid, fail_if_terminal=True
        ).execute(ctx())  # type: ignore[arg-type]


def test_stop_of_an_unknown_task_fails_fast(client: FcClient) -> None:
    with pytest.raises(AirflowFailException, match="nope-"):
        FcStopAsyncTaskOperator(
            task_id="s", function_name="echo", async_task_id=f"nope-{uuid.uuid4().hex}"
        ).execute(ctx())  # type: ignore[arg-type]


# --- re-run -------------------------------------------------------------------------------------------------------


def test_rerun_sends_the_source_payload_under_a_new_id(fc_conn: Any, client: FcClient) -> None:
    from airflow.providers.common.compat.sdk import DAG

    source = client.invoke_async("echo", {"job": "nightly", "n": 7}).task_id
    assert wait_terminal(client, "echo", source) is TaskStatus.SUCCEEDED
    with DAG("e2e_rerun", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        FcRerunAsyncTaskOperator(
            task_id="rerun", function_name="echo", source_task_id=source, poll_interval=1
        )
    dr = run_dag(dag)
    assert dr.state == "success"
    result = task_instance(dr, "rerun").xcom_pull(task_ids="rerun")
    assert result["task_id"] != source and result["task_id"].startswith(f"{source}-rerun-")
    assert result["return_payload"] == {"job": "nightly", "n": 7}
    assert (
        client.get_async_task("echo", result["task_id"]).payload
        == client.get_async_task("echo", source).payload
    )
    assert fc_conn.stats()["executions"][result["task_id"]] == 1


def test_rerun_with_a_payload_override(fc_conn: Any, client: FcClient) -> None:
    from airflow.providers.common.compat.sdk import DAG

    source = client.invoke_async("echo", {"job": "nightly", "n": 7}).task_id
    assert wait_terminal(client, "echo", source) is TaskStatus.SUCCEEDED
    with DAG("e2e_rerun_override", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        FcRerunAsyncTaskOperator(
            task_id="rerun",
            function_name="echo",
            source_task_id=source,
            payload_override={"n": 1, "small": True},
            poll_interval=1,
        )
    dr = run_dag(dag)
    assert dr.state == "success"
    result = task_instance(dr, "rerun").xcom_pull(task_ids="rerun")
    assert result["return_payload"] == {"job": "nightly", "n": 1, "small": True}


def test_rerun_override_of_a_non_object_payload_fails_fast(fc_conn: Any, client: FcClient) -> None:
    source = client.invoke_async("echo", "plain text").task_id
    assert wait_terminal(client, "echo", source) is TaskStatus.SUCCEEDED
    op = FcRerunAsyncTaskOperator(
        task_id="rerun", function_name="echo", source_task_id=source, payload_override={"n": 1}
    )
    with pytest.raises(AirflowFailException, match="payload_override"):
        op.execute(ctx())  # type: ignore[arg-type]


def test_rerun_of_a_missing_task_fails_fast(fc_conn: Any) -> None:
    op = FcRerunAsyncTaskOperator(task_id="rerun", function_name="echo", source_task_id="missing-task-x")
    with pytest.raises(AirflowFailException, match="missing-task-x"):
        op.execute(ctx())  # type: ignore[arg-type]


# --- async invoke config ------------------------------------------------------------------------------------------


def test_config_is_written_once_then_left_alone(fc_conn: Any, client: FcClient) -> None:
    kwargs = dict(function_name="sleeper", max_async_retry_attempts=2, on_failure="fc-test-sleeper")
    before = requests_of(fc_conn, "PutAsyncInvokeConfig")
    first = FcAsyncInvokeConfigOperator(task_id="c", **kwargs).execute(ctx())  # type: ignore[arg-type]
    assert first is not None and first["max_async_retry_attempts"] == 2
    assert first["on_failure"] == "acs:mns:cn-hangzhou:1234567890123456:/queues/fc-test-sleeper/messages"
    assert requests_of(fc_conn, "PutAsyncInvokeConfig") == before + 1
    FcAsyncInvokeConfigOperator(task_id="c", **kwargs).execute(ctx())  # type: ignore[arg-type]
    assert requests_of(fc_conn, "PutAsyncInvokeConfig") == before + 1  # already matches: no write
    current = client.get_async_invoke_config("sleeper")
    assert current is not None and current.max_async_retry_attempts == 2

    FcAsyncInvokeConfigOperator(task_id="c", function_name="sleeper", max_async_retry_attempts=0).execute(
        ctx()
    )  # type: ignore[arg-type]
    assert requests_of(fc_conn, "PutAsyncInvokeConfig") == before + 2
    current = client.get_async_invoke_config("sleeper")
    assert current is not None and current.max_async_retry_attempts == 0 and current.on_failure is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on_success": "acs:mns:bad"}, "on_success"),
        ({"on_failure": "bad queue name!"}, "destination queue"),
        ({"function_name": "9starts-with-digit"}, "function_name"),
        ({"qualifier": "no spaces"}, "qualifier"),
    ],
)
def test_config_validation_errors_send_nothing(fc_conn: Any, kwargs: dict[str, Any], match: str) -> None:
    before = dict(fc_conn.stats()["requests"])
    args = {"function_name": "sleeper", **kwargs}
    with pytest.raises(AirflowFailException, match=match):
        FcAsyncInvokeConfigOperator(task_id="c", **args).execute(ctx())  # type: ignore[arg-type]
    after = fc_conn.stats()["requests"]
    assert after.get("PutAsyncInvokeConfig", 0) == before.get("PutAsyncInvokeConfig", 0)


def test_config_delete(fc_conn: Any, client: FcClient) -> None:
    FcAsyncInvokeConfigOperator(task_id="c", function_name="sleeper", max_async_retry_attempts=1).execute(
        ctx()
    )  # type: ignore[arg-type]
    assert client.get_async_invoke_config("sleeper") is not None
    assert (
        FcAsyncInvokeConfigOperator(task_id="c", function_name="sleeper", delete=True).execute(ctx()) is None
    )  # type: ignore[arg-type]
    assert client.get_async_invoke_config("sleeper") is None
    # restore the fixture's config for other tests
    FcAsyncInvokeConfigOperator(
        task_id="c", function_name="sleeper", max_async_retry_attempts=0, on_failure="fc-test-sleeper"
    ).execute(ctx())  # type: ignore[arg-type]
