"""Every FC 3.0 operation against the live emulator, through the project's FcClient (raw requests where the
client would refuse to send the request)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_fc_async.core.errors import FcApiError, FcConflictError, FcNotFoundError
from airflow_fc_async.core.models import AsyncInvokeConfig, TaskStatus
from tests.emulator.conftest import fc_raw, unique, wait_terminal

INVOKE = "/2023-03-30/functions/{}/invocations"


def test_sync_invoke_returns_the_function_result(fc):
    assert fc.invoke_sync("echo", {"hello": "world"}) == b'{"hello":"world"}'


def test_sync_invoke_of_a_failing_function_reports_the_error(emu):
    r = fc_raw(
        emu,
        "POST",
        INVOKE.format("failer"),
        "InvokeFunction",
        body=b"x",
        headers={"x-fc-invocation-type": "Sync"},
    )
    assert r.status_code == 200
    assert r.headers["x-fc-error-type"] == "UnhandledInvocationError"
    error = r.json()
    assert error["errorType"] == "BoomError" and error["errorMessage"] == "boom: x"
    assert any("raise BoomError" in line for line in error["stackTrace"])


def test_async_invoke_runs_to_success_with_events_and_result(fc, emu):
    task_id = unique("echo")
    inv = fc.invoke_async("echo", {"n": 1}, task_id=task_id)
    assert inv.task_id == task_id and inv.request_id.startswith("1-")
    task = wait_terminal(fc, "echo", task_id)
    assert task.status is TaskStatus.SUCCEEDED
    assert task.return_payload == '{"n":1}'
    assert task.request_id == inv.request_id
    assert task.function_arn == f"acs:fc:{emu.region}:{emu.account_id}:functions/echo"
    assert task.instance_id and task.started_time and task.end_time and task.retried_times == 0
    statuses = [e.status for e in task.events]
    assert statuses[:4] == ["Enqueued", "Dequeued", "Running", "Succeeded"]
    assert task.destination_status == "Succeeded"
    assert "echo " + inv.request_id + " hello" in emu.logs(inv.request_id)


def test_async_invoke_answers_202_and_generates_a_task_id_when_absent(emu, fc):
    r = fc_raw(
        emu,
        "POST",
        INVOKE.format("echo"),
        "InvokeFunction",
        body=b"{}",
        headers={"x-fc-invocation-type": "Async"},
    )
    assert r.status_code == 202 and r.content == b""
    request_id = r.headers["x-fc-request-id"]
    task = wait_terminal(fc, "echo", r.headers["x-fc-async-task-id"])
    assert task.request_id == request_id


def test_reused_task_id_is_a_409(fc):
    task_id = unique("dup")
    fc.invoke_async("echo", {}, task_id=task_id)
    with pytest.raises(FcConflictError) as info:
        fc.invoke_async("echo", {"other": True}, task_id=task_id)
    assert info.value.status == 409


def test_payload_over_128_kb_is_entity_too_large(emu):
    body = b"x" * (128 * 1024 + 1)
    r = fc_raw(
        emu,
        "POST",
        INVOKE.format("echo"),
        "InvokeFunction",
        body=body,
        headers={"x-fc-invocation-type": "Async"},
    )
    assert r.status_code == 400
    assert r.json()["Code"] == "EntityTooLarge"
    assert r.json()["RequestId"] == r.headers["x-fc-request-id"]


def test_unknown_function_is_function_not_found(fc):
    with pytest.raises(FcNotFoundError) as info:
        fc.invoke_async("no-such-function", {}, task_id=unique())
    assert info.value.code == "FunctionNotFound"
    with pytest.raises(FcNotFoundError):
        fc.get_function("no-such-function")


def test_unknown_task_is_404(fc):
    with pytest.raises(FcNotFoundError):
        fc.get_async_task("echo", unique("missing"))


def test_async_delay_is_honoured(emu, fc):
    task_id = unique("delayed")
    fc.invoke_async("echo", {}, task_id=task_id, delay_seconds=2)
    task = fc.get_async_task("echo", task_id)
    assert task.status is TaskStatus.ENQUEUED
    done = wait_terminal(fc, "echo", task_id)
    assert done.status is TaskStatus.SUCCEEDED
    ran = next(e for e in done.events if e.status == "Running")
    assert ran.timestamp - done.started_time >= timedelta(seconds=1.9)


def test_list_async_tasks_filters_sorts_and_pages(emu, fc):
    prefix = unique("list")
    ids = [f"{prefix}-{i}" for i in range(5)]
    for task_id in ids:
        fc.invoke_async("echo", {"id": task_id}, task_id=task_id)
    failed = f"{prefix}-fail"
    for task_id in ids:
        wait_terminal(fc, "echo", task_id)
    # pages of 2 (raw request: the first page carries a nextToken)
    r = fc_raw(
        emu,
        "GET",
        "/2023-03-30/functions/echo/async-tasks",
        "ListAsyncTasks",
        query={"prefix": prefix, "limit": "2", "sortOrderByTime": "asc"},
    )
    page = r.json()
    assert [t["taskId"] for t in page["tasks"]] == ids[:2] and page["nextToken"]
    assert "taskPayload" not in page["tasks"][0]
    listed = list(
        fc.list_async_tasks("echo", prefix=prefix, newest_first=False, page_size=2, include_payload=True)
    )
    assert [t.task_id for t in listed] == ids
    assert json.loads(listed[0].payload) == {"id": ids[0]}
    newest = list(fc.list_async_tasks("echo", prefix=prefix, newest_first=True, limit=2))
    assert [t.task_id for t in newest] == [ids[4], ids[3]]
    assert list(fc.list_async_tasks("echo", prefix=prefix, status="Failed")) == []
    assert len(list(fc.list_async_tasks("echo", prefix=prefix, status=TaskStatus.SUCCEEDED))) == 5
    future = datetime.now(UTC) + timedelta(hours=1)
    assert list(fc.list_async_tasks("echo", prefix=prefix, started_after=future)) == []
    assert failed not in {t.task_id for t in listed}


def test_list_async_tasks_rejects_a_bad_limit(emu):
    r = fc_raw(emu, "GET", "/2023-03-30/functions/echo/async-tasks", "ListAsyncTasks", query={"limit": "101"})
    assert r.status_code == 400 and r.json()["Code"] == "InvalidArgument"


def test_async_invoke_config_put_get_list_delete(fc, emu):
    name = unique("cfgfn")
    emu.deploy(name, source="def handler(event, context):\n    return event\n", timeout=5)
    assert fc.get_async_invoke_config(name) is None
    arn = f"acs:mns:{emu.region}:{emu.account_id}:/queues/fc-test-echo/messages"
    wanted = AsyncInvokeConfig(
        async_task=True, max_async_retry_attempts=2, max_async_event_age_in_seconds=600, on_failure=arn
    )
    put = fc.put_async_invoke_config(name, wanted)
    assert put.settings() == wanted.settings()
    assert put.function_arn.endswith(f"functions/{name}") and put.created_time
    got = fc.get_async_invoke_config(name)
    assert got.settings() == wanted.settings()
    configs = {c.function_arn: c for c in fc.list_async_invoke_configs(function_name=name)}
    assert list(configs) == [put.function_arn]
    assert len(list(fc.list_async_invoke_configs())) >= 5
    fc.delete_async_invoke_config(name)
    assert fc.get_async_invoke_config(name) is None


def test_put_async_invoke_config_validates(emu):
    r = fc_raw(
        emu,
        "PUT",
        "/2023-03-30/functions/echo/async-invoke-config",
        "PutAsyncInvokeConfig",
        body=b'{"maxAsyncRetryAttempts": 9}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and "maxAsyncRetryAttempts" in r.json()["Message"]


def test_without_async_task_config_there_is_no_task_record(fc, emu):
    name = unique("notask")
    emu.deploy(name, source="def handler(event, context):\n    return 'ok'\n")
    inv = fc.invoke_async(name, {}, task_id=unique())
    with pytest.raises(FcNotFoundError):
        fc.get_async_task(name, inv.task_id)


def test_get_function(fc, emu):
    fn = fc.get_function("sleeper")
    assert fn["functionName"] == "sleeper"
    assert fn["functionArn"] == f"acs:fc:{emu.region}:{emu.account_id}:functions/sleeper"
    assert fn["timeout"] == 30 and fn["memorySize"] == 128 and fn["instanceConcurrency"] == 2
    assert fn["handler"] == "index.sleeper" and fn["state"] == "Active"


def test_unsupported_path_and_qualifier(emu, fc):
    r = fc_raw(emu, "DELETE", "/2023-03-30/functions/echo/invocations", "InvokeFunction")
    assert r.status_code == 400 and r.json()["Code"] == "PathNotSupported"
    with pytest.raises(FcApiError) as info:
        fc.get_async_task("echo", "x", qualifier="prod")
    assert info.value.status == 404
