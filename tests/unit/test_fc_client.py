"""FcClient and AsyncFcClient at the HTTP level: request shapes, signatures as sent, invoke retry semantics,
pagination, configs. Sync over ``responses``; async against a tiny aiohttp server on port 0."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from aiohttp import web
from requests.structures import CaseInsensitiveDict

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import (
    FcConflictError,
    FcNotFoundError,
    FcServerError,
    FcTaskIdInUseError,
    FcValidationError,
)
from airflow_fc_async.core.fc import AsyncFcClient, FcClient
from airflow_fc_async.core.http import RetryPolicy
from airflow_fc_async.core.models import AsyncInvokeConfig, TaskStatus
from airflow_fc_async.core.signing import (
    canonical_query,
    fc_canonical_request,
    fc_signature,
    fc_string_to_sign,
    parse_fc_authorization,
)
from airflow_fc_async.core.task_query import AsyncTaskQuery
from airflow_fc_async.core.validation import check_task_id

EP = "https://1234.cn-hangzhou.fc.aliyuncs.com"
ROOT = EP + "/2023-03-30"
INVOKE = ROOT + "/functions/my-func/invocations"
TASKS = ROOT + "/functions/my-func/async-tasks"
CONFIG = ROOT + "/functions/my-func/async-invoke-config"
FAST = RetryPolicy(base_delay=0, max_delay=0, jitter=False)
QUEUE_ARN = "acs:mns:cn-hangzhou:1234:/queues/fc-dest/messages"


def task_json(task_id: str = "t1", status: str = "Running", **extra: object) -> dict[str, object]:
    return {"taskId": task_id, "status": status, "requestId": f"req-{task_id}", **extra}


def assert_signed(method: str, url: str, headers: Mapping[str, str], body: bytes, secret: str = "sk") -> None:
    """The request verifies as the server would check it: signature, body hash, query sent == query signed."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    assert canonical_query(query) == parts.query
    parsed = parse_fc_authorization(headers["authorization"])
    assert parsed is not None
    _, signed, signature = parsed
    lowered = {k.lower(): v for k, v in headers.items()}
    canon = fc_canonical_request(
        method, parts.path, query, {h: lowered[h] for h in signed}, lowered["x-acs-content-sha256"]
    )
    assert fc_signature(secret, fc_string_to_sign(canon)) == signature
    assert lowered["x-acs-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert {"host", "x-acs-date", "x-acs-signature-nonce", "x-acs-action", "x-acs-version"} <= set(signed)


@pytest.fixture
def fc():
    client = FcClient(EP, Credentials("ak", "sk"), retry=FAST)
    yield client
    client.close()


@pytest.fixture
def rsps():
    with responses.RequestsMock() as mock:
        yield mock


# -- invoke ----------------------------------------------------------------------------------------------------
def test_invoke_async_request_shape(rsps, fc) -> None:
    rsps.post(INVOKE, status=202, headers={"x-fc-request-id": "1-abc"})
    inv = fc.invoke_async("my-func", {"key": "value"}, task_id="task-001", delay_seconds=30)
    assert (inv.task_id, inv.request_id) == ("task-001", "1-abc")
    req = rsps.calls[0].request
    assert req.method == "POST"
    assert req.url == INVOKE + "?qualifier=LATEST"
    assert req.body == b'{"key":"value"}'
    h = CaseInsensitiveDict(req.headers)
    assert h["x-fc-invocation-type"] == "Async"
    assert h["x-fc-async-task-id"] == "task-001"
    assert h["x-fc-async-delay"] == "30"
    assert h["content-type"] == "application/octet-stream"
    assert h["host"] == "1234.cn-hangzhou.fc.aliyuncs.com"
    assert h["x-acs-action"] == "InvokeFunction"
    assert h["content-length"] == "15"
    assert_signed(req.method, req.url, h, req.body)


def test_invoke_generates_a_task_id_and_keeps_it_across_retries(rsps, fc) -> None:
    rsps.post(INVOKE, status=503, body="busy")
    rsps.post(INVOKE, status=202, headers={"x-fc-request-id": "r2"})
    inv = fc.invoke_async("my-func", "raw text", qualifier="prod")
    assert check_task_id(inv.task_id) == inv.task_id
    sent = [c.request.headers["x-fc-async-task-id"] for c in rsps.calls]
    assert sent == [inv.task_id, inv.task_id]
    assert rsps.calls[1].request.url.endswith("?qualifier=prod")
    assert rsps.calls[1].request.body == b"raw text"


@pytest.mark.parametrize(
    ("task_reply", "why"),
    [
        ({"json": task_json("dup", taskPayload='{"run": 1}', requestId="1-old")}, "holds another payload"),
        ({"status": 404, "json": {"Code": "AsyncTaskNotFound"}}, "could be read back"),
    ],
)
def test_409_on_first_attempt_with_another_payload_is_refused(rsps, fc, task_reply, why) -> None:
    """Issue 13: a reused id never hands back the earlier invocation; the message names the id and what to do."""
    rsps.post(INVOKE, status=409, json={"Code": "AsyncTaskAlreadyExists", "Message": "exists"})
    rsps.get(TASKS + "/dup", **task_reply)
    with pytest.raises(FcConflictError) as err:
        fc.invoke_async("my-func", {"run": 2}, task_id="dup")
    text = str(err.value)
    assert "'dup'" in text and "my-func" in text and "already used (409)" in text and why in text
    assert "idempotency key" in text and "nightly-{{ ds }}" in text
    assert err.value.status == 409
    assert [c.request.method for c in rsps.calls] == ["POST", "GET"]  # one invoke: nothing sent twice


def test_409_on_first_attempt_with_the_same_payload_returns_the_existing_task(rsps, fc) -> None:
    """The same id and the same payload: an idempotency key's repeat, the existing task (flagged as such)."""
    rsps.post(INVOKE, status=409, json={"Code": "AsyncTaskAlreadyExists"})
    rsps.get(TASKS + "/nightly-1", json=task_json("nightly-1", taskPayload='{"run":1}', requestId="1-old"))
    inv = fc.invoke_async("my-func", {"run": 1}, task_id="nightly-1")
    assert (inv.task_id, inv.request_id, inv.conflict) == ("nightly-1", "1-old", "same-id")
    assert inv.existing is not None and inv.existing.task_id == "nightly-1"


def test_409_on_first_attempt_with_non_utf8_bytes_is_refused(rsps, fc) -> None:
    """FC records invalid bytes as U+FFFD: equal after replacement proves nothing about the original bytes."""
    rsps.post(INVOKE, status=409, json={"Code": "AsyncTaskAlreadyExists"})
    rsps.get(TASKS + "/bin", json=task_json("bin", taskPayload="a\ufffdb"))
    with pytest.raises(FcConflictError, match="not UTF-8"):
        fc.invoke_async("my-func", b"a\xffb", task_id="bin")


def test_409_on_retry_with_our_payload_is_success(rsps, fc) -> None:
    rsps.post(INVOKE, status=502, body="<html>bad gateway</html>")
    rsps.post(INVOKE, status=409, json={"Code": "AsyncTaskAlreadyExists"})
    # the server re-serialised the JSON: equal as JSON is still ours
    rsps.get(TASKS + "/job-1", json=task_json("job-1", taskPayload='{"a": 1, "b": [2]}', requestId="1-first"))
    inv = fc.invoke_async("my-func", {"a": 1, "b": [2]}, task_id="job-1")
    assert (inv.task_id, inv.request_id, inv.conflict) == ("job-1", "1-first", "retry")
    assert [c.request.method for c in rsps.calls] == ["POST", "POST", "GET"]


@pytest.mark.parametrize(
    "task_reply",
    [
        {"json": task_json("job-1", taskPayload='{"other":true}')},
        {"status": 404, "json": {"Code": "AsyncTaskNotFound"}},
    ],
)
def test_409_on_retry_with_another_payload_is_a_conflict(rsps, fc, task_reply) -> None:
    rsps.post(INVOKE, status=500, json={"Code": "InternalServerError"})
    rsps.post(INVOKE, status=409, json={"Code": "Conflict"})
    rsps.get(TASKS + "/job-1", **task_reply)
    with pytest.raises(FcConflictError, match="not this request"):
        fc.invoke_async("my-func", {"a": 1}, task_id="job-1")


def test_409_is_resolved_after_the_one_retry_path_with_a_read_back_of_its_own(rsps, fc) -> None:
    """Issue 18: invoke goes through run() like every call; the read-back is one GetAsyncTask after the invoke's
    attempts, with its own retries (not a retry loop nested inside an invoke attempt)."""
    rsps.post(INVOKE, status=503, body="busy")
    rsps.post(INVOKE, status=409, json={"Code": "AsyncTaskAlreadyExists"})
    rsps.get(TASKS + "/job-2", status=503, body="busy")
    rsps.get(TASKS + "/job-2", json=task_json("job-2", taskPayload="[1]", requestId="1-first"))
    inv = fc.invoke_async("my-func", [1], task_id="job-2")
    assert (inv.request_id, inv.conflict) == ("1-first", "retry")
    assert [c.request.method for c in rsps.calls] == ["POST", "POST", "GET", "GET"]


def test_a_refused_id_is_an_fc_task_id_in_use_error_that_says_why(rsps, fc) -> None:
    rsps.post(INVOKE, status=409, json={"Code": "AsyncTaskAlreadyExists"}, headers={"x-fc-request-id": "r9"})
    rsps.get(TASKS + "/dup", json=task_json("dup", taskPayload='{"run": 1}'))
    with pytest.raises(FcTaskIdInUseError) as err:
        fc.invoke_async("my-func", {"run": 2}, task_id="dup")
    assert isinstance(err.value, FcConflictError) and err.value.request_id == "r9"
    assert (err.value.task_id, err.value.function_name, err.value.why) == (
        "dup",
        "my-func",
        "that task holds another payload",
    )
    generated = err.value.message_for(generated=True)
    assert "already used (409)" in generated and "a new DAG run id gets new ids" in generated
    assert "nightly-{{ ds }}" not in generated  # a caller's-id advice does not fit a generated id


def test_invoke_sync_is_not_retried_after_a_5xx_but_is_after_429(rsps, fc) -> None:
    rsps.post(INVOKE, status=503, body="x")
    with pytest.raises(FcServerError):
        fc.invoke_sync("my-func", {"n": 1})
    assert len(rsps.calls) == 1
    rsps.post(INVOKE, status=429, json={"Code": "ResourceExhausted"})
    rsps.post(INVOKE, status=200, body=b"result-bytes")
    assert fc.invoke_sync("my-func", {"n": 1}) == b"result-bytes"
    assert rsps.calls[-1].request.headers["x-fc-invocation-type"] == "Sync"


# -- tasks -----------------------------------------------------------------------------------------------------
def test_get_async_task(rsps, fc) -> None:
    rsps.get(
        TASKS + "/t1",
        json=task_json(
            status="Failed",
            startedTime=1704067200000,
            endTime=1704067260000,
            alreadyRetriedTimes=1,
            taskErrorMessage="UnhandledInvocationError",
            events=[{"eventId": 1, "status": "Enqueued", "timestamp": 1}],
        ),
    )
    task = fc.get_async_task("my-func", "t1", qualifier="2")
    assert task.status is TaskStatus.FAILED and task.is_terminal
    assert task.started_time == datetime(2024, 1, 1, tzinfo=UTC)
    assert task.retried_times == 1 and len(task.events) == 1
    req = rsps.calls[0].request
    assert req.url == TASKS + "/t1?qualifier=2"
    assert req.headers["accept"] == "application/json"
    assert req.headers["x-acs-action"] == "GetAsyncTask"
    assert_signed(req.method, req.url, req.headers, b"")


def test_get_async_task_not_found(rsps, fc) -> None:
    rsps.get(TASKS + "/t1", status=404, json={"Code": "AsyncTaskNotFound", "Message": "no such task"})
    with pytest.raises(FcNotFoundError, match="AsyncTaskNotFound"):
        fc.get_async_task("my-func", "t1")


def test_stop_async_task(rsps, fc) -> None:
    rsps.put(TASKS + "/t1/stop", status=200, body="")
    assert fc.stop_async_task("my-func", "t1") is None
    req = rsps.calls[0].request
    assert (req.method, req.url) == ("PUT", TASKS + "/t1/stop?qualifier=LATEST")
    assert CaseInsensitiveDict(req.headers)["content-length"] == "0"


def test_list_follows_next_token_lazily_with_encoded_filters(rsps, fc) -> None:
    rsps.get(TASKS, json={"tasks": [task_json("a"), task_json("b")], "nextToken": "tok 2"})
    rsps.get(TASKS, json={"tasks": [task_json("c")], "nextToken": ""})
    it = fc.list_async_tasks(
        "my-func",
        prefix="job a/b",
        status="Failed",
        started_after=datetime(2024, 1, 1, tzinfo=UTC),
        include_payload=True,
        newest_first=False,
        page_size=20,
    )
    assert len(rsps.calls) == 0  # lazy
    assert [t.task_id for t in it] == ["a", "b", "c"]
    first, second = (urlsplit(c.request.url).query for c in rsps.calls)
    assert first == (
        "includePayload=true&limit=20&prefix=job%20a%2Fb&sortOrderByTime=asc&startedTimeBegin=1704067200000&status=Failed"
    )
    assert dict(parse_qsl(second))["nextToken"] == "tok 2"
    assert "nextToken=tok%202" in second
    for call in rsps.calls:
        assert_signed("GET", call.request.url, call.request.headers, b"")


def test_list_limit_stops_early_and_shrinks_the_page(rsps, fc) -> None:
    rsps.get(TASKS, json={"tasks": [task_json("a"), task_json("b")], "nextToken": "more"})
    assert [t.task_id for t in fc.list_async_tasks("my-func", limit=2, page_size=50)] == ["a", "b"]
    assert len(rsps.calls) == 1
    assert dict(parse_qsl(urlsplit(rsps.calls[0].request.url).query))["limit"] == "2"
    assert "sortOrderByTime=desc" in rsps.calls[0].request.url


def test_list_several_statuses_filters_here(rsps, fc) -> None:
    rsps.get(
        TASKS,
        json={"tasks": [task_json("a", "Failed"), task_json("b", "Succeeded"), task_json("c", "Stopped")]},
    )
    got = [t.task_id for t in fc.list_async_tasks("my-func", status=["Failed", TaskStatus.STOPPED])]
    assert got == ["a", "c"]
    assert "status=" not in rsps.calls[0].request.url


def test_list_stops_on_a_repeated_token(rsps, fc) -> None:
    rsps.get(TASKS, json={"tasks": [task_json("a")], "nextToken": "same"})
    rsps.get(TASKS, json={"tasks": [task_json("b")], "nextToken": "same"})
    assert [t.task_id for t in fc.list_async_tasks("my-func")] == ["a", "b"]
    assert len(rsps.calls) == 2


def test_list_takes_a_query_built_once(rsps, fc) -> None:
    rsps.get(TASKS, json={"tasks": [task_json("a", "Failed"), task_json("b", "Succeeded")]})
    query = AsyncTaskQuery("my-func", status=["Failed", "Stopped"], limit=5)
    assert [t.task_id for t in fc.list_async_tasks(query)] == ["a"]
    with pytest.raises(TypeError, match="not both"):
        fc.list_async_tasks(query, limit=1)
    with pytest.raises(FcValidationError, match="page_size"):
        AsyncTaskQuery("my-func", page_size=0)


# -- configs and functions -------------------------------------------------------------------------------------
def test_put_async_invoke_config(rsps, fc) -> None:
    rsps.put(
        CONFIG,
        json={
            "asyncTask": True,
            "maxAsyncRetryAttempts": 1,
            "functionArn": "acs:fc:x",
            "destinationConfig": {"onFailure": {"destination": QUEUE_ARN}},
        },
    )
    cfg = fc.put_async_invoke_config(
        "my-func", AsyncInvokeConfig(async_task=True, max_async_retry_attempts=1, on_failure=QUEUE_ARN)
    )
    assert cfg.on_failure == QUEUE_ARN and cfg.function_arn == "acs:fc:x"
    req = rsps.calls[0].request
    assert json.loads(req.body) == {
        "asyncTask": True,
        "maxAsyncRetryAttempts": 1,
        "destinationConfig": {"onFailure": {"destination": QUEUE_ARN}},
    }
    assert b" " not in req.body
    assert req.headers["content-type"] == "application/json; charset=utf-8"
    assert_signed("PUT", req.url, req.headers, req.body)


def test_get_async_invoke_config_none_when_absent(rsps, fc) -> None:
    rsps.get(CONFIG, status=404, json={"Code": "AsyncConfigNotExists"})
    assert fc.get_async_invoke_config("my-func") is None
    rsps.get(CONFIG, status=404, json={"Code": "FunctionNotFound"})
    with pytest.raises(FcNotFoundError, match="FunctionNotFound"):
        fc.get_async_invoke_config("my-func")
    rsps.get(CONFIG, json={"asyncTask": True, "maxAsyncEventAgeInSeconds": 3600})
    assert fc.get_async_invoke_config("my-func").max_async_event_age_in_seconds == 3600


def test_delete_and_list_configs_and_get_function(rsps, fc) -> None:
    rsps.delete(CONFIG, status=204)
    fc.delete_async_invoke_config("my-func", qualifier="prod")
    assert rsps.calls[0].request.url == CONFIG + "?qualifier=prod"
    rsps.get(ROOT + "/async-invoke-configs", json={"configs": [{"asyncTask": True}], "nextToken": "n"})
    rsps.get(ROOT + "/async-invoke-configs", json={"configs": [{"asyncTask": False}]})
    assert [c.async_task for c in fc.list_async_invoke_configs(function_name="my-func")] == [True, False]
    assert "functionName=my-func" in rsps.calls[1].request.url
    rsps.get(ROOT + "/functions/my-func", json={"functionName": "my-func", "timeout": 60})
    assert fc.get_function("my-func")["timeout"] == 60
    assert rsps.calls[-1].request.url == ROOT + "/functions/my-func"


def test_host_header_keeps_a_non_default_port_and_proxies_are_explicit(rsps) -> None:
    client = FcClient("http://127.0.0.1:9000", Credentials("ak", "sk"), proxies={"http": "http://proxy:3128"})
    assert client._transport.session.trust_env is False
    rsps.get("http://127.0.0.1:9000/2023-03-30/functions/fn", json={})
    client.get_function("fn")
    call = rsps.calls[0]
    assert call.request.headers["host"] == "127.0.0.1:9000"
    assert call.request.req_kwargs["proxies"] == {"http": "http://proxy:3128"}
    assert repr(client) == "FcClient(endpoint='http://127.0.0.1:9000', access_key_id='ak')"


# -- async client ----------------------------------------------------------------------------------------------
class Server:
    """A scripted HTTP server: replies are taken in order; every request is recorded as received."""

    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes, dict[str, str]]] = []
        self.requests: list[dict[str, object]] = []
        self.url = ""

    def add(self, status: int, body: bytes | dict | str = b"", **headers: str) -> None:
        data = (
            json.dumps(body).encode()
            if isinstance(body, dict)
            else body.encode()
            if isinstance(body, str)
            else body
        )
        self.replies.append((status, data, {k.replace("_", "-"): v for k, v in headers.items()}))

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        status, data, headers = self.replies.pop(0) if self.replies else (500, b"unscripted", {})
        return web.Response(status=status, body=data, headers=headers)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    srv.url = f"http://127.0.0.1:{port}"
    yield srv
    await runner.cleanup()


def assert_signed_async(req: dict[str, object], base: str) -> None:
    headers = {k.lower(): v for k, v in req["headers"].items()}  # type: ignore[union-attr]
    assert_signed(str(req["method"]), base + str(req["raw_path"]), headers, req["body"])  # type: ignore[arg-type]


async def test_async_invoke_and_get(server: Server) -> None:
    server.add(202, x_fc_request_id="1-async")
    server.add(200, task_json("t9", "Succeeded", returnPayload='{"ok":true}'))
    async with AsyncFcClient(server.url, Credentials("ak", "sk"), retry=FAST) as client:
        inv = await client.invoke_async("my-func", {"x": 1}, task_id="t9")
        task = await client.get_async_task("my-func", "t9")
    assert (inv.task_id, inv.request_id) == ("t9", "1-async")
    assert task.is_successful and task.return_payload == '{"ok":true}'
    invoke, get = server.requests
    assert get["method"] == "GET"
    assert invoke["body"] == b'{"x":1}'
    assert invoke["headers"]["Host"] == server.url.removeprefix("http://")  # type: ignore[index]
    for req in server.requests:
        assert_signed_async(req, server.url)


async def test_async_url_is_sent_exactly_as_signed(server: Server) -> None:
    server.add(200, {"tasks": [task_json("a")], "nextToken": "p/2 x"})
    server.add(200, {"tasks": [task_json("b")]})
    async with AsyncFcClient(server.url, Credentials("ak", "sk", "sts-token"), retry=FAST) as client:
        got = [t.task_id async for t in client.list_async_tasks("my-func", prefix="job a/b~c")]
    assert got == ["a", "b"]
    first, second = (str(r["raw_path"]) for r in server.requests)
    assert "prefix=job%20a%2Fb~c" in first
    assert "nextToken=p%2F2%20x" in second
    for req in server.requests:
        assert_signed_async(req, server.url)
        assert req["headers"]["x-acs-security-token"] == "sts-token"  # type: ignore[index]


async def test_async_invoke_409_on_retry_resolved(server: Server) -> None:
    server.add(503, "busy")
    server.add(409, {"Code": "AsyncTaskAlreadyExists"})
    server.add(200, task_json("job-7", taskPayload="hello", requestId="1-orig"))
    async with AsyncFcClient(server.url, Credentials("ak", "sk"), retry=FAST) as client:
        inv = await client.invoke_async("my-func", "hello", task_id="job-7")
    assert inv.request_id == "1-orig"
    assert [r["method"] for r in server.requests] == ["POST", "POST", "GET"]
    assert {r["headers"]["x-fc-async-task-id"] for r in server.requests[:2]} == {"job-7"}  # type: ignore[index]


async def test_async_first_attempt_409_and_errors(server: Server) -> None:
    server.add(409, {"Code": "Conflict"})
    server.add(200, task_json("taken", taskPayload='{"someone":"else"}'))
    server.add(404, {"Code": "FunctionNotFound", "Message": "gone"}, x_fc_request_id="r404")
    async with AsyncFcClient(server.url, Credentials("ak", "sk"), retry=FAST) as client:
        with pytest.raises(FcConflictError, match="already used"):
            await client.invoke_async("my-func", {}, task_id="taken")
        with pytest.raises(FcNotFoundError) as err:
            await client.get_function("my-func")
    assert err.value.request_id == "r404"
    assert len(server.requests) == 3


def test_sync_client_reuses_one_pooled_connection() -> None:
    """Real sockets: the lean adapter must hand each connection back to the pool after reading the reply."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    connections: list[int] = []
    body = json.dumps(task_json()).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            connections.append(1)

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with FcClient(f"http://127.0.0.1:{srv.server_port}", Credentials("ak", "sk")) as client:
            for _ in range(20):
                assert client.get_async_task("my-func", "t1").task_id == "t1"
    finally:
        srv.shutdown()
        srv.server_close()
    assert len(connections) == 1
