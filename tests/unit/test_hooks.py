"""FcHook and MnsHook: connection resolution, lazy reads, forwarding, rerun, config checks, async twins."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import responses
from aiohttp import web

from airflow_fc_async.core.endpoints import parse_console_task_url
from airflow_fc_async.core.errors import FcValidationError
from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.mns import MnsClient
from airflow_fc_async.hooks.base import resolve_connection
from airflow_fc_async.hooks.fc import FcHook, rerun_task_id
from airflow_fc_async.hooks.mns import MnsHook

FC = "https://1234.cn-hangzhou.fc.aliyuncs.com/2023-03-30/functions/my-fc-job"
QUEUE_ARN = "acs:mns:cn-hangzhou:1234:/queues/fc-dest/messages"
NS = "http://mns.aliyuncs.com/doc/v1/"


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, **conn: object) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def fc_conn(monkeypatch: pytest.MonkeyPatch) -> str:
    set_conn(
        monkeypatch,
        "fc_test",
        conn_type="alibaba_fc",
        extra={
            "access_key_id": "ak-id",
            "access_key_secret": "sk-secret-value",
            "region": "cn-hangzhou",
            "account_id": "1234",
        },
    )
    return "fc_test"


# -- resolution (pure) -----------------------------------------------------------------------------------------
def test_extras_win_over_login_password() -> None:
    s = resolve_connection(
        "c",
        conn_type="alibaba_fc",
        login="login-id",
        password="pw",
        extra={
            "access_key_id": "x-id",
            "access_key_secret": "x-secret",
            "security_token": "tok",
            "region": "cn-shanghai",
            "account_id": "99",
        },
    )
    assert (s.credentials.access_key_id, s.credentials.access_key_secret, s.credentials.security_token) == (
        "x-id",
        "x-secret",
        "tok",
    )
    assert s.endpoint("fc") == "https://99.cn-shanghai.fc.aliyuncs.com"
    assert s.endpoint("mns") == "https://99.mns.cn-shanghai.aliyuncs.com"
    assert s.overrides == frozenset()


def test_login_password_fallback_and_alibaba_cloud_type() -> None:
    s = resolve_connection(
        "c",
        conn_type="alibaba_cloud",
        login="id",
        password="secret",
        extra={"region": "cn-hangzhou", "account_id": "1"},
    )
    assert (s.credentials.access_key_id, s.credentials.access_key_secret) == ("id", "secret")
    assert s.credentials.security_token is None


def test_overrides_replace_scheme_host_port() -> None:
    s = resolve_connection(
        "c",
        conn_type="alibaba_fc",
        login="id",
        password="pw",
        extra={
            "fc_endpoint": "http://127.0.0.1:9000/",
            "mns_endpoint": "http://127.0.0.1:9000",
            "connect_timeout": "2.5",
            "read_timeout": 90,
        },
    )
    assert s.endpoint("fc") == s.endpoint("mns") == "http://127.0.0.1:9000"
    assert s.overrides == {"fc", "mns"}
    assert (s.connect_timeout, s.read_timeout) == (2.5, 90.0)
    assert s.region is None


def test_airflow2_prefixed_extras() -> None:
    s = resolve_connection(
        "c",
        conn_type="alibaba_fc",
        login="id",
        password="pw",
        extra={"extra__alibaba_fc__region": "cn-beijing", "extra__alibaba_fc__account_id": "7"},
    )
    assert s.endpoint("fc") == "https://7.cn-beijing.fc.aliyuncs.com"


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"account_id": "1"}, "region"), ({"region": "cn-hangzhou"}, "account_id"), ({}, "region")],
)
def test_missing_region_or_account_names_connection_and_field(extra: dict[str, str], field: str) -> None:
    s = resolve_connection("my_conn", conn_type="alibaba_fc", login="id", password="pw", extra=extra)
    with pytest.raises(FcValidationError) as err:
        s.endpoint("fc")
    assert err.value.field == field
    assert "'my_conn'" in str(err.value) and field in str(err.value) and "fc_endpoint" in str(err.value)


def test_missing_credentials_and_bad_values() -> None:
    with pytest.raises(FcValidationError, match="'c' has no access key id"):
        resolve_connection("c", conn_type="alibaba_fc", login=None, password="pw", extra={})
    with pytest.raises(FcValidationError, match="'c' has no access key secret"):
        resolve_connection("c", conn_type="alibaba_fc", login="id", password=None, extra={})
    with pytest.raises(FcValidationError, match=r"connection 'c'.*no path"):
        resolve_connection(
            "c", conn_type="alibaba_fc", login="id", password="pw", extra={"fc_endpoint": "http://h/x"}
        )
    with pytest.raises(FcValidationError, match=r"read_timeout.*must be a number"):
        resolve_connection(
            "c", conn_type="alibaba_fc", login="id", password="pw", extra={"read_timeout": "soon"}
        )


# -- FcHook ----------------------------------------------------------------------------------------------------
def test_hook_declarations() -> None:
    assert (FcHook.conn_name_attr, FcHook.default_conn_name, FcHook.conn_type) == (
        "fc_conn_id",
        "fc_default",
        "alibaba_fc",
    )
    assert FcHook.hook_name == "Alibaba Cloud Function Compute"
    assert "get_ui_field_behaviour" in FcHook.__dict__ and "get_connection_form_widgets" in FcHook.__dict__
    assert set(FcHook.get_ui_field_behaviour()["hidden_fields"]) >= {"schema", "port", "host"}
    assert FcHook().fc_conn_id == "fc_default"


def test_connection_is_read_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = FcHook(fc_conn_id="does_not_exist")  # no error: nothing read yet
    assert repr(hook) == "FcHook(fc_conn_id='does_not_exist')"
    with pytest.raises(Exception, match="does_not_exist"):
        hook.get_conn()


@responses.activate
def test_invoke_and_get_through_the_hook(fc_conn: str) -> None:
    responses.post(FC + "/invocations", status=202, headers={"x-fc-request-id": "1-r"})
    responses.get(FC + "/async-tasks/t1", json={"taskId": "t1", "status": "Succeeded"})
    hook = FcHook(fc_conn_id=fc_conn)
    inv = hook.invoke_async("my-fc-job", {"failure": True}, task_id="t1")
    assert (inv.task_id, inv.request_id) == ("t1", "1-r")
    assert hook.get_async_task("my-fc-job", "t1").is_successful
    assert isinstance(hook.get_conn(), FcClient) and hook.get_conn() is hook.get_conn()
    assert responses.calls[0].request.body == b'{"failure":true}'
    assert (
        responses.calls[0].request.headers["authorization"].startswith("ACS3-HMAC-SHA256 Credential=ak-id,")
    )
    assert (hook.region, hook.account_id) == ("cn-hangzhou", "1234")
    assert hook.console_url("my-fc-job", "t1") == (
        "https://fcnext.console.aliyun.com/cn-hangzhou/functions/my-fc-job/async-task/t1?qualifier=LATEST"
    )


@responses.activate
def test_rerun_uses_the_source_payload_and_a_new_id(fc_conn: str) -> None:
    responses.get(
        FC + "/async-tasks/src-1", json={"taskId": "src-1", "status": "Failed", "taskPayload": '{"n": 1}'}
    )
    responses.post(FC + "/invocations", status=202, headers={"x-fc-request-id": "1-new"})
    inv = FcHook(fc_conn_id=fc_conn).rerun_async_task("my-fc-job", "src-1", qualifier="prod")
    assert re.fullmatch(r"src-1-rerun-[0-9a-f]{6}", inv.task_id)
    post = responses.calls[1].request
    assert post.body == b'{"n": 1}'  # byte for byte, not re-serialised
    assert post.headers["x-fc-async-task-id"] == inv.task_id
    assert post.url.endswith("?qualifier=prod")


@responses.activate
def test_rerun_with_an_explicit_id(fc_conn: str) -> None:
    responses.get(
        FC + "/async-tasks/src-1", json={"taskId": "src-1", "status": "Succeeded", "taskPayload": "raw"}
    )
    responses.post(FC + "/invocations", status=202)
    assert (
        FcHook(fc_conn_id=fc_conn).rerun_async_task("my-fc-job", "src-1", new_task_id="again").task_id
        == "again"
    )
    assert responses.calls[1].request.body == b"raw"


def test_rerun_ids_stay_within_128() -> None:
    long_id = "a" * 128
    new = rerun_task_id(long_id)
    assert len(new) == 128 and new.startswith("a" * 100) and "-rerun-" in new
    assert rerun_task_id("x") != rerun_task_id("x")


@responses.activate
def test_put_async_invoke_config_checks_before_sending(fc_conn: str) -> None:
    hook = FcHook(fc_conn_id=fc_conn)
    with pytest.raises(FcValidationError, match="max_async_retry_attempts"):
        hook.put_async_invoke_config("my-fc-job", max_async_retry_attempts=9)
    with pytest.raises(FcValidationError, match="max_async_event_age_in_seconds"):
        hook.put_async_invoke_config("my-fc-job", max_async_event_age_in_seconds=2_592_001)
    with pytest.raises(FcValidationError, match="on_success"):
        hook.put_async_invoke_config("my-fc-job", on_success="fc-dest")
    assert len(responses.calls) == 0
    responses.put(FC + "/async-invoke-config", json={"asyncTask": True, "maxAsyncRetryAttempts": 1})
    cfg = hook.put_async_invoke_config("my-fc-job", max_async_retry_attempts=1, on_failure=QUEUE_ARN)
    assert cfg.max_async_retry_attempts == 1
    assert json.loads(responses.calls[0].request.body) == {
        "asyncTask": True,
        "maxAsyncRetryAttempts": 1,
        "destinationConfig": {"onFailure": {"destination": QUEUE_ARN}},
    }


# -- async twins against a local server (the connection points at it) ------------------------------------------
class Server:
    def __init__(self) -> None:
        self.replies: list[tuple[int, str]] = []
        self.paths: list[str] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.paths.append(f"{request.method} {request.raw_path}")
        status, body = self.replies.pop(0) if self.replies else (500, "unscripted")
        return web.Response(status=status, text=body)


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


@pytest.fixture
def local_conn(monkeypatch: pytest.MonkeyPatch, server: Server) -> str:
    set_conn(
        monkeypatch,
        "fc_local",
        conn_type="alibaba_fc",
        login="ak",
        password="sk-local-secret",
        extra={"fc_endpoint": server.url, "mns_endpoint": server.url},
    )
    return "fc_local"


async def test_async_twins_read_the_connection_without_sync_io(
    monkeypatch: pytest.MonkeyPatch, server: Server, local_conn: str
) -> None:
    from airflow.providers.common.compat.sdk import Connection

    real = FcHook.get_connection
    synced: list[str] = []

    def no_sync(cls: type, conn_id: str) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a worker thread: common-compat's fallback before Airflow 3.3.2
            synced.append(conn_id)
            return real(conn_id)
        raise AssertionError("sync get_connection called on the event loop")

    monkeypatch.setattr(FcHook, "get_connection", classmethod(no_sync))
    server.replies += [
        (202, ""),
        (200, json.dumps({"taskId": "t1", "status": "Running"})),
        (200, json.dumps({"tasks": [{"taskId": "t1", "status": "Running"}]})),
        (200, ""),
        (200, json.dumps({"functionName": "fn"})),
    ]
    hook = FcHook(fc_conn_id=local_conn)
    inv = await hook.ainvoke_async("fn", {"a": 1}, task_id="t1")
    assert inv.task_id == "t1"
    assert (await hook.aget_async_task("fn", "t1")).status.value == "Running"
    assert [t.task_id async for t in hook.alist_async_tasks("fn", status="Running")] == ["t1"]
    await hook.astop_async_task("fn", "t1")
    assert (await hook.aget_function("fn"))["functionName"] == "fn"
    await hook.aclose()
    assert server.paths[0] == "POST /2023-03-30/functions/fn/invocations?qualifier=LATEST"
    assert server.paths[3] == "PUT /2023-03-30/functions/fn/async-tasks/t1/stop?qualifier=LATEST"
    # 3.3.2+ reads it asynchronously (Connection.aextra_dejson); before, once, in a worker thread
    assert synced == ([] if hasattr(Connection, "aextra_dejson") else [local_conn])


async def test_console_url_without_region_is_the_emulator_console_page(
    server: Server, local_conn: str
) -> None:
    hook = FcHook(fc_conn_id=local_conn)
    await hook.asettings()  # settings cached: console_url reads no connection
    assert (
        hook.console_url("fn", "t1") == f"{server.url}/_console/functions/fn/async-tasks/t1?qualifier=LATEST"
    )


CONSOLE = "https://fcnext.console.aliyun.com/cn-hangzhou/functions/fn/async-task/t%2F1?qualifier=prod"


@pytest.mark.parametrize(
    ("fc_endpoint", "expected"),
    [
        (None, CONSOLE),
        ("https://1234.cn-hangzhou-internal.fc.aliyuncs.com", CONSOLE),  # a VPC endpoint is an override too
        ("https://fc-proxy.corp.example:8443", CONSOLE),
        (
            "http://127.0.0.1:9000",
            "http://127.0.0.1:9000/_console/functions/fn/async-tasks/t%2F1?qualifier=prod",
        ),
        (
            "http://localhost:9000/",
            "http://localhost:9000/_console/functions/fn/async-tasks/t%2F1?qualifier=prod",
        ),
        ("http://[::1]:9000", "http://[::1]:9000/_console/functions/fn/async-tasks/t%2F1?qualifier=prod"),
    ],
)
def test_console_url_with_region_stays_the_fc_console_unless_the_endpoint_is_the_emulator(
    monkeypatch: pytest.MonkeyPatch, fc_endpoint: str | None, expected: str
) -> None:
    extra = {"region": "cn-hangzhou", "account_id": "1234"}
    if fc_endpoint:
        extra["fc_endpoint"] = fc_endpoint
    set_conn(monkeypatch, "fc_console", conn_type="alibaba_fc", login="ak", password="sk", extra=extra)
    assert FcHook(fc_conn_id="fc_console").console_url("fn", "t/1", qualifier="prod") == expected
    # the UI's task-instance view reads the function, id and qualifier back from the stored link
    assert parse_console_task_url(expected) == ("fn", "t/1", "prod")


def test_only_console_task_urls_parse() -> None:
    for url in (
        "https://fcnext.console.aliyun.com/cn-hangzhou/functions/fn",
        "https://evil.example/cn-hangzhou/functions/fn/async-task/t1",
        "http://127.0.0.1:9000/_console/functions/fn/async-tasks",
        "",
    ):
        assert parse_console_task_url(url) is None, url


# -- MnsHook ---------------------------------------------------------------------------------------------------
@responses.activate
def test_mns_hook_forwards(fc_conn: str) -> None:
    url = "https://1234.mns.cn-hangzhou.aliyuncs.com/queues/fc-dest/messages"
    responses.post(url, status=201, body=f'<Message xmlns="{NS}"><MessageId>m1</MessageId></Message>')
    responses.get(url, status=404, body=f'<Error xmlns="{NS}"><Code>MessageNotExist</Code></Error>')
    hook = MnsHook(fc_conn_id=fc_conn)
    assert hook.send_message("fc-dest", "hi") == "m1"
    assert hook.receive_messages("fc-dest", wait_seconds=1) == []
    assert isinstance(hook.get_conn(), MnsClient)
    assert responses.calls[1].request.url == url + "?numOfMessages=16&waitseconds=1"
    hook.close()


async def test_mns_hook_async(server: Server, local_conn: str) -> None:
    server.replies += [
        (201, f'<Message xmlns="{NS}"><MessageId>m2</MessageId></Message>'),
        (200, f'<ChangeVisibility xmlns="{NS}"><ReceiptHandle>h2</ReceiptHandle></ChangeVisibility>'),
    ]
    hook = MnsHook(fc_conn_id=local_conn)
    assert await hook.asend_message("q1", "body") == "m2"
    assert await hook.achange_message_visibility("q1", "h1", 1) == "h2"
    await hook.aclose()
    assert server.paths == [
        "POST /queues/q1/messages",
        "PUT /queues/q1/messages?ReceiptHandle=h1&VisibilityTimeout=1",
    ]


def test_mns_hook_without_region_names_the_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(
        monkeypatch,
        "fc_only",
        conn_type="alibaba_fc",
        login="ak",
        password="sk-x",
        extra={"fc_endpoint": "http://127.0.0.1:9"},
    )
    with pytest.raises(FcValidationError, match="connection 'fc_only' has no region and no account_id"):
        MnsHook(fc_conn_id="fc_only").get_conn()


# -- one async client per hook (issue 13 item 10) ---------------------------------------------------------------
@pytest.mark.parametrize("hook_cls", [FcHook, MnsHook])
async def test_concurrent_first_calls_build_one_async_client(
    monkeypatch: pytest.MonkeyPatch, local_conn: str, hook_cls: type
) -> None:
    """50 coroutines asking at once while the connection read is in flight get one client, not 50."""
    import aiohttp

    hook = hook_cls(fc_conn_id=local_conn)
    real = hook.asettings

    async def slow_settings() -> Any:
        await asyncio.sleep(0.01)  # the await between the None check and the assignment
        return await real()

    monkeypatch.setattr(hook, "asettings", slow_settings)
    opened: list[Any] = []
    real_init = aiohttp.ClientSession.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        opened.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", counting_init)
    clients = await asyncio.gather(*(hook.aget_conn() for _ in range(50)))
    assert len({id(c) for c in clients}) == 1
    for client in clients:  # each client opens its session on first send: what every caller would do next
        client._transport._get_session()
    await hook.aclose()
    assert len(opened) == 1 and all(s.closed for s in opened)


def test_one_hook_serves_several_event_loops(local_conn: str) -> None:
    """The lock is per loop: a hook used from two asyncio.run() calls does not trip over a foreign loop's lock."""
    hook = FcHook(fc_conn_id=local_conn)

    async def first() -> Any:
        return await asyncio.gather(*(hook.aget_conn() for _ in range(5)))

    a = asyncio.run(first())
    hook._aclient = None  # a later loop builds afresh (an aiohttp session cannot cross loops)
    b = asyncio.run(first())
    assert len({id(c) for c in a}) == 1 and len({id(c) for c in b}) == 1
