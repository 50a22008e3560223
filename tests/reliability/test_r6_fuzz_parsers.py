"""R6 fuzz: every reply parser, fed any status, headers and bytes, returns a value or raises an FcError.

The parsers are the I/O-free ops of ``FcRequests`` / ``MnsRequests`` read by ``core.http.handle_reply`` (the
one place both transports read replies), plus ``DestinationRecord.from_body`` (MNS message bodies).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.fc_requests import FcRequests
from airflow_fc_async.core.http import Op, Reply, handle_reply
from airflow_fc_async.core.mns_requests import MnsRequests
from airflow_fc_async.core.models import DestinationRecord
from airflow_fc_async.core.task_query import AsyncTaskQuery

_CREDS = Credentials("AKID", "secret")
_FC = FcRequests("http://127.0.0.1:9", _CREDS)
_MNS = MnsRequests("http://127.0.0.1:9", _CREDS)
_QUERY = AsyncTaskQuery("fn", prefix="p", include_payload=True)

OPS: dict[str, Callable[[], Op[Any] | Any]] = {
    "InvokeFunction(async)": lambda: _FC.invoke_async_op("fn", {"a": 1}, "LATEST", "t1", None).op,
    "InvokeFunction(sync)": lambda: _FC.invoke_sync_op("fn", b"x", "LATEST"),
    "GetAsyncTask": lambda: _FC.get_task_op("fn", "t1", "LATEST"),
    "StopAsyncTask": lambda: _FC.stop_task_op("fn", "t1", "LATEST"),
    "ListAsyncTasks": lambda: _FC.task_pager(_QUERY).next_request(),
    "GetAsyncInvokeConfig": lambda: _FC.get_config_op("fn", "LATEST"),
    "DeleteAsyncInvokeConfig": lambda: _FC.delete_config_op("fn", "LATEST"),
    "ListAsyncInvokeConfigs": lambda: _FC.config_pager(None).next_request(),
    "GetFunction": lambda: _FC.get_function_op("fn", None),
    "MNS ReceiveMessage": lambda: _MNS.receive_op("q", 16, 1, False),
    "MNS PeekMessage": lambda: _MNS.receive_op("q", 1, None, True),
    "MNS SendMessage": lambda: _MNS.send_op("q", "body", None, None),
    "MNS BatchSendMessage": lambda: _MNS.batch_send_ops("q", ["a", "b"])[0],
    "MNS DeleteMessage": lambda: _MNS.delete_message_op("q", "handle"),
    "MNS BatchDeleteMessage": lambda: _MNS.batch_delete_ops("q", ["h1", "h2"])[0],
    "MNS ChangeMessageVisibility": lambda: _MNS.change_visibility_op("q", "handle", 30),
    "MNS GetQueueAttributes": lambda: _MNS.queue_attributes_op("q"),
    "MNS CreateQueue": lambda: _MNS.create_queue_op("q", {}),
}

# Bodies that look almost right: the fuzzer mutates and mixes these with arbitrary bytes.
_TASK = {
    "taskId": "t1",
    "requestId": "r1",
    "status": "Succeeded",
    "events": [{"status": "Enqueued", "eventId": 1, "timestamp": 1700000000000}],
    "functionArn": "acs:fc:cn-hangzhou:1:functions/fn",
    "startedTime": 1700000000000,
}
SEEDS = [
    b"",
    b"{}",
    b"[]",
    b"null",
    b'{"Code": "Throttled", "Message": "slow down"',
    json.dumps(_TASK).encode(),
    json.dumps({"asyncTasks": [_TASK, {"taskId": 5}], "nextToken": 3}).encode(),
    json.dumps({"configs": [{"asyncTask": "yes"}], "nextToken": None}).encode(),
    b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    b'<?xml version="1.0"?><Messages xmlns="http://mns.aliyuncs.com/doc/v1/"><Message><MessageId>1</MessageId>'
    b"<ReceiptHandle>h</ReceiptHandle><MessageBody>x</MessageBody><DequeueCount>z</DequeueCount></Message>"
    b"</Messages>",
    b'<?xml version="1.0"?><Error><Code>MessageNotExist</Code><Message>none</Message></Error>',
    b'<?xml version="1.0"?><Errors><Error><ErrorCode>x</ErrorCode></Error></Errors>',
    b"<Message><MessageId>1</MessageId>",
    b'<!DOCTYPE x [<!ENTITY a "aaaa">]><Messages>&a;</Messages>',
    b"\xff\xfe\x00garbage",
]

bodies = st.one_of(
    st.binary(max_size=600),
    st.sampled_from(SEEDS),
    st.tuples(st.sampled_from(SEEDS), st.integers(0, 400)).map(lambda t: t[0][: t[1]]),  # truncated
    st.tuples(st.sampled_from(SEEDS), st.binary(max_size=40)).map(lambda t: t[0] + t[1]),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(list(_TASK)), inner),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from([*_TASK, "asyncTasks", "nextToken", "events"]), st.integers() | st.text()
    ).map(lambda d: json.dumps({**_TASK, **d}).encode()),
)
statuses = st.sampled_from([200, 201, 202, 204, 301, 400, 403, 404, 409, 413, 429, 500, 502, 503, 599])
headers = st.dictionaries(
    st.sampled_from(
        ["x-fc-request-id", "x-mns-request-id", "x-acs-retry-after", "retry-after", "content-type"]
    ),
    st.text(max_size=20),
    max_size=3,
)


@pytest.mark.parametrize("name", sorted(OPS))
@settings(max_examples=150)
@given(status=statuses, hdrs=headers, body=bodies)
@example(status=200, hdrs={}, body=b'{"taskId":"t","status":"Running","startedTime":100000000000000000000}')
def test_any_reply_gives_a_value_or_an_fc_error(
    name: str, status: int, hdrs: dict[str, str], body: bytes
) -> None:
    op = OPS[name]()
    try:
        handle_reply(op, Reply(status, hdrs, body))
    except FcError as err:
        assert str(err)  # a message naming the problem
        if not 200 <= status < 300:
            assert getattr(err, "status", status) == status


@settings(max_examples=300)
@given(body=bodies)
def test_any_destination_message_body_gives_a_record_none_or_an_fc_error(body: bytes) -> None:
    try:
        record = DestinationRecord.from_body(body)
    except FcError:
        return
    assert record is None or isinstance(record, DestinationRecord)
