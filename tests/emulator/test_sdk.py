"""The official SDKs (alibabacloud-fc20230330, aliyun-mns-sdk) as clients of the emulator, unchanged but for the
endpoint: the proof that the emulator speaks the documented wire format."""

from __future__ import annotations

import json

import pytest
from alibabacloud_fc20230330 import models as fc_models
from alibabacloud_fc20230330.client import Client as FcSdkClient
from alibabacloud_tea_openapi import utils_models as openapi_models
from alibabacloud_tea_openapi.exceptions import ClientException
from darabonba.runtime import RuntimeOptions
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message, QueueMeta

from airflow_fc_async.core.models import DestinationRecord
from tests.emulator.conftest import unique, wait_for


@pytest.fixture
def sdk(emu) -> FcSdkClient:
    config = openapi_models.Config(
        endpoint=emu.endpoint.split("://", 1)[1],
        protocol="http",
        access_key_id=emu.settings.access_key_id,
        access_key_secret=emu.settings.access_key_secret,
        region_id=emu.region,
    )
    return FcSdkClient(config)


def _invoke_async(sdk: FcSdkClient, function: str, body: bytes, task_id: str):
    headers = fc_models.InvokeFunctionHeaders(x_fc_invocation_type="Async", x_fc_async_task_id=task_id)
    return sdk.invoke_function_with_options(
        function, fc_models.InvokeFunctionRequest(body=body, qualifier="LATEST"), headers, RuntimeOptions()
    )


def _status(sdk: FcSdkClient, function: str, task_id: str) -> str:
    return sdk.get_async_task(
        function, task_id, fc_models.GetAsyncTaskRequest(qualifier="LATEST")
    ).body.status


def test_fc_sdk_invokes_async_gets_and_lists_tasks(sdk, emu):
    prefix = unique("sdk")
    reply = _invoke_async(sdk, "echo", b'{"from":"sdk"}', f"{prefix}-1")
    assert reply.status_code == 202 and reply.headers["x-fc-request-id"].startswith("1-")
    wait_for(lambda: _status(sdk, "echo", f"{prefix}-1") == "Succeeded")
    task = sdk.get_async_task("echo", f"{prefix}-1", fc_models.GetAsyncTaskRequest()).body
    assert task.return_payload == '{"from":"sdk"}' and task.request_id == reply.headers["x-fc-request-id"]
    assert [e.status for e in task.events][:4] == ["Enqueued", "Dequeued", "Running", "Succeeded"]
    _invoke_async(sdk, "echo", b"{}", f"{prefix}-2")
    wait_for(lambda: _status(sdk, "echo", f"{prefix}-2") == "Succeeded")
    request = fc_models.ListAsyncTasksRequest(
        prefix=prefix, limit=1, sort_order_by_time="asc", include_payload=True
    )
    first = sdk.list_async_tasks("echo", request).body
    assert [t.task_id for t in first.tasks] == [f"{prefix}-1"] and first.tasks[
        0
    ].task_payload == '{"from":"sdk"}'
    request.next_token = first.next_token
    second = sdk.list_async_tasks("echo", request).body
    assert [t.task_id for t in second.tasks] == [f"{prefix}-2"] and not second.next_token
    filtered = sdk.list_async_tasks(
        "echo", fc_models.ListAsyncTasksRequest(prefix=prefix, status="Failed")
    ).body
    assert filtered.tasks == []


def test_fc_sdk_sync_invoke_and_get_function(sdk):
    reply = sdk.invoke_function("echo", fc_models.InvokeFunctionRequest(body=b"ping"))
    assert reply.status_code == 200 and reply.body.read() == b"ping"
    fn = sdk.get_function("echo", fc_models.GetFunctionRequest()).body
    assert fn.function_name == "echo" and fn.handler == "index.echo" and fn.instance_concurrency == 4


def test_fc_sdk_stops_a_task(sdk, emu):
    task_id = unique("sdkstop")
    _invoke_async(sdk, "sleeper", json.dumps({"seconds": 30}).encode(), task_id)
    wait_for(lambda: _status(sdk, "sleeper", task_id) == "Running")
    reply = sdk.stop_async_task("sleeper", task_id, fc_models.StopAsyncTaskRequest(qualifier="LATEST"))
    assert 200 <= reply.status_code < 300
    wait_for(lambda: _status(sdk, "sleeper", task_id) == "Stopped", timeout=10)


def test_fc_sdk_puts_gets_lists_and_deletes_async_config(sdk, emu):
    name = unique("sdkcfg")
    emu.deploy(name, source="def handler(event, context):\n    return event\n")
    dest = f"acs:mns:{emu.region}:{emu.account_id}:/queues/fc-test-echo/messages"
    body = fc_models.PutAsyncInvokeConfigInput(
        async_task=True,
        max_async_retry_attempts=2,
        max_async_event_age_in_seconds=300,
        destination_config=fc_models.DestinationConfig(on_success=fc_models.Destination(destination=dest)),
    )
    put = sdk.put_async_invoke_config(
        name, fc_models.PutAsyncInvokeConfigRequest(qualifier="LATEST", body=body)
    ).body
    assert put.max_async_retry_attempts == 2 and put.async_task is True
    assert put.destination_config.on_success.destination == dest
    got = sdk.get_async_invoke_config(name, fc_models.GetAsyncInvokeConfigRequest(qualifier="LATEST")).body
    assert got.max_async_event_age_in_seconds == 300 and got.function_arn.endswith(f"functions/{name}")
    listed = sdk.list_async_invoke_configs(fc_models.ListAsyncInvokeConfigsRequest(function_name=name)).body
    assert [c.function_arn for c in listed.configs] == [got.function_arn]
    sdk.delete_async_invoke_config(name, fc_models.DeleteAsyncInvokeConfigRequest(qualifier="LATEST"))
    with pytest.raises(ClientException) as info:
        sdk.get_async_invoke_config(name, fc_models.GetAsyncInvokeConfigRequest(qualifier="LATEST"))
    assert info.value.code == "AsyncConfigNotExists" and info.value.status_code == 404


def test_fc_sdk_sees_fc_errors(sdk):
    with pytest.raises(ClientException) as info:
        sdk.get_async_task("echo", unique("none"), fc_models.GetAsyncTaskRequest())
    assert info.value.status_code == 404 and info.value.request_id.startswith("1-")


def test_fc_sdk_with_wrong_secret_is_refused(emu):
    config = openapi_models.Config(
        endpoint=emu.endpoint.split("://", 1)[1],
        protocol="http",
        access_key_id=emu.settings.access_key_id,
        access_key_secret="wrong",
        region_id=emu.region,
    )
    with pytest.raises(ClientException) as info:
        FcSdkClient(config).get_function("echo", fc_models.GetFunctionRequest())
    assert info.value.code == "SignatureNotMatch" and info.value.status_code == 403


def _text(body: str | bytes) -> str:
    return body.decode() if isinstance(body, bytes) else body


@pytest.fixture
def account(emu) -> Account:
    return Account(emu.endpoint, emu.settings.access_key_id, emu.settings.access_key_secret)


def test_mns_sdk_queue_and_message_operations(account):
    queue = account.get_queue(unique("sdkq"))
    meta = QueueMeta()
    meta.set_visibilitytimeout(5)
    assert queue.create(meta).endswith(queue.queue_name)
    assert queue.get_attributes().visibility_timeout == 5
    sent = queue.send_message(Message("hello & <world>"))  # the SDK base64-encodes bodies by default
    batch = queue.batch_send_message([Message("a"), Message("b")])
    assert len({sent.message_id, *(m.message_id for m in batch)}) == 3
    assert sorted(_text(m.message_body) for m in queue.batch_peek_message(16)) == [
        "a",
        "b",
        "hello & <world>",
    ]
    received = queue.batch_receive_message(16, 1)
    assert sorted(_text(m.message_body) for m in received) == ["a", "b", "hello & <world>"]
    assert all(m.dequeue_count == 1 for m in received)
    changed = queue.change_message_visibility(received[0].receipt_handle, 5)
    assert changed.receipt_handle != received[0].receipt_handle
    queue.delete_message(changed.receipt_handle)
    queue.batch_delete_message([m.receipt_handle for m in received[1:]])
    with pytest.raises(MNSServerException) as info:
        queue.receive_message(0)
    assert info.value.type == "MessageNotExist"
    with pytest.raises(MNSServerException) as info:
        queue.delete_message(received[1].receipt_handle)
    assert info.value.type == "MessageNotExist"
    queue.delete()


def test_mns_sdk_reads_a_destination_record(account, fc):
    inv = fc.invoke_async("echo", {"via": "mns-sdk"}, task_id=unique("rec"))
    queue = account.get_queue("fc-test-echo")
    queue.set_encoding(False)  # FC writes the record as raw JSON

    def find() -> DestinationRecord | None:
        for msg in queue.batch_receive_message(16, 1):
            record = DestinationRecord.from_body(msg.message_body)
            if record and record.request_id == inv.request_id:
                queue.delete_message(msg.receipt_handle)
                return record
            queue.change_message_visibility(msg.receipt_handle, 1)
        return None

    record = wait_for(find)
    assert record.succeeded and record.response_payload == {"via": "mns-sdk"}


def test_mns_sdk_with_wrong_secret_is_refused(emu):
    queue = Account(emu.endpoint, emu.settings.access_key_id, "wrong").get_queue("fc-test-echo")
    with pytest.raises(MNSServerException) as info:
        queue.get_attributes()
    assert info.value.type == "SignatureDoesNotMatch"
