"""Admin endpoints, fault injection, runtime deploys, s.yaml errors, the CLI and the Airflow connection it prints."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcServerError, FcThrottledError, FcTransportError
from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.http import RetryPolicy
from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    ConfigError,
    load_config,
)
from tests.emulator.conftest import unique, wait_terminal

ROOT = Path(__file__).resolve().parents[2]


def test_health_and_stats_count_requests_per_action(emu, fc):
    health = requests.get(emu.endpoint + "/_emulator/health", headers=emu.admin_headers()).json()
    assert (
        health["status"] == "ok" and "echo" in health["functions"] and "fc-test-timeout" in health["queues"]
    )
    before = emu.stats()["requests"].get("GetFunction", 0)
    for _ in range(3):
        fc.get_function("echo")
    stats = requests.get(emu.endpoint + "/_emulator/stats", headers=emu.admin_headers()).json()
    assert stats["requests"]["GetFunction"] == before + 3
    assert stats["paths"]["GET /2023-03-30/functions/echo"] >= 3


def test_reset_stats(emu, fc):
    fc.get_function("echo")
    assert (
        requests.post(emu.endpoint + "/_emulator/stats/reset", headers=emu.admin_headers()).status_code == 200
    )
    assert emu.stats()["requests"].get("GetFunction", 0) == 0


def test_injected_faults_are_deterministic_and_counted(emu):
    client = FcClient(emu.endpoint, emu.credentials, retry=RetryPolicy(max_attempts=1))
    emu.inject_faults(action="GetFunction", rates={"503": 1.0}, count=2)
    for _ in range(2):
        with pytest.raises(FcServerError):
            client.get_function("echo")
    assert client.get_function("echo")["functionName"] == "echo"  # the rule's count is spent
    emu.inject_faults(action="GetFunction", rate_429=1.0, retry_after=0.01, count=1)
    with pytest.raises(FcThrottledError):
        client.get_function("echo")
    assert emu.stats()["faults"]["GetFunction:429"] >= 1

    def pattern(seed: int) -> list[int]:
        emu.inject_faults(path=r"/functions/echo$", rates={"500": 0.5}, seed=seed)
        return [fc_status(emu) for _ in range(12)]

    assert pattern(7) == pattern(7) and 500 in pattern(7) and 200 in pattern(7)


def fc_status(emu) -> int:
    from tests.emulator.conftest import fc_raw

    return fc_raw(emu, "GET", "/2023-03-30/functions/echo", "GetFunction").status_code


def test_connection_reset_before_and_after_the_server_acts(emu):
    client = FcClient(emu.endpoint, emu.credentials, retry=RetryPolicy(max_attempts=1))
    task_id = unique("reset")
    emu.inject_faults(action="InvokeFunction", reset_after=1.0, count=1)
    with pytest.raises(FcTransportError):
        client.invoke_async("echo", {}, task_id=task_id)
    assert wait_terminal(client, "echo", task_id).status is TaskStatus.SUCCEEDED  # it was accepted
    emu.inject_faults(action="InvokeFunction", reset_before=1.0, count=1)
    other = unique("reset")
    with pytest.raises(FcTransportError):
        client.invoke_async("echo", {}, task_id=other)
    assert emu.stats()["executions"].get(other, 0) == 0
    emu.clear_faults()
    # the project's client retries a reset with the same task id: exactly one execution
    emu.inject_faults(action="InvokeFunction", reset_after=1.0, count=1)
    retried = unique("retried")
    FcClient(emu.endpoint, emu.credentials).invoke_async("echo", {}, task_id=retried)
    wait_terminal(client, "echo", retried)
    assert emu.stats()["executions"][retried] == 1


def test_added_latency(emu, fc):
    import time

    emu.inject_faults(action="GetFunction", latency=0.3)
    started = time.monotonic()
    fc.get_function("echo")
    assert time.monotonic() - started >= 0.3


def test_deploy_over_http_and_invoke(emu, fc):
    name = unique("deployed")
    source = "def handler(event, context):\n    return b'deployed:' + event\n"
    r = requests.post(
        emu.endpoint + "/_emulator/functions",
        json={"name": name, "source": source, "timeout": 5},
        headers=emu.admin_headers(),
    )
    assert r.status_code == 200 and r.json()["functionName"] == name
    assert fc.invoke_sync(name, "x") == b"deployed:x"
    bad = requests.post(
        emu.endpoint + "/_emulator/functions", json={"handler": "index.handler"}, headers=emu.admin_headers()
    )
    assert bad.status_code == 400 and "name" in bad.json()["error"]


def test_logs_endpoint(emu, fc):
    inv = fc.invoke_async("sleeper", {"seconds": 0.2}, task_id=unique("logs"))
    wait_terminal(fc, "sleeper", inv.task_id)
    text = requests.get(f"{emu.endpoint}/_emulator/logs/{inv.request_id}", headers=emu.admin_headers()).text
    assert "line 1" in text and f"FC Invoke End RequestId: {inv.request_id}" in text


def test_connection_json_and_credentials(emu):
    conn = json.loads(emu.connection_json())
    assert conn["conn_type"] == "alibaba_fc"
    extra = conn["extra"]
    assert extra["fc_endpoint"] == extra["mns_endpoint"] == extra["sls_endpoint"] == emu.endpoint
    assert extra["account_id"] == emu.account_id and extra["region"] == emu.region
    assert emu.credentials == Credentials(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
    assert emu.connection_uri.startswith("alibaba-fc://?__extra__=")


def test_unknown_key_warns_and_broken_files_name_file_and_key(tmp_path, caplog):
    good = tmp_path / "s.yaml"
    good.write_text(
        "edition: 3.0.0\nresources:\n  f:\n    component: fc3\n    props:\n      functionName: f\n"
        "      handler: index.handler\n      code: ./code\n      surprise: 1\n"
    )
    with caplog.at_level(logging.WARNING):
        [spec] = load_config(good)
    assert spec.code_dir == (tmp_path / "code").resolve()
    assert "surprise" in caplog.text and str(good) in caplog.text
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("handler: index.handler", "handler: 12"))
    with pytest.raises(ConfigError, match=r"bad\.yaml: resources\.f\.props\.handler"):
        load_config(bad)
    bad.write_text(good.read_text() + "      asyncInvokeConfig:\n        maxAsyncRetryAttempts: 99\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: .*maxAsyncRetryAttempts must be between 0 and 8"):
        load_config(bad)
    bad.write_text("resources: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(bad)


def test_cli_prints_one_ready_line_and_stops_on_sigterm(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_fc_async.emulator",
            "--config",
            str(ROOT / "tests/fixtures/functions/s.yaml"),
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("fc-emulator ready: endpoint http://127.0.0.1:")
        conn = json.loads(line.split("AIRFLOW_CONN_FC_DEFAULT='", 1)[1].rstrip().rstrip("'"))
        endpoint = conn["extra"]["fc_endpoint"]
        client = FcClient(
            endpoint, Credentials(conn["extra"]["access_key_id"], conn["extra"]["access_key_secret"])
        )
        inv = client.invoke_async("sleeper", {"seconds": 60}, task_id=unique("cli"))
        assert client.get_async_task("sleeper", inv.task_id).task_id == inv.task_id
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    result = subprocess.run(
        [sys.executable, "-m", "airflow_fc_async.emulator", "--config", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2 and "none.yaml" in result.stderr


def test_emulator_imports_no_airflow():
    code = "import sys, airflow_fc_async.emulator; print([m for m in sys.modules if m.split('.')[0] == 'airflow'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
