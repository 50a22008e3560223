"""The emulator's GetLogs v1: logConfig in GetFunction, rows of the functions' lines (FC's framing and fields),
the project in the Host header (the official SDKs' IP-endpoint style), signatures, errors, faults, and no
collision with the FC and MNS paths on the one port."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcAuthError, FcInvalidArgumentError, FcNotFoundError, FcServerError
from airflow_fc_async.core.http import RetryPolicy
from airflow_fc_async.core.signing import http_date, sign_sls_request
from airflow_fc_async.core.sls import SlsClient
from airflow_fc_async.emulator import Emulator
from tests.emulator.conftest import wait_terminal

PROJECT, STORE = "fc-test-logs", "function-logs"
FAST = RetryPolicy(max_attempts=2, base_delay=0, max_delay=0, jitter=False)


@pytest.fixture
def sls(emu: Any) -> Iterator[SlsClient]:
    client = SlsClient(emu.endpoint, emu.credentials, retry=FAST)
    yield client
    client.close()


def window() -> tuple[int, int]:
    now = int(time.time())
    return now - 600, now + 120


def rows_of(sls: SlsClient, request_id: str) -> list[dict[str, str]]:
    start, end = window()
    rows = list(sls.iter_logs(PROJECT, STORE, start, end, query=f'"{request_id}"', topic="FCLogs:log-lines"))
    instances = {r["instanceID"] for r in rows}
    query = " or ".join(f'instanceID: "{i}"' for i in sorted(instances))
    return list(sls.iter_logs(PROJECT, STORE, start, end, query=query, topic="FCLogs:log-lines"))


def test_get_function_returns_the_log_config(fc: Any) -> None:
    config = fc.get_function("log-lines")["logConfig"]
    assert config["project"] == PROJECT and config["logstore"] == STORE
    assert "logConfig" not in fc.get_function("echo")


def test_a_tasks_lines_are_rows_framed_by_start_and_end(fc: Any, sls: SlsClient) -> None:
    inv = fc.invoke_async("log-lines", {"count": 5, "seconds": 0.2})
    wait_terminal(fc, "log-lines", inv.task_id)
    rows = [r for r in rows_of(sls, inv.request_id)]
    messages = [r["message"] for r in rows]
    start = messages.index(f"FC Invoke Start RequestId: {inv.request_id}")
    end = messages.index(f"FC Invoke End RequestId: {inv.request_id}")
    assert messages[start + 1 : end] == [f"log line {i:03d} of 5" for i in range(1, 6)]
    row = rows[start + 1]
    assert row["functionName"] == "log-lines" and row["__topic__"] == "FCLogs:log-lines"
    assert row["instanceID"].startswith("c-log-lines-") and row["qualifier"] == "LATEST"
    assert {"versionId", "__time__", "__source__"} <= row.keys()
    assert int(row["__time__"]) <= time.time()


def test_lines_appear_while_the_function_runs(fc: Any, sls: SlsClient) -> None:
    inv = fc.invoke_async("log-lines", {"count": 40, "seconds": 4})
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        task = fc.get_async_task("log-lines", inv.task_id)
        seen = [r["message"] for r in rows_of(sls, inv.request_id)]
        if any(m.startswith("log line") for m in seen) or task.is_terminal:
            break
        time.sleep(0.2)
    assert not fc.get_async_task("log-lines", inv.task_id).is_terminal  # read mid-run
    assert any(m.startswith("log line") for m in seen)
    assert f"FC Invoke End RequestId: {inv.request_id}" not in seen
    wait_terminal(fc, "log-lines", inv.task_id)


def test_paging_and_reverse(fc: Any, sls: SlsClient) -> None:
    inv = fc.invoke_async("log-lines", {"count": 120, "seconds": 0.3})
    wait_terminal(fc, "log-lines", inv.task_id)
    start, end = window()
    instance = fc.get_async_task("log-lines", inv.task_id).instance_id
    query = f'instanceID: "{instance}" and "of 120"'
    page = sls.get_logs(PROJECT, STORE, start, end, query=query, line=100, offset=0)
    rest = sls.get_logs(PROJECT, STORE, start, end, query=query, line=100, offset=100)
    assert len(page.rows) == 100 and page.count == 100 and page.complete
    tail = [r["message"] for r in rest.rows]
    assert tail[-20:] == [f"log line {i:03d} of 120" for i in range(101, 121)]
    newest = sls.get_logs(PROJECT, STORE, start, end, query=query, line=1, reverse=True)
    assert newest.rows[0]["message"] == "log line 120 of 120"


def test_errors(emu: Any, sls: SlsClient) -> None:
    start, end = window()
    with pytest.raises(FcNotFoundError) as info:
        sls.get_logs("no-such-project", STORE, start, end)
    assert info.value.code == "ProjectNotExist" and info.value.request_id
    with pytest.raises(FcNotFoundError, match="LogStoreNotExist"):
        sls.get_logs(PROJECT, "nope", start, end)
    with pytest.raises(FcInvalidArgumentError, match="ParameterInvalid"):
        sls.get_logs(PROJECT, STORE, start, end, query="* | select count(*)")
    bad = SlsClient(emu.endpoint, Credentials(emu.credentials.access_key_id, "wrong-secret"), retry=FAST)
    with pytest.raises(FcAuthError) as auth:
        bad.get_logs(PROJECT, STORE, start, end)
    assert auth.value.status == 401 and auth.value.code == "SignatureNotMatch"
    bad.close()


def test_injected_faults_on_the_get_logs_path(emu: Any, sls: SlsClient) -> None:
    emu.inject_faults(action="GetLogs", rate_500=1.0, count=2)
    start, end = window()
    with pytest.raises(FcServerError):  # both attempts of the call fail
        sls.get_logs(PROJECT, STORE, start, end)
    assert sls.get_logs(PROJECT, STORE, start, end).complete  # the rule is spent


def test_official_style_project_in_host_header_over_raw_http(emu: Any) -> None:
    """What the official SDKs send to an IP endpoint: the URL names the IP, the Host header names the project."""
    host = emu.endpoint.split("://", 1)[1]
    start, end = window()
    params = {
        "type": "log",
        "from": str(start),
        "to": str(end),
        "line": "10",
        "offset": "0",
        "reverse": "false",
    }
    headers = sign_sls_request(
        emu.credentials, method="GET", host=f"{PROJECT}.{host}", path=f"/logstores/{STORE}", params=params
    )
    headers["x-log-date"] = headers["date"]  # older SDKs add this copy after signing: accepted
    resp = requests.get(f"{emu.endpoint}/logstores/{STORE}", params=params, headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json(), list) and resp.headers["x-log-progress"] == "Complete"
    no_project = {**headers, "host": host}
    resp = requests.get(f"{emu.endpoint}/logstores/{STORE}", params=params, headers=no_project, timeout=10)
    assert resp.status_code == 404 and resp.json()["errorCode"] == "ProjectNotExist"


def test_sls_mns_and_fc_paths_share_the_port(emu: Any, fc: Any, mns: Any, sls: SlsClient) -> None:
    assert fc.get_function("echo")["functionName"] == "echo"
    queue = f"q-{uuid.uuid4().hex[:8]}"
    mns.create_queue(queue)
    start, end = window()
    assert isinstance(sls.get_logs(PROJECT, STORE, start, end).rows, list)
    stats = emu.stats()["requests"]
    assert stats.get("GetLogs", 0) >= 1 and stats.get("GetFunction", 0) >= 1


def test_date_and_sts_checks() -> None:
    with Emulator(port=0, security_token="sts-token") as emu:
        emu.deploy(
            "f", source="def handler(e, c):\n    print('x')\n", logConfig={"project": "p", "logstore": "s"}
        )
        start, end = window()
        no_token = SlsClient(
            emu.endpoint, Credentials(emu.credentials.access_key_id, emu.settings.access_key_secret)
        )
        with pytest.raises(FcAuthError, match="security token"):
            no_token.get_logs("p", "s", start, end)
        with SlsClient(emu.endpoint, emu.credentials) as ok:
            assert ok.get_logs("p", "s", start, end).rows == []
        host = emu.endpoint.split("://", 1)[1]
        old = http_date(time.time() - 3600)
        headers = sign_sls_request(
            emu.credentials, method="GET", host=f"p.{host}", path="/logstores/s", date=old
        )
        resp = requests.get(f"{emu.endpoint}/logstores/s?type=log&from=1&to=2", headers=headers, timeout=10)
        assert resp.status_code == 400 and json.loads(resp.text)["errorCode"] == "RequestTimeExpired"
        no_token.close()
