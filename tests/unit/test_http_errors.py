"""Reply parsing into the error hierarchy, the retry policy, and endpoint parsing."""

from __future__ import annotations

import time

import pytest
import requests
import responses
from requests.structures import CaseInsensitiveDict

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import (
    FcApiError,
    FcAuthError,
    FcConflictError,
    FcInvalidArgumentError,
    FcNotFoundError,
    FcPayloadTooLargeError,
    FcResponseError,
    FcServerError,
    FcThrottledError,
    FcTransportError,
    FcValidationError,
)
from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.http import (
    BaseUrl,
    FcConnectError,
    Op,
    Reply,
    RetryPolicy,
    error_from_reply,
    handle_reply,
    parse_json,
    parse_xml,
)

EP = "https://1234.cn-hangzhou.fc.aliyuncs.com"
TASK_URL = EP + "/2023-03-30/functions/fn/async-tasks/t1"
TASK = {"taskId": "t1", "status": "Running"}


def reply(status: int, body: bytes | str = b"", **headers: str) -> Reply:
    data = body.encode() if isinstance(body, str) else body
    return Reply(status, CaseInsensitiveDict({k.replace("_", "-"): v for k, v in headers.items()}), data)


def test_fc_3_json_error() -> None:
    body = '{"Code":"FunctionNotFound","Message":"function fn not found","RequestId":"1-abc"}'
    err = error_from_reply(reply(404, body, x_fc_request_id="hdr-id"))
    assert isinstance(err, FcNotFoundError)
    assert (err.status, err.code, err.message, err.request_id) == (
        404,
        "FunctionNotFound",
        "function fn not found",
        "1-abc",
    )
    assert str(err) == "HTTP 404 FunctionNotFound: function fn not found, request id 1-abc"
    assert not err.retryable


def test_lowercase_json_error() -> None:
    err = error_from_reply(reply(400, '{"code":"InvalidArgument","message":"bad limit","requestId":"r-2"}'))
    assert isinstance(err, FcInvalidArgumentError)
    assert (err.code, err.message, err.request_id) == ("InvalidArgument", "bad limit", "r-2")


def test_fc2_json_error() -> None:
    err = error_from_reply(
        reply(403, '{"errorCode":"SignatureNotMatch","errorMessage":"sig"}', x_fc_request_id="r3")
    )
    assert isinstance(err, FcAuthError)
    assert (err.code, err.message, err.request_id) == ("SignatureNotMatch", "sig", "r3")


def test_mns_xml_error() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><Error xmlns="http://mns.aliyuncs.com/doc/v1/">'
        "<Code>QueueNotExist</Code><Message>The queue name you provided is not exist.</Message>"
        "<RequestId>5C6B</RequestId><HostId>http://1234.mns.cn-hangzhou.aliyuncs.com</HostId><New>x</New></Error>"
    )
    err = error_from_reply(reply(404, body, x_mns_request_id="hdr"))
    assert isinstance(err, FcNotFoundError)
    assert (err.code, err.request_id) == ("QueueNotExist", "5C6B")
    assert err.message.startswith("The queue name")


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", FcServerError),
        (503, "Service Unavailable", FcServerError),
        (500, "", FcServerError),
        (404, "<!DOCTYPE html><html>Not Found</html>", FcNotFoundError),
        (400, "{truncated", FcInvalidArgumentError),
        (418, "teapot", FcApiError),
    ],
)
def test_unparsed_bodies_still_carry_status_and_request_id(status: int, body: str, cls: type) -> None:
    err = error_from_reply(reply(status, body, x_fc_request_id="rid-9"))
    assert type(err) is cls
    assert err.status == status
    assert err.code is None
    assert err.request_id == "rid-9"
    assert str(status) in str(err)
    if body:
        assert "unparsed error body" in err.message
        assert "<" not in err.message  # tags stripped
    else:
        assert err.message == "(empty body)"


def test_status_and_code_pick_the_class() -> None:
    assert isinstance(
        error_from_reply(reply(400, '{"Code":"EntityTooLarge","Message":"big"}')), FcPayloadTooLargeError
    )
    assert isinstance(error_from_reply(reply(409, '{"Code":"Conflict"}')), FcConflictError)
    throttled = error_from_reply(reply(429, '{"Code":"ResourceExhausted"}', x_acs_retry_after="3"))
    assert isinstance(throttled, FcThrottledError)
    assert throttled.retry_after == 3.0
    assert throttled.retryable


def test_handle_reply_recover_and_parse() -> None:
    op: Op[str] = Op(
        "X", "GET", "/", None, {}, b"", lambda r: "parsed", recover=lambda e, r: f"recovered {e.code}"
    )
    assert handle_reply(op, reply(200, "{}")) == "parsed"
    assert handle_reply(op, reply(404, '{"Code":"Gone"}')) == "recovered Gone"
    plain: Op[str] = Op("X", "GET", "/", None, {}, b"", lambda r: "parsed")
    with pytest.raises(FcNotFoundError):
        handle_reply(plain, reply(404, "{}"))


def test_success_bodies_that_do_not_parse() -> None:
    assert parse_json(reply(200, "")) == {}
    with pytest.raises(FcResponseError, match="not JSON") as err:
        parse_json(reply(200, "<html>proxy login</html>", x_fc_request_id="r1"))
    assert err.value.status == 200 and err.value.request_id == "r1" and err.value.retryable
    with pytest.raises(FcResponseError, match="not XML"):
        parse_xml(reply(200, "{}"))
    with pytest.raises(FcResponseError, match="expected <Message>, got <Queue>"):
        parse_xml(reply(200, '<Queue xmlns="http://mns.aliyuncs.com/doc/v1/"/>'), "Message")


# -- retry policy ----------------------------------------------------------------------------------------------
def api(status: int, code: str | None = None, retry_after: float | None = None) -> FcApiError:
    return error_from_reply(
        reply(status, f'{{"Code":"{code}"}}' if code else "", x_acs_retry_after=str(retry_after or ""))
    )


def test_which_errors_are_retried() -> None:
    p = RetryPolicy()
    assert p.should_retry(api(429))
    assert p.should_retry(api(500)) and p.should_retry(api(503))
    assert p.should_retry(FcTransportError("reset")) and p.should_retry(FcConnectError("refused"))
    assert p.should_retry(FcResponseError("garbled"))
    for status in (400, 401, 403, 404, 409, 413):
        assert not p.should_retry(api(status)), status
    assert not p.should_retry(FcValidationError("f", "p"))
    assert not p.should_retry(RuntimeError("bug"))
    # A call that could run twice is only repeated when nothing ran.
    assert p.should_retry(api(429), idempotent=False)
    assert p.should_retry(FcConnectError("refused"), idempotent=False)
    assert not p.should_retry(api(503), idempotent=False)
    assert not p.should_retry(FcTransportError("read timeout"), idempotent=False)


def test_backoff_is_capped_exponential_with_jitter() -> None:
    fixed = RetryPolicy(base_delay=0.5, max_delay=3.0, jitter=False)
    assert [fixed.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(base_delay=0.5, max_delay=3.0)
    samples = [jittered.delay(3) for _ in range(200)]
    assert all(1.0 <= s <= 2.0 for s in samples)
    assert len(set(samples)) > 100


def test_retry_after_overrides_backoff_up_to_a_cap() -> None:
    p = RetryPolicy(base_delay=0.1, max_delay=0.2, max_retry_after=10.0, jitter=False)
    assert p.delay(1, api(429, retry_after=4)) == 4.0
    assert p.delay(1, api(429, retry_after=600)) == 10.0
    assert p.delay(1, api(429)) == 0.1


def test_policy_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="base_delay"):
        RetryPolicy(base_delay=5, max_delay=1)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def client(**kw) -> FcClient:
    return FcClient(
        EP, Credentials("ak", "sk"), retry=RetryPolicy(**{"base_delay": 0.01, "max_delay": 0.02, **kw})
    )


@responses.activate
def test_429_then_success_honours_retry_after(sleeps: list[float]) -> None:
    responses.get(
        TASK_URL, status=429, json={"Code": "ResourceExhausted"}, headers={"x-acs-retry-after": "2"}
    )
    responses.get(TASK_URL, json=TASK)
    assert client().get_async_task("fn", "t1").task_id == "t1"
    assert len(responses.calls) == 2
    assert sleeps == [2.0]
    # each attempt is signed afresh: a new nonce
    nonces = {c.request.headers["x-acs-signature-nonce"] for c in responses.calls}
    assert len(nonces) == 2


@responses.activate
def test_5xx_exhausts_attempts_and_raises_the_last_error(sleeps: list[float]) -> None:
    responses.get(TASK_URL, status=503, body="Service Unavailable", headers={"x-fc-request-id": "r-last"})
    with pytest.raises(FcServerError) as err:
        client(max_attempts=3).get_async_task("fn", "t1")
    assert len(responses.calls) == 3
    assert len(sleeps) == 2 and all(0.005 <= s <= 0.02 for s in sleeps)
    assert err.value.request_id == "r-last"


@pytest.mark.parametrize("status", [400, 403, 404])
@responses.activate
def test_other_4xx_are_never_retried(status: int, sleeps: list[float]) -> None:
    responses.get(TASK_URL, status=status, json={"Code": "Nope", "Message": "no"})
    with pytest.raises(FcApiError):
        client().get_async_task("fn", "t1")
    assert len(responses.calls) == 1
    assert sleeps == []


@responses.activate
def test_connection_errors_are_retried(sleeps: list[float]) -> None:
    responses.get(TASK_URL, body=requests.ConnectionError("connection reset"))
    responses.get(TASK_URL, json=TASK)
    assert client().get_async_task("fn", "t1").status.value == "Running"
    assert len(responses.calls) == 2


@responses.activate
def test_garbled_success_is_retried_then_raised(sleeps: list[float]) -> None:
    responses.get(TASK_URL, body="<html>captive portal</html>")
    with pytest.raises(FcResponseError):
        client(max_attempts=2).get_async_task("fn", "t1")
    assert len(responses.calls) == 2


def test_refused_connection_is_a_connect_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once the socket closes
    c = FcClient(
        f"http://127.0.0.1:{port}", Credentials("ak", "sk"), retry=RetryPolicy.never(), connect_timeout=2
    )
    with pytest.raises(FcConnectError, match="GetAsyncTask"):
        c.get_async_task("fn", "t1")


# -- endpoints -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "url", "host"),
    [
        (
            "https://1234.cn-hangzhou.fc.aliyuncs.com",
            "https://1234.cn-hangzhou.fc.aliyuncs.com",
            "1234.cn-hangzhou.fc.aliyuncs.com",
        ),
        ("https://h.example:443/", "https://h.example", "h.example"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000", "127.0.0.1:9000"),
        ("http://localhost:80", "http://localhost", "localhost"),
        ("https://h.example:8443", "https://h.example:8443", "h.example:8443"),
        ("h.example", "https://h.example", "h.example"),
        ("http://[::1]:9000", "http://[::1]:9000", "[::1]:9000"),
    ],
)
def test_base_url(text: str, url: str, host: str) -> None:
    base = BaseUrl.parse(text)
    assert (base.url, base.host) == (url, host)


@pytest.mark.parametrize("text", ["", "ftp://h", "http://h/path", "http://h?x=1", "http://h:notaport"])
def test_bad_endpoints(text: str) -> None:
    with pytest.raises(FcValidationError, match="endpoint"):
        BaseUrl.parse(text)
