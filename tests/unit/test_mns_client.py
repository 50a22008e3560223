"""MnsClient and AsyncMnsClient at the HTTP level: XML bodies byte for byte, resources signed exactly as sent,
namespace-aware parsing, error and batch semantics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import responses
from aiohttp import web

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcInvalidArgumentError, FcNotFoundError
from airflow_fc_async.core.http import RetryPolicy
from airflow_fc_async.core.mns import AsyncMnsClient, MnsBatchError, MnsClient, MnsMessage
from airflow_fc_async.core.signing import mns_signature, mns_string_to_sign, parse_mns_authorization

EP = "https://1234.mns.cn-hangzhou.aliyuncs.com"
MSGS = EP + "/queues/fc-dest/messages"
NS = "http://mns.aliyuncs.com/doc/v1/"
HEAD = '<?xml version="1.0" encoding="utf-8"?>'
FAST = RetryPolicy(base_delay=0, max_delay=0, jitter=False)
HANDLE = "1-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg=="


def xml(root: str, inner: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><{root} xmlns="{NS}">{inner}</{root}>'


def message_xml(mid: str = "m1", body: str = "hello", handle: str | None = HANDLE, extra: str = "") -> str:
    rh = f"<ReceiptHandle>{handle}</ReceiptHandle>" if handle else ""
    return (
        f"<Message><MessageId>{mid}</MessageId>{rh}<MessageBodyMD5>md5</MessageBodyMD5>"
        f"<MessageBody>{body}</MessageBody><EnqueueTime>1704067200000</EnqueueTime>"
        f"<NextVisibleTime>1704067230000</NextVisibleTime><FirstDequeueTime>1704067201000</FirstDequeueTime>"
        f"<DequeueCount>2</DequeueCount><Priority>8</Priority>{extra}</Message>"
    )


def assert_signed(method: str, url: str, headers: Mapping[str, str], secret: str = "sk") -> None:
    parts = urlsplit(url)
    resource = parts.path + (f"?{parts.query}" if parts.query else "")
    parsed = parse_mns_authorization(headers["authorization"])
    assert parsed is not None
    assert mns_signature(secret, mns_string_to_sign(method, resource, headers)) == parsed[1]


@pytest.fixture
def mns():
    client = MnsClient(EP, Credentials("ak", "sk"), retry=FAST)
    yield client
    client.close()


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


def test_send_message_body_is_byte_exact(rsps, mns) -> None:
    rsps.post(
        MSGS, status=201, body=xml("Message", "<MessageId>m-1</MessageId><MessageBodyMD5>x</MessageBodyMD5>")
    )
    assert mns.send_message("fc-dest", '{"k":"v"}') == "m-1"
    req = rsps.calls[0].request
    assert (
        req.body
        == (
            HEAD
            + f'<Message xmlns="{NS}"><MessageBody>{{&quot;k&quot;:&quot;v&quot;}}</MessageBody></Message>'
        ).encode()
    )
    assert req.headers["content-type"] == "text/xml;charset=UTF-8"
    assert req.headers["x-mns-version"] == "2015-06-06"
    assert "content-md5" not in req.headers
    assert_signed("POST", req.url, req.headers)


def test_send_escapes_and_options(rsps, mns) -> None:
    rsps.post(MSGS, status=201, body=xml("Message", "<MessageId>m-2</MessageId>"))
    mns.send_message("fc-dest", "a<b>&c\r\n'x'", delay_seconds=5, priority=1)
    body = rsps.calls[0].request.body.decode()
    assert (
        "<MessageBody>a&lt;b&gt;&amp;c&#13;\n'x'</MessageBody><DelaySeconds>5</DelaySeconds><Priority>1</Priority>"
        in body
    )


def test_receive_batch_long_poll(rsps, mns) -> None:
    body = xml(
        "Messages", message_xml("m1", extra="<MessageGroupId>g</MessageGroupId>") + message_xml("m2", "{}")
    )
    rsps.get(MSGS, body=body)
    got = mns.receive_messages("fc-dest", max_messages=16, wait_seconds=30)
    assert [m.message_id for m in got] == ["m1", "m2"]
    m = got[0]
    assert m == MnsMessage(
        message_id="m1",
        receipt_handle=HANDLE,
        body="hello",
        body_md5="md5",
        enqueue_time=datetime(2024, 1, 1, tzinfo=UTC),
        next_visible_time=datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC),
        first_dequeue_time=datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
        dequeue_count=2,
        priority=8,
    )
    call = rsps.calls[0]
    assert call.request.url == MSGS + "?numOfMessages=16&waitseconds=30"
    assert_signed("GET", call.request.url, call.request.headers)
    # the long poll gets a read timeout above its waitseconds
    assert call.request.req_kwargs["timeout"].read_timeout > 30


def test_single_receive_matches_vector_1_resource(rsps, mns) -> None:
    rsps.get(MSGS, body=xml("Message", message_xml()[len("<Message>") : -len("</Message>")]))
    got = mns.receive_messages("fc-dest", max_messages=1, wait_seconds=10)
    assert len(got) == 1 and got[0].receipt_handle == HANDLE
    assert rsps.calls[0].request.url == MSGS + "?waitseconds=10"


def test_receive_nothing_is_an_empty_list(rsps, mns) -> None:
    rsps.get(MSGS, status=404, body=xml("Error", "<Code>MessageNotExist</Code><Message>none</Message>"))
    assert mns.receive_messages("fc-dest", wait_seconds=1) == []
    rsps.get(MSGS, status=404, body=xml("Error", "<Code>QueueNotExist</Code><Message>no queue</Message>"))
    with pytest.raises(FcNotFoundError, match="QueueNotExist"):
        mns.receive_messages("fc-dest")


def test_peek(rsps, mns) -> None:
    rsps.get(MSGS, body=xml("Messages", message_xml(handle=None)))
    (m,) = mns.peek_messages("fc-dest", max_messages=4)
    assert m.receipt_handle is None
    assert rsps.calls[0].request.url == MSGS + "?peekonly=true&numOfMessages=4"


def test_delete_message_handle_quoted_and_signed_as_sent(rsps, mns) -> None:
    rsps.delete(MSGS, status=204)
    mns.delete_message("fc-dest", HANDLE)
    req = rsps.calls[0].request
    assert req.url == MSGS + "?ReceiptHandle=1-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg%3D%3D"
    assert_signed("DELETE", req.url, req.headers)
    rsps.delete(MSGS, status=404, body=xml("Error", "<Code>MessageNotExist</Code><Message>stale</Message>"))
    with pytest.raises(FcNotFoundError) as err:
        mns.delete_message("fc-dest", HANDLE)
    assert err.value.code == "MessageNotExist"


def test_change_visibility_returns_the_new_handle(rsps, mns) -> None:
    rsps.put(
        MSGS,
        body=xml(
            "ChangeVisibility", "<ReceiptHandle>new-h</ReceiptHandle><NextVisibleTime>1</NextVisibleTime>"
        ),
    )
    assert mns.change_message_visibility("fc-dest", "a/b+c", 1) == "new-h"
    req = rsps.calls[0].request
    assert req.url == MSGS + "?ReceiptHandle=a%2Fb%2Bc&VisibilityTimeout=1"
    assert "content-type" not in req.headers
    assert_signed("PUT", req.url, req.headers)
    rsps.put(MSGS, status=400, body=xml("Error", "<Code>ReceiptHandleError</Code><Message>bad</Message>"))
    with pytest.raises(FcInvalidArgumentError):
        mns.change_message_visibility("fc-dest", "x", 10)


def test_batch_send_chunks_by_16(rsps, mns) -> None:
    def ids(n: int, start: int) -> str:
        return xml(
            "Messages", "".join(f"<Message><MessageId>id{start + i}</MessageId></Message>" for i in range(n))
        )

    rsps.post(MSGS, status=201, body=ids(16, 0))
    rsps.post(MSGS, status=201, body=ids(4, 16))
    got = mns.batch_send_messages("fc-dest", [f"b{i}" for i in range(20)])
    assert got == [f"id{i}" for i in range(20)]
    first = rsps.calls[0].request.body.decode()
    assert first.startswith(HEAD + f'<Messages xmlns="{NS}"><Message><MessageBody>b0</MessageBody></Message>')
    assert first.count("<Message>") == 16


def test_batch_send_partial_failure_is_not_retried(rsps, mns) -> None:
    body = xml(
        "Messages",
        "<Message><MessageId>ok1</MessageId></Message>"
        "<Message><ErrorCode>InternalError</ErrorCode><ErrorMessage>oops</ErrorMessage></Message>",
    )
    rsps.post(MSGS, status=500, body=body)
    with pytest.raises(MnsBatchError, match="1 of 2 messages were not sent") as err:
        mns.batch_send_messages("fc-dest", ["a", "b"])
    assert err.value.message_ids == ["ok1", None]
    assert err.value.failures == [(1, "InternalError", "oops")]
    assert len(rsps.calls) == 1


def test_batch_delete(rsps, mns) -> None:
    rsps.delete(MSGS, status=204)
    assert mns.batch_delete_messages("fc-dest", ["h1", "h2"]) == []
    assert rsps.calls[0].request.body.decode() == (
        HEAD
        + f'<ReceiptHandles xmlns="{NS}"><ReceiptHandle>h1</ReceiptHandle><ReceiptHandle>h2</ReceiptHandle></ReceiptHandles>'
    )
    errors = xml(
        "Errors",
        "<Error><ErrorCode>MessageNotExist</ErrorCode><ErrorMessage>x</ErrorMessage><ReceiptHandle>h2</ReceiptHandle></Error>",
    )
    rsps.delete(MSGS, status=404, body=errors)
    assert mns.batch_delete_messages("fc-dest", ["h1", "h2"]) == [("h2", "MessageNotExist")]


def test_queues(rsps, mns) -> None:
    url = EP + "/queues/fc-dest"
    rsps.put(url, status=201, headers={"Location": url})
    assert mns.create_queue("fc-dest", visibility_timeout=60, polling_wait_seconds=10) is True
    assert rsps.calls[0].request.body.decode() == (
        HEAD
        + f'<Queue xmlns="{NS}"><VisibilityTimeout>60</VisibilityTimeout><PollingWaitSeconds>10</PollingWaitSeconds></Queue>'
    )
    rsps.put(url, status=204)
    assert mns.create_queue("fc-dest") is False
    with pytest.raises(TypeError, match="visibility"):
        mns.create_queue("fc-dest", visibility=5)  # type: ignore[call-arg]
    rsps.put(url, status=409, body=xml("Error", "<Code>QueueAlreadyExist</Code><Message>differs</Message>"))
    assert mns.create_queue("fc-dest", visibility_timeout=5) is False
    rsps.get(
        url,
        body=xml(
            "Queue", "<QueueName>fc-dest</QueueName><ActiveMessages>3</ActiveMessages><Unknown>z</Unknown>"
        ),
    )
    attrs = mns.get_queue_attributes("fc-dest")
    assert attrs["QueueName"] == "fc-dest" and attrs["ActiveMessages"] == 3 and attrs["Unknown"] == "z"
    rsps.delete(url, status=204)
    mns.delete_queue("fc-dest")
    assert rsps.calls[-1].request.method == "DELETE"


def test_sts_token_header(rsps) -> None:
    client = MnsClient(EP, Credentials("STS.testKeyId", "sk", "testSecurityToken"), retry=FAST)
    rsps.get(MSGS, status=404, body=xml("Error", "<Code>MessageNotExist</Code>"))
    client.receive_messages("fc-dest", max_messages=1, wait_seconds=10)
    req = rsps.calls[0].request
    assert req.headers["security-token"] == "testSecurityToken"
    assert req.headers["authorization"].startswith("MNS STS.testKeyId:")


# -- async -----------------------------------------------------------------------------------------------------
class Server:
    def __init__(self) -> None:
        self.replies: list[tuple[int, str]] = []
        self.requests: list[dict[str, object]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": await request.read(),
            }
        )
        status, body = self.replies.pop(0) if self.replies else (500, "unscripted")
        return web.Response(status=status, text=body, content_type="text/xml")


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield srv
    await runner.cleanup()


async def test_async_round_trip(server: Server) -> None:
    server.replies += [
        (201, xml("Message", "<MessageId>m9</MessageId>")),
        (200, xml("Messages", message_xml("m9", "{&quot;a&quot;:1}", handle="h/1="))),
        (204, ""),
        (404, xml("Error", "<Code>MessageNotExist</Code>")),
    ]
    async with AsyncMnsClient(server.url, Credentials("ak", "sk"), retry=FAST) as client:
        assert await client.send_message("fc-dest", json.dumps({"a": 1})) == "m9"
        (msg,) = await client.receive_messages("fc-dest", wait_seconds=1)
        assert msg.body == '{"a":1}'
        await client.delete_message("fc-dest", msg.receipt_handle)
        assert await client.receive_messages("fc-dest", max_messages=1) == []
    send, recv, delete, _ = server.requests
    assert send["body"].startswith(HEAD.encode())  # type: ignore[union-attr]
    assert recv["raw_path"] == "/queues/fc-dest/messages?numOfMessages=16&waitseconds=1"
    assert delete["raw_path"] == "/queues/fc-dest/messages?ReceiptHandle=h%2F1%3D"
    for req in server.requests:
        headers = {k.lower(): v for k, v in req["headers"].items()}  # type: ignore[union-attr]
        assert_signed(str(req["method"]), server.url + str(req["raw_path"]), headers)
        if not req["body"]:
            assert "content-type" not in headers  # an unsigned default would break the signature
