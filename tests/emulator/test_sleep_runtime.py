"""The emulator's built-in ``emulator-sleep`` runtime (load tests): no process, honours timeout and stop."""

from __future__ import annotations

import time

from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.models import TaskStatus


def _wait_end(client: FcClient, name: str, task_id: str, limit: float = 10.0) -> object:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        task = client.get_async_task(name, task_id)
        if task.is_terminal:
            return task
        time.sleep(0.05)
    raise AssertionError(f"{task_id} did not end")


def test_sleep_runtime_succeeds_times_out_and_stops(emu):
    emu.deploy(
        "sleep-rt",
        runtime="emulator-sleep",
        source="",
        timeout=1,
        instanceConcurrency=10,
        async_invoke_config={"asyncTask": True, "maxAsyncRetryAttempts": 0},
    )
    with FcClient(emu.endpoint, emu.credentials) as client:
        client.invoke_async("sleep-rt", {"sleep": 0.2}, task_id="sl-ok")
        client.invoke_async("sleep-rt", {"sleep": 5}, task_id="sl-timeout")
        client.invoke_async("sleep-rt", {"sleep": 0.9}, task_id="sl-stop")
        time.sleep(0.1)
        client.stop_async_task("sleep-rt", "sl-stop")
        ok = _wait_end(client, "sleep-rt", "sl-ok")
        assert ok.status is TaskStatus.SUCCEEDED
        assert ok.raw["returnPayload"] == '{"sleep":0.2}'
        assert ok.raw["durationMs"] >= 200
        timed_out = _wait_end(client, "sleep-rt", "sl-timeout")
        assert timed_out.status is TaskStatus.FAILED
        assert "timed out after 1 seconds" in timed_out.raw["taskErrorMessage"]
        assert _wait_end(client, "sleep-rt", "sl-stop").status is TaskStatus.STOPPED


def test_delayed_events_run_side_by_side(emu):
    """Events pushed while a worker idles for a delayed one still get their own workers once ready."""
    emu.deploy(
        "sleep-delayed",
        runtime="emulator-sleep",
        source="",
        timeout=10,
        instanceConcurrency=10,
        async_invoke_config={"asyncTask": True},
    )
    ids = [f"sd-{i}" for i in range(5)]
    with FcClient(emu.endpoint, emu.credentials) as client:
        for task_id in ids:
            client.invoke_async("sleep-delayed", {"sleep": 1.5}, task_id=task_id, delay_seconds=1)
        tasks = [_wait_end(client, "sleep-delayed", t, limit=30) for t in ids]
    spans = []
    for task in tasks:
        stamps = {e["status"]: e["timestamp"] for e in task.raw["events"]}
        spans.append((stamps["Running"], stamps["Succeeded"]))
    # all five ran at once: every one started before any ended (one by one, none would overlap)
    assert max(start for start, _ in spans) < min(end for _, end in spans)
