"""The access key secret and the STS token appear in no log line, repr, str or exception message.

Real HTTP against a local server (port 0), so urllib3's own DEBUG logging is exercised too.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcAuthError, FcError
from airflow_fc_async.core.fc import AsyncFcClient, FcClient
from airflow_fc_async.core.http import FcConnectError, RetryPolicy
from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient
from airflow_fc_async.hooks.base import resolve_connection
from airflow_fc_async.hooks.fc import FcHook
from airflow_fc_async.hooks.mns import MnsHook

SECRET = "S3cr3t-AccessKey-Value-9f8e7d"
TOKEN = "STS-Token-Value-1a2b3c4d5e"
FAST = RetryPolicy(base_delay=0, max_delay=0, jitter=False)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]] = []
    replies: list[tuple[int, bytes]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self) -> None:
        size = int(self.headers.get("content-length") or 0)
        self.rfile.read(size)
        _Handler.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        status, body = _Handler.replies.pop(0) if _Handler.replies else (200, b"{}")
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-fc-request-id", "req-1")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _reply


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.seen.clear()
    _Handler.replies.clear()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def _leaks(text: str) -> bool:
    return SECRET in text or TOKEN in text


def _assert_clean_logs(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records
    for record in caplog.records:
        assert not _leaks(record.getMessage()), record.getMessage()
        assert not _leaks(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            assert not _leaks(str(record.exc_info[1]))


def test_sync_clients(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("urllib3").setLevel(logging.DEBUG)
    creds = Credentials("STS.key-id", SECRET, TOKEN)
    fc = FcClient(server, creds, retry=FAST)
    mns = MnsClient(server, creds, retry=FAST)
    _Handler.replies += [
        (503, b"busy"),  # a retry: its warning is logged
        (202, b""),
        (200, json.dumps({"taskId": "t1", "status": "Running"}).encode()),
        (403, json.dumps({"Code": "SignatureNotMatch", "Message": "bad signature"}).encode()),
        (201, b'<Message xmlns="http://mns.aliyuncs.com/doc/v1/"><MessageId>m</MessageId></Message>'),
    ]
    fc.invoke_async("fn", {"a": 1}, task_id="t1")
    fc.get_async_task("fn", "t1")
    with pytest.raises(FcAuthError) as err:
        fc.get_function("fn")
    mns.send_message("q", "hello")
    errors: list[BaseException] = [err.value]
    for text in (
        repr(creds),
        str(creds),
        repr(fc),
        str(fc),
        repr(mns),
        repr(AsyncFcClient(server, creds)),
        repr(AsyncMnsClient(server, creds)),
        repr(fc._requests.sign(fc._requests.get_task_op("fn", "t1", "LATEST"))),
    ):
        assert not _leaks(text), text
    fc.close()
    mns.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FcConnectError) as refused:
        FcClient(f"http://127.0.0.1:{port}", creds, retry=FAST).get_async_task("fn", "t1")
    errors.append(refused.value)
    for exc in errors:
        assert not _leaks(str(exc)) and not _leaks(repr(exc)) and not _leaks(repr(exc.args))
    assert any(r.name.startswith("urllib3") for r in caplog.records), "urllib3 debug logging was not captured"
    assert any("attempt 1 of 4" in r.getMessage() for r in caplog.records)
    _assert_clean_logs(caplog)
    # on the wire: the token only in its own header, the secret nowhere
    for request in _Handler.seen:
        for name, value in request.items():
            assert SECRET not in value
            assert TOKEN not in value or name in ("x-acs-security-token", "security-token"), name


async def test_async_clients(server: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    creds = Credentials("STS.key-id", SECRET, TOKEN)
    _Handler.replies += [(500, b"<html>oops</html>"), (404, b'{"Code":"AsyncTaskNotFound"}')]
    async with AsyncFcClient(
        server, creds, retry=RetryPolicy(max_attempts=2, base_delay=0, max_delay=0)
    ) as fc:
        with pytest.raises(FcError) as err:
            await fc.get_async_task("fn", "t1")
    assert not _leaks(str(err.value)) and not _leaks(repr(err.value))
    _assert_clean_logs(caplog)


def test_hooks_and_connection_settings(
    monkeypatch: pytest.MonkeyPatch, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    conn = {
        "conn_type": "alibaba_fc",
        "login": "key-id",
        "password": SECRET,
        "extra": {"security_token": TOKEN, "fc_endpoint": server, "mns_endpoint": server},
    }
    monkeypatch.setenv("AIRFLOW_CONN_FC_SECRET_TEST", json.dumps(conn))
    _Handler.replies += [(202, b""), (403, b'{"Code":"InvalidAccessKeyID","Message":"denied"}')]
    hook = FcHook(fc_conn_id="fc_secret_test", retry=FAST)
    hook.invoke_async("fn", {"x": 1}, task_id="t1")
    with pytest.raises(FcAuthError) as err:
        hook.get_async_task("fn", "t1")
    mns_hook = MnsHook(fc_conn_id="fc_secret_test")
    settings = hook.settings()
    for text in (
        repr(hook),
        str(hook),
        repr(mns_hook),
        repr(settings),
        str(settings),
        repr(hook.get_conn()),
        repr(mns_hook.get_conn()),
        str(err.value),
        repr(hook.__dict__),
    ):
        assert not _leaks(text), text
    bad = resolve_connection("c", conn_type="alibaba_fc", login="id", password=SECRET, extra={"region": "r"})
    with pytest.raises(FcError) as missing:
        bad.endpoint("fc")
    assert not _leaks(str(missing.value))
    hook.close()
    mns_hook.close()
    _assert_clean_logs(caplog)


@pytest.mark.parametrize(
    "body",
    [
        # FC's SignatureNotMatch quotes the canonical request, the token's header line included
        json.dumps(
            {
                "Code": "SignatureNotMatch",
                "Message": f"StringToSign: GET\n\nx-acs-date:2024\nx-acs-security-token:{TOKEN}\n"
                f"authorization: acs STS.key-id:{SECRET}",
            }
        ).encode(),
        # MNS XML, and a body that is not an error document at all (a proxy echoing the request headers)
        f"<Error><Code>SignatureDoesNotMatch</Code><Message>security-token:{TOKEN}</Message></Error>".encode(),
        f"bad gateway: x-acs-security-token: {TOKEN} x-mns-security-token={TOKEN}".encode(),
    ],
    ids=["fc_json", "mns_xml", "text"],
)
def test_a_server_that_quotes_the_token_does_not_put_it_in_the_error(
    server: str, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    """Issue 13 item 6: whatever the server quotes, FcAuthError and the Airflow exception carry no credential."""
    from airflow_fc_async.operators.outcome import airflow_error

    caplog.set_level(logging.DEBUG)
    _Handler.replies += [(403, body)]
    fc = FcClient(server, Credentials("STS.key-id", SECRET, TOKEN), retry=FAST)
    with fc, pytest.raises(FcAuthError) as err:
        fc.get_async_task("fn", "t1")
    wrapped = airflow_error(err.value, "Reading FC async task t1")
    for text in (str(err.value), repr(err.value), err.value.message, repr(err.value.args), str(wrapped)):
        assert not _leaks(text), text
        assert "***" in text
    _assert_clean_logs(caplog)
