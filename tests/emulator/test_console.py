"""The read-only console pages the extra link opens against the emulator: content, escaping, size guard, no writes."""

from __future__ import annotations

import json

import pytest
import requests

from airflow_fc_async.core.endpoints import emulator_console_task_url
from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.emulator.console import MAX_SHOWN_BYTES
from tests.emulator.conftest import unique, wait_for, wait_terminal

XSS = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>"


def test_task_page_shows_status_events_payload_and_logs(emu, fc):
    task_id = unique("console")
    fc.invoke_async("echo", {"hello": "console"}, task_id=task_id)
    task = wait_terminal(fc, "echo", task_id)
    page = requests.get(emulator_console_task_url(emu.endpoint, "echo", task_id), timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert (
        "script-src" not in page.headers["content-security-policy"]
    )  # default-src 'none': no scripts at all
    text = page.text
    assert task_id in text and "Succeeded" in text and task.request_id in text
    assert "Enqueued" in text and "Dequeued" in text  # the events table
    assert "&quot;hello&quot;: &quot;console&quot;" in text or "&quot;hello&quot;:&quot;console&quot;" in text
    assert "FC Invoke Start RequestId" in text  # the function log
    assert 'http-equiv="refresh"' not in text  # terminal: no refresh


def test_a_running_task_page_refreshes_and_the_list_links_to_it(emu, fc):
    task_id = unique("console-run")
    fc.invoke_async("sleeper", {"seconds": 30}, task_id=task_id)
    try:
        wait_for(lambda: fc.get_async_task("sleeper", task_id).status is TaskStatus.RUNNING, 60)
        page = requests.get(emulator_console_task_url(emu.endpoint, "sleeper", task_id), timeout=30)
        assert 'http-equiv="refresh"' in page.text and "Running" in page.text
        listing = requests.get(f"{emu.endpoint}/_console/functions/sleeper/async-tasks", timeout=30).text
        assert f"/_console/functions/sleeper/async-tasks/{task_id}?qualifier=LATEST" in listing
        assert "/_console/functions/sleeper/async-tasks" in requests.get(f"{emu.endpoint}/_console/").text
    finally:
        fc.stop_async_task("sleeper", task_id)


def test_everything_is_escaped(emu, fc):
    task_id = unique("console-xss")
    fc.invoke_async("echo", {"evil": XSS}, task_id=task_id)
    wait_terminal(fc, "echo", task_id)
    text = requests.get(emulator_console_task_url(emu.endpoint, "echo", task_id), timeout=30).text
    assert "<script>" not in text and "<img" not in text and "onerror=alert(1)>" not in text
    assert "&lt;script&gt;" in text
    # a missing task's id is echoed in the 404 message: escaped too
    missing = requests.get(emulator_console_task_url(emu.endpoint, "echo", XSS), timeout=30)
    assert missing.status_code == 404 and "<script>" not in missing.text and "&lt;script&gt;" in missing.text


def test_large_payloads_are_cut(emu, fc):
    task_id = unique("console-big")
    fc.invoke_async("echo", {"blob": "x" * (MAX_SHOWN_BYTES * 4)}, task_id=task_id)
    wait_terminal(fc, "echo", task_id)
    text = requests.get(emulator_console_task_url(emu.endpoint, "echo", task_id), timeout=30).text
    size = len(json.dumps({"blob": "x" * (MAX_SHOWN_BYTES * 4)}, separators=(",", ":")))
    assert f"first {MAX_SHOWN_BYTES} of {size} bytes shown" in text
    assert len(text) < 4 * MAX_SHOWN_BYTES  # payload and return payload both cut


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_only_get_is_served_and_nothing_changes(emu, fc, method):
    task_id = unique("console-ro")
    fc.invoke_async("sleeper", {"seconds": 30}, task_id=task_id)
    try:
        url = emulator_console_task_url(emu.endpoint, "sleeper", task_id)
        for target in (url, url.replace("?", "/stop?"), f"{emu.endpoint}/_console/"):
            reply = requests.request(method, target, data="{}", timeout=30)
            if method == "PATCH":  # the HTTP server serves no PATCH at all
                assert reply.status_code == 501
            else:
                assert reply.status_code == 405 and reply.headers["allow"] == "GET, HEAD"
        assert not fc.get_async_task("sleeper", task_id).is_terminal
    finally:
        fc.stop_async_task("sleeper", task_id)


def test_a_foreign_host_header_is_refused(emu):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own name as Host."""
    reply = requests.get(f"{emu.endpoint}/_console/", headers={"Host": "evil.example:80"}, timeout=30)
    assert reply.status_code == 403  # the router's browser guard, before any route
    assert requests.get(f"{emu.endpoint}/_console/", headers={"Host": "localhost"}, timeout=30).ok
