"""R6: bad inputs and garbage replies give a clear error naming the problem, fail without retry where a retry
cannot help, send no invocation, and never crash the trigger."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowNotFoundException,
)

from airflow_fc_async.core.errors import FcError, FcResponseError
from airflow_fc_async.core.http import RetryPolicy
from airflow_fc_async.hooks.fc import FcHook
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger
from tests.reliability._harness import RUN_ID, FakeTI, Store

# -- operator arguments and connections ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    kwargs: dict[str, Any]
    expect: type[BaseException]  # ValueError: refused when the DAG is parsed; else raised by execute()
    words: tuple[str, ...]  # the message names the problem
    conn: dict[str, Any] | None = None  # extra of connection fc_bad (fc_conn_id="fc_bad")
    after_init: dict[str, Any] | None = None  # attributes set after __init__: what templating renders


def _extra(emu: Any, **changes: Any) -> dict[str, Any]:
    extra = dict(emu.connection_extra())
    for key, value in changes.items():
        if value is None:
            extra.pop(key, None)
        else:
            extra[key] = value
    return extra


CASES = [
    Case("empty function name", {"function_name": " "}, ValueError, ("function_name",)),
    Case("bad function name", {"function_name": "bad name!"}, AirflowFailException, ("function_name",)),
    Case("function name too long", {"function_name": "f" * 200}, AirflowFailException, ("function_name",)),
    Case("bad qualifier", {"qualifier": "prod/v1"}, AirflowFailException, ("qualifier", "prod/v1")),
    Case("empty qualifier", {"qualifier": ""}, ValueError, ("qualifier",)),
    Case("bad async_task_id", {"async_task_id": "9-starts-with-a-digit"}, ValueError, ("async_task_id",)),
    Case("async_task_id too long", {"async_task_id": "a" * 129}, ValueError, ("async_task_id",)),
    Case(
        "rendered async_task_id invalid",
        {"async_task_id": "{{ params.id }}"},
        AirflowFailException,
        ("async_task_id", "has space"),
        after_init={"async_task_id": "has space"},
    ),
    Case(
        "payload over 128 KB", {"payload": {"blob": "x" * 140_000}}, AirflowFailException, ("payload", "KB")
    ),
    Case(
        "payload not serialisable", {"payload": {"when": object()}}, AirflowFailException, ("payload", "JSON")
    ),
    Case("payload of a wrong type", {"payload": 3.5}, ValueError, ("payload", "float")),
    Case(
        "payload rendered to a wrong type",
        {"payload": "{{ 1 }}"},
        AirflowFailException,
        ("payload", "int"),
        after_init={"payload": 1},
    ),
    # Airflow's own error: retried like any lookup (a secrets backend may be down, the connection may be added).
    Case(
        "unknown connection",
        {"fc_conn_id": "fc_no_such_conn"},
        AirflowNotFoundException,
        ("fc_no_such_conn",),
    ),
    Case("missing region", {}, AirflowFailException, ("region",), conn={"region": None, "fc_endpoint": None}),
    Case(
        "missing account id",
        {},
        AirflowFailException,
        ("account_id",),
        conn={"account_id": None, "fc_endpoint": None},
    ),
    Case("missing access key", {}, AirflowFailException, ("access_key",), conn={"access_key_id": None}),
    Case("wrong secret", {}, AirflowFailException, ("403",), conn={"access_key_secret": "not-the-secret"}),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_clearly_without_invoking(
    case: Case, conn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = conn
    kwargs: dict[str, Any] = {
        "function_name": "echo",
        "payload": {"ok": 1},
        "poll_interval": 1,
        **case.kwargs,
    }
    if case.conn is not None:
        monkeypatch.setenv(
            "AIRFLOW_CONN_FC_BAD", json.dumps({"conn_type": "alibaba_fc", "extra": _extra(emu, **case.conn)})
        )
        kwargs["fc_conn_id"] = "fc_bad"
    before = emu.stats()
    if case.expect is ValueError:
        with pytest.raises(ValueError) as info:
            FcInvokeAsyncOperator(task_id="r6", **kwargs)
    else:
        op = FcInvokeAsyncOperator(task_id="r6", **kwargs)
        for key, value in (case.after_init or {}).items():
            setattr(op, key, value)
        ctx = {"ti": FakeTI("rel_r6", "r6", 1), "run_id": RUN_ID, "task_state_store": Store()}
        with pytest.raises(AirflowException) as info:
            op.execute(ctx)  # type: ignore[arg-type]
    after = emu.stats()
    message = str(info.value)
    print(f"\nR6 {case.name}: {type(info.value).__name__}: {message[:160]}")
    assert isinstance(info.value, case.expect), f"{type(info.value).__name__}: {message}"
    for word in case.words:
        assert word in message

    def delta(kind: str, key: str) -> int:
        return int(after[kind].get(key, 0) - before[kind].get(key, 0))

    assert delta("statuses", "InvokeFunction:202") == 0  # nothing was invoked
    sent = delta("requests", "InvokeFunction")
    assert sent == (1 if "403" in case.words else 0)  # refused before sending; a 403 is not retried
    assert sum(after["executions"].values()) == sum(before["executions"].values())
    for secret in ("not-the-secret", emu.settings.access_key_secret):
        assert secret not in message


# -- garbage replies ---------------------------------------------------------------------------------------------

GARBAGE = {
    "truncated JSON": (200, "application/json", b'{"taskId": "t1", "status": "Runn'),
    "HTML error page": (
        502,
        "text/html",
        b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
    ),
    "HTML page with 200": (
        200,
        "text/html",
        b"<!DOCTYPE html><html><body>Captive portal: log in</body></html>",
    ),
    "XML instead of JSON": (200, "application/xml", b'<?xml version="1.0"?><Error><Code>X</Code></Error>'),
    "empty 200": (200, "application/json", b""),
    "JSON of another shape": (200, "application/json", b'["not", "a", "task"]'),
    "HTML 403 page": (403, "text/html", b"<html><body><h1>403 Forbidden</h1></body></html>"),
}


class _Garbage(BaseHTTPRequestHandler):
    reply: tuple[int, str, bytes] = (200, "text/plain", b"")
    hits: list[str] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        type(self).hits.append(f"{self.command} {self.path}")
        status, ctype, body = type(self).reply
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def garbage_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """A local HTTP server answering every request with one garbage reply; connection ``fc_garbage``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    extra = {
        "access_key_id": "AKID",
        "access_key_secret": "garbage-secret",
        "region": "cn-hangzhou",
        "account_id": "1234567890123456",
        "fc_endpoint": endpoint,
        "mns_endpoint": endpoint,
    }
    monkeypatch.setenv("AIRFLOW_CONN_FC_GARBAGE", json.dumps({"conn_type": "alibaba_fc", "extra": extra}))
    _Garbage.hits = []

    def serve(kind: str) -> None:
        _Garbage.reply = GARBAGE[kind]

    yield serve
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_a_garbage_reply_is_an_fc_error_naming_it(kind: str, garbage_server: Callable[[str], None]) -> None:
    garbage_server(kind)
    hook = FcHook("fc_garbage", retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02))
    with pytest.raises(FcError) as info:
        hook.get_async_task("echo", "t1")
    status = GARBAGE[kind][0]
    print(f"\nR6 garbage ({kind}) -> {type(info.value).__name__}: {str(info.value)[:160]}")
    assert f"HTTP {status}" in str(info.value) or str(status) in str(info.value)
    if status == 200:
        assert isinstance(info.value, FcResponseError)  # "not JSON", "not an async task": names the body
    assert len(_Garbage.hits) == (1 if status == 403 else 2)  # retried only where a retry may help


@pytest.mark.parametrize("kind", ["HTML 403 page", "truncated JSON", "HTML error page", "empty 200"])
async def test_the_trigger_turns_garbage_into_one_event(
    kind: str, garbage_server: Callable[[str], None]
) -> None:
    garbage_server(kind)
    trigger = FcAsyncTaskTrigger(
        function_name="echo",
        async_task_id="t1",
        fc_conn_id="fc_garbage",
        poll_interval=0.2,
        timeout_at=time.time() + 1.5,
    )
    events = []
    async for event in trigger.run():  # an exception here would crash the trigger in the triggerer
        events.append(event.payload)
    assert len(events) == 1
    (event,) = events
    print(f"\nR6 trigger on garbage ({kind}) -> event {event['status']}: {event.get('message')}")
    if GARBAGE[kind][0] == 403:
        assert event["status"] == "error" and event["retryable"] is False and "403" in event["message"]
    else:  # transient-looking garbage is retried until the deadline: then one timeout event, no exception
        assert event["status"] == "timeout"
        assert len(_Garbage.hits) >= 2
    await asyncio.sleep(0)
