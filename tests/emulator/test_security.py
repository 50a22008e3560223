"""The emulator runs on developers' laptops: a web page must not be able to deploy code, change or read state, and
a hostile client must not be able to exhaust it (body caps, read timeouts, a connection bound)."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.emulator import Emulator
from tests.emulator.conftest import fc_raw, mns_raw, unique, wait_for

ROOT = Path(__file__).resolve().parents[2]
EVIL = "def handler(event, context):\n    return b'evil'\n"


def _admin(emu: Any, method: str, path: str, **kw: Any) -> requests.Response:
    return requests.request(method, f"{emu.endpoint}/_emulator/{path}", timeout=30, **kw)


# -- item 4: the admin API ---------------------------------------------------------------------------------------
def test_a_cross_origin_text_plain_deploy_is_refused_and_changes_nothing(emu, fc):
    """What a page's ``fetch(url, {method: "POST", mode: "no-cors", body})`` sends: text/plain, an Origin."""
    body = json.dumps({"name": "echo", "source": EVIL})
    page = {"Origin": "https://attacker.example", "Content-Type": "text/plain;charset=UTF-8"}
    assert _admin(emu, "POST", "functions", data=body, headers=page).status_code == 403
    # even with the token, a page's simple request (text/plain) is refused
    with_token = {**page, **emu.admin_headers(), "Content-Type": "text/plain;charset=UTF-8"}
    assert _admin(emu, "POST", "functions", data=body, headers=with_token).status_code == 403
    no_origin = {**emu.admin_headers(), "Content-Type": "text/plain;charset=UTF-8"}
    r = _admin(emu, "POST", "functions", data=body, headers=no_origin)
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    assert fc.invoke_sync("echo", "same") == b"same"  # the function was not replaced


def test_admin_requests_need_the_per_start_token(emu, fc):
    deploy = {"name": "echo", "source": EVIL}
    missing = _admin(emu, "POST", "functions", json=deploy)
    wrong = _admin(emu, "POST", "functions", json=deploy, headers={"x-emulator-admin-token": "guess"})
    assert missing.status_code == wrong.status_code == 401
    assert "printed when the emulator starts" in missing.json()["error"]
    for path in ("health", "stats", "faults", "logs/1-x"):  # reads too: a rebinding page could read them
        assert _admin(emu, "GET", path).status_code == 401
    assert fc.invoke_sync("echo", "same") == b"same"
    assert _admin(emu, "GET", "health", headers=emu.admin_headers()).json()["status"] == "ok"
    assert emu.admin_token and emu.admin_token != Emulator().admin_token  # one per start


@pytest.mark.parametrize(
    "deploy",
    [
        {"name": "../../../escape", "source": EVIL},
        {"name": "..", "source": EVIL},
        {"name": "a/b", "source": EVIL},
        {"name": "9starts-with-digit", "source": EVIL},
        {"name": "x" * 65, "source": EVIL},
        {"name": unique("h"), "handler": "../../../escape.handler", "source": EVIL},
        {"name": unique("h"), "handler": "/tmp/escape.handler", "source": EVIL},
        {"name": unique("c"), "code_dir": "/"},
        {"name": unique("c"), "code_dir": "../.."},
    ],
)
def test_names_and_code_paths_cannot_leave_the_work_directory(emu, deploy, tmp_path):
    before = set(Path(emu._admin.workdir).resolve().parent.iterdir())
    r = _admin(emu, "POST", "functions", json=deploy, headers=emu.admin_headers())
    assert r.status_code == 400, r.text
    assert set(Path(emu._admin.workdir).resolve().parent.iterdir()) == before  # nothing written beside it
    assert deploy["name"] not in emu.scheduler.function_names()


def test_a_valid_name_and_a_code_dir_inside_the_work_directory_deploy(emu, fc):
    name = unique("inside")
    r = _admin(emu, "POST", "functions", json={"name": name, "source": EVIL}, headers=emu.admin_headers())
    assert r.status_code == 200
    again = _admin(
        emu,
        "POST",
        "functions",
        json={"name": unique("same-code"), "code_dir": name},
        headers=emu.admin_headers(),
    )
    assert again.status_code == 200, again.text
    assert fc.invoke_sync(again.json()["functionName"], "") == b"evil"


def test_sdk_paths_refuse_a_browser_and_a_rebound_host_name(emu):
    """A DNS-rebinding page reaches 127.0.0.1 as its own origin, under its own name; it could sign with the
    documented development key. An Origin header or a Host the emulator does not serve is refused on every path."""
    r = fc_raw(
        emu, "GET", "/2023-03-30/functions/echo", "GetFunction", headers={"Origin": "http://evil.example"}
    )
    assert r.status_code == 403 and "Origin" in r.json()["Message"]
    port = emu.settings.port
    r = requests.get(emu.endpoint + "/queues", headers={"Host": f"evil.example:{port}"}, timeout=30)
    assert r.status_code == 403 and "DNS rebinding" in r.text
    assert fc_raw(emu, "GET", "/2023-03-30/functions/echo", "GetFunction").status_code == 200
    ok = requests.get(
        emu.endpoint + "/_emulator/health", headers={**emu.admin_headers(), "Host": f"localhost:{port}"}
    )
    assert ok.status_code == 200
    # OPTIONS (a CORS preflight) is never granted
    assert requests.options(emu.endpoint + "/2023-03-30/functions/echo", timeout=30).status_code >= 400


# -- item 6: the 403 text ----------------------------------------------------------------------------------------
def test_signature_errors_do_not_quote_the_sts_token():
    token = "sts-token-value-that-must-not-leak"
    with Emulator(
        port=0, access_key_id="STS.emulator", access_key_secret="sts-secret", security_token=token
    ) as emu:
        wrong = Credentials("STS.emulator", "not-the-secret", token)
        fc = fc_raw(emu, "GET", "/2023-03-30/functions/echo", "GetFunction", credentials=wrong)
        assert fc.status_code == 403 and fc.json()["Code"] == "SignatureNotMatch"
        assert "x-acs-security-token:***" in fc.json()["Message"] and token not in fc.text
        mns = mns_raw(emu, "GET", "/queues", credentials=wrong)
        assert mns.status_code == 403 and token not in mns.text
        from airflow_fc_async.core.errors import FcAuthError

        client = FcClient(emu.endpoint, wrong)
        with pytest.raises(FcAuthError) as info:
            client.get_function("echo")
        client.close()
        assert token not in str(info.value)


# -- item 5: bounded requests (a separate emulator process: its RSS and threads are measured) ---------------------
def _proc_status(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def bounded() -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """The CLI emulator with a 2 s read timeout and at most 64 connections."""
    cmd = [sys.executable, "-m", "airflow_fc_async.emulator", "--port", "0", "--request-timeout", "2"]
    cmd += ["--max-connections", "64", "--config", str(ROOT / "tests/fixtures/functions/s.yaml")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"endpoint (\S+) .*admin token (\S+) ", line)
        assert m, line
        yield proc, m.group(1), m.group(2)
    finally:
        proc.terminate()
        proc.wait(20)


def _connect(endpoint: str) -> socket.socket:
    host, port = endpoint.split("://", 1)[1].split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _health(endpoint: str, token: str) -> int:
    return requests.get(
        endpoint + "/_emulator/health", headers={"x-emulator-admin-token": token}, timeout=30
    ).status_code


def test_a_200_mb_announced_body_gets_413_unread(bounded):
    proc, endpoint, token = bounded
    rss_before = _proc_status(proc.pid, "VmRSS")
    for path in ("/2023-03-30/functions/echo/invocations", "/queues/q/messages", "/_emulator/functions"):
        sock = _connect(endpoint)
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {200 * 2**20}\r\n\r\n".encode()
        )
        with contextlib.suppress(OSError):  # the emulator may have closed its side already
            sock.sendall(b"x" * 2**20)  # one MB of it; the answer comes without the rest
        head = sock.recv(65536).decode("latin-1")
        sock.close()
        assert head.startswith("HTTP/1.1 413"), head
        assert "EntityTooLarge" in head or "exceeds" in head
    # chunked: refused as soon as the chunks add up past the cap
    sock = _connect(endpoint)
    sock.sendall(b"POST /queues/q/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 2**20
    with contextlib.suppress(OSError):
        for _ in range(12):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    refused = sock.recv(65536)
    sock.close()
    assert refused.startswith(b"HTTP/1.1 413"), refused[:200]
    assert _proc_status(proc.pid, "VmRSS") - rss_before < 50 * 1024  # kB: nowhere near 200 MB
    assert _health(endpoint, token) == 200


def test_half_sent_requests_hold_a_bounded_number_of_threads_for_a_bounded_time(bounded):
    proc, endpoint, token = bounded
    threads_before = _proc_status(proc.pid, "Threads")
    socks = []
    for _ in range(300):
        sock = _connect(endpoint)
        sock.sendall(
            b"POST /queues/q/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\nabc"
        )
        socks.append(sock)
    try:
        time.sleep(0.5)
        assert (
            _proc_status(proc.pid, "Threads") <= threads_before + 64 + 4
        )  # one per served connection, capped
        # a client that retries a 503 gets through once the read timeout (2 s) has freed the held threads
        wait_for(lambda: _health(endpoint, token) == 200, timeout=60, interval=0.5)
        wait_for(lambda: _proc_status(proc.pid, "Threads") <= threads_before + 4, timeout=60, interval=0.5)
    finally:
        for sock in socks:
            sock.close()
    assert _health(endpoint, token) == 200
