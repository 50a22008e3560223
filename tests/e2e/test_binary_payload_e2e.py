"""Payload bytes that are not UTF-8 come back from FC as U+FFFD: a re-run of such a task is refused, never sent
with other bytes (issue 13 item 12). Against the emulator over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_fc_async.core.errors import FcValidationError
from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.hooks.fc import FcHook
from airflow_fc_async.operators.rerun import FcRerunAsyncTaskOperator
from tests.e2e.test_manage_e2e import ctx, wait_terminal


@pytest.fixture
def client(fc_conn: Any) -> FcClient:
    return FcClient(fc_conn.endpoint, fc_conn.credentials)


def test_a_task_whose_payload_was_not_utf8_is_not_re_run(fc_conn: Any, client: FcClient) -> None:
    source = client.invoke_async(
        "echo", b"\xff\xfe raw \x00\x80", task_id=f"bin-{uuid.uuid4().hex[:8]}"
    ).task_id
    assert wait_terminal(client, "echo", source) is TaskStatus.SUCCEEDED
    assert "\ufffd" in (client.get_async_task("echo", source).payload or "")  # what FC keeps of those bytes
    before = dict(fc_conn.stats()["executions"])

    op = FcRerunAsyncTaskOperator(task_id="rerun", function_name="echo", source_task_id=source)
    with pytest.raises(AirflowFailException, match="U\\+FFFD") as err:
        op.execute(ctx())  # type: ignore[arg-type]
    assert source in str(err.value) and "cannot be re-sent" in str(err.value)
    with pytest.raises(FcValidationError, match="taskPayload"):
        FcHook().rerun_async_task("echo", source)
    after = fc_conn.stats()["executions"]
    assert {k: v for k, v in after.items() if before.get(k) != v} == {}  # nothing invoked


def test_a_utf8_bytes_payload_is_re_run_byte_for_byte(fc_conn: Any, client: FcClient) -> None:
    source = client.invoke_async("echo", "café ✓".encode(), task_id=f"utf8-{uuid.uuid4().hex[:8]}").task_id
    assert wait_terminal(client, "echo", source) is TaskStatus.SUCCEEDED
    inv = FcHook().rerun_async_task("echo", source)
    assert wait_terminal(client, "echo", inv.task_id) is TaskStatus.SUCCEEDED
    assert client.get_async_task("echo", inv.task_id).payload == "café ✓"
