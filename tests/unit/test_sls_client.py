"""SlsClient and AsyncSlsClient: the reference signing vectors, the request as sent, Incomplete re-asked, paging,
errors in the one hierarchy, STS. Sync over ``responses``; async against a tiny aiohttp server on port 0."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from aiohttp import web

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.endpoints import sls_project_address
from airflow_fc_async.core.errors import (
    FcAuthError,
    FcNotFoundError,
    FcResponseError,
    FcServerError,
    FcThrottledError,
    FcValidationError,
)
from airflow_fc_async.core.http import RetryPolicy
from airflow_fc_async.core.signing import (
    parse_sls_authorization,
    sign_sls_request,
    sls_signature,
    sls_string_to_sign,
)
from airflow_fc_async.core.sls import AsyncSlsClient, SlsClient

EP = "https://cn-hangzhou.log.aliyuncs.com"
URL = "https://my-project.cn-hangzhou.log.aliyuncs.com/logstores/my-logstore"
FAST = RetryPolicy(base_delay=0, max_delay=0, jitter=False)
CREDS = Credentials("testAccessKeyId", "testAccessKeySecret")
DATE = "Mon, 01 Jan 2024 00:00:00 GMT"
PARAMS_A = {
    "type": "log",
    "from": "1704067200",
    "to": "1704070800",
    "query": 'requestId: 1-abc and "x y"',
    "line": "100",
    "offset": "0",
    "reverse": "false",
}


# -- signing: the reference vectors byte for byte ----------------------------------------------------------------
def test_vector_a_string_to_sign_and_authorization() -> None:
    headers = sign_sls_request(
        CREDS, method="GET", host="p.example", path="/logstores/my-logstore", params=PARAMS_A, date=DATE
    )
    expected = (
        "GET\n\n\nMon, 01 Jan 2024 00:00:00 GMT\nx-log-apiversion:0.6.0\nx-log-bodyrawsize:0\n"
        "x-log-signaturemethod:hmac-sha1\n/logstores/my-logstore?from=1704067200&line=100&offset=0"
        '&query=requestId: 1-abc and "x y"&reverse=false&to=1704070800&type=log'
    )
    assert sls_string_to_sign("GET", "/logstores/my-logstore", PARAMS_A, headers) == expected
    assert headers["authorization"] == "LOG testAccessKeyId:UJGNrGQcbKgk7JVm5NYqHmtjcHk="
    assert "content-type" not in headers and "content-md5" not in headers and "x-log-date" not in headers


def test_vector_b_sts_token_is_signed_first() -> None:
    creds = Credentials("testAccessKeyId", "testAccessKeySecret", "testSecurityToken")
    headers = sign_sls_request(
        creds, method="GET", host="p.example", path="/logstores/my-logstore", params=PARAMS_A, date=DATE
    )
    sts = sls_string_to_sign("GET", "/logstores/my-logstore", PARAMS_A, headers)
    assert sts.split("\n")[4] == "x-acs-security-token:testSecurityToken"
    assert headers["authorization"] == "LOG testAccessKeyId:xO8ewTwrjlPbslwAZ4ETdGMV1O0="


def test_unsigned_headers_do_not_change_the_signature() -> None:
    base = {"date": DATE, "x-log-apiversion": "0.6.0"}
    noisy = {**base, "host": "a.b", "content-length": "0", "user-agent": "x", "x-log-meta-foo": "1"}
    assert sls_string_to_sign("GET", "/x", {}, base) == sls_string_to_sign("GET", "/x", {}, noisy)
    assert parse_sls_authorization("LOG id:sig=") == ("id", "sig=")
    assert parse_sls_authorization("MNS id:sig") is None


def test_project_address_host_prefix_or_host_header() -> None:
    assert sls_project_address("https", "cn-hangzhou.log.aliyuncs.com", "p") == (
        "https://p.cn-hangzhou.log.aliyuncs.com",
        "p.cn-hangzhou.log.aliyuncs.com",
    )
    # an override that is not an Alibaba Cloud domain (the emulator, an IP): connect as given, project in Host
    assert sls_project_address("http", "127.0.0.1:9000", "p") == ("http://127.0.0.1:9000", "p.127.0.0.1:9000")


# -- sync client over responses ----------------------------------------------------------------------------------
def rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {"message": f"line {i}", "__time__": "1704067200", "instanceID": "c-1"}
        for i in range(start, start + n)
    ]


def reply(body: object, status: int = 200, progress: str = "Complete") -> dict[str, object]:
    return {
        "status": status,
        "body": json.dumps(body),
        "headers": {"x-log-progress": progress, "x-log-count": "0", "x-log-requestid": "req-1"},
    }


@responses.activate
def test_get_logs_request_as_sent_and_rows() -> None:
    responses.add(responses.GET, URL, **reply(rows(2)))  # type: ignore[arg-type]
    with SlsClient(EP, CREDS, retry=FAST) as client:
        page = client.get_logs(
            "my-project", "my-logstore", 1704067200, 1704070800, query='instanceID: "c 1"', topic="FCLogs:f"
        )
    assert [r["message"] for r in page.rows] == ["line 0", "line 1"]
    assert page.complete and page.request_id == "req-1"
    sent = responses.calls[0].request
    parts = urlsplit(sent.url)
    assert parts.hostname == "my-project.cn-hangzhou.log.aliyuncs.com"
    assert "%20" in parts.query and "+" not in parts.query  # encoded on the wire
    params = dict(parse_qsl(parts.query))
    assert params == {
        "type": "log",
        "from": "1704067200",
        "to": "1704070800",
        "line": "100",
        "offset": "0",
        "reverse": "false",
        "query": 'instanceID: "c 1"',
        "topic": "FCLogs:f",
    }
    headers = {k.lower(): v for k, v in sent.headers.items()}
    assert headers["host"] == "my-project.cn-hangzhou.log.aliyuncs.com"
    assert headers["x-log-apiversion"] == "0.6.0" and headers["x-log-bodyrawsize"] == "0"
    key_id, signature = parse_sls_authorization(headers["authorization"]) or ("", "")
    # the server's check: the decoded values, raw, in the resource
    expected = sls_signature("testAccessKeySecret", sls_string_to_sign("GET", parts.path, params, headers))
    assert key_id == "testAccessKeyId" and signature == expected


@responses.activate
def test_incomplete_is_asked_again() -> None:
    responses.add(responses.GET, URL, **reply([], progress="Incomplete"))  # type: ignore[arg-type]
    responses.add(responses.GET, URL, **reply(rows(1)))  # type: ignore[arg-type]
    with SlsClient(EP, CREDS, retry=FAST, incomplete_pause=0) as client:
        page = client.get_logs("my-project", "my-logstore", 1, 2)
    assert page.complete and len(page.rows) == 1 and len(responses.calls) == 2


@responses.activate
def test_incomplete_forever_gives_the_last_page_marked_incomplete() -> None:
    for _ in range(3):
        responses.add(responses.GET, URL, **reply(rows(1), progress="Incomplete"))  # type: ignore[arg-type]
    with SlsClient(EP, CREDS, retry=FAST, incomplete_attempts=3, incomplete_pause=0) as client:
        page = client.get_logs("my-project", "my-logstore", 1, 2)
    assert not page.complete and len(responses.calls) == 3


@responses.activate
def test_paging_adds_the_count_to_offset_until_a_short_page() -> None:
    responses.add(responses.GET, URL, **reply(rows(100)))  # type: ignore[arg-type]
    responses.add(responses.GET, URL, **reply(rows(100, 100)))  # type: ignore[arg-type]
    responses.add(responses.GET, URL, **reply(rows(5, 200)))  # type: ignore[arg-type]
    with SlsClient(EP, CREDS, retry=FAST) as client:
        got = list(client.iter_logs("my-project", "my-logstore", 1, 2))
    assert [r["message"] for r in got] == [f"line {i}" for i in range(205)]
    offsets = [dict(parse_qsl(urlsplit(c.request.url).query))["offset"] for c in responses.calls]
    assert offsets == ["0", "100", "200"]


@pytest.mark.parametrize(
    ("status", "code", "cls", "attempts"),
    [
        (401, "SignatureNotMatch", FcAuthError, 1),
        (404, "LogStoreNotExist", FcNotFoundError, 1),
        (403, "ReadQuotaExceed", FcThrottledError, 4),
        (500, "InternalServerError", FcServerError, 4),
    ],
)
@responses.activate
def test_errors_map_into_the_one_hierarchy(status: int, code: str, cls: type, attempts: int) -> None:
    for _ in range(attempts):
        responses.add(
            responses.GET,
            URL,
            status=status,
            body=json.dumps({"errorCode": code, "errorMessage": "nope"}),
            headers={"x-log-requestid": "rid-9"},
        )
    with SlsClient(EP, CREDS, retry=FAST) as client, pytest.raises(cls) as info:
        client.get_logs("my-project", "my-logstore", 1, 2)
    err = info.value
    assert err.code == code and err.status == status and err.request_id == "rid-9"  # type: ignore[attr-defined]
    assert len(responses.calls) == attempts  # only throttling and 5xx are retried


@responses.activate
def test_a_body_that_is_not_an_array_is_a_response_error() -> None:
    responses.add(responses.GET, URL, json={"not": "rows"})
    with SlsClient(EP, CREDS, retry=RetryPolicy.never()) as client, pytest.raises(FcResponseError):
        client.get_logs("my-project", "my-logstore", 1, 2)


def test_arguments_checked_before_sending() -> None:
    client = SlsClient(EP, CREDS)
    with pytest.raises(FcValidationError, match="from_time"):
        client.get_logs("p", "s", 5, 5)  # from == to is an error
    with pytest.raises(FcValidationError, match="line"):
        client.get_logs("p", "s", 1, 2, line=101)
    with pytest.raises(FcValidationError, match="project"):
        client.get_logs("", "s", 1, 2)
    assert "secret" not in repr(client).lower()


# -- async client against a tiny server -------------------------------------------------------------------------
@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    seen: list[web.Request] = []
    answers = [("Incomplete", rows(0)), ("Complete", rows(100)), ("Complete", rows(3, 100))]

    async def handler(request: web.Request) -> web.Response:
        seen.append(request)
        progress, body = answers.pop(0)
        return web.json_response(body, headers={"x-log-progress": progress})

    app = web.Application()
    app.router.add_get("/logstores/{store}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_async_twin_pages_and_reasks(server: tuple[str, list[web.Request]]) -> None:
    endpoint, seen = server
    creds = Credentials("id", "secret", "tok")
    async with AsyncSlsClient(endpoint, creds, retry=FAST, incomplete_pause=0) as client:
        got = [r async for r in client.iter_logs("proj", "store", 1, 2, query='"a b"')]
    assert len(got) == 103
    assert [r.query["offset"] for r in seen] == ["0", "0", "100"]  # Incomplete re-asked, then paged
    first = seen[0]
    assert first.headers["Host"] == f"proj.{endpoint.split('://')[1]}"  # the project in the Host header
    assert first.headers["x-acs-security-token"] == "tok"
    params = dict(first.query)
    expected = sls_signature("secret", sls_string_to_sign("GET", first.path, params, dict(first.headers)))
    assert first.headers["Authorization"] == f"LOG id:{expected}"
