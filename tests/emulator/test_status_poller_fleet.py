"""50 FcAsyncTaskTriggers in one loop against the emulator: each gets its own right terminal event, and the shared
status poller needs fewer status requests than per-trigger polling would."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.status_poller import poller_stats, reset_pollers
from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger
from tests.aiohttp_sessions import audit_sessions

FUNCTION = "fleet-sleep"
COUNT = 50
FAILING = {7, 21, 42}  # these sleep past the function's 3 s timeout: Failed, with the emulator's message


async def _first_event(trigger: FcAsyncTaskTrigger) -> dict[str, Any]:
    gen = trigger.run()
    try:
        event = await gen.__anext__()
    finally:
        await gen.aclose()
    return dict(event.payload)


async def _run_fleet(ids: list[str]) -> list[dict[str, Any]]:
    triggers = [FcAsyncTaskTrigger(FUNCTION, t, poll_interval=15.0, timeout_at=None) for t in ids]
    return await asyncio.wait_for(asyncio.gather(*(_first_event(t) for t in triggers)), timeout=60)


def test_fifty_triggers_share_one_poller(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    emu.deploy(
        FUNCTION,
        runtime="emulator-sleep",
        source="",
        timeout=3,
        instanceConcurrency=COUNT,
        async_invoke_config={"asyncTask": True, "maxAsyncRetryAttempts": 0},
    )
    monkeypatch.setenv("AIRFLOW_CONN_FC_DEFAULT", emu.connection_json())
    durations = {f"fleet-{i:02d}": (10.0 if i in FAILING else 1.5 + 1.5 * i / COUNT) for i in range(COUNT)}
    with FcClient(emu.endpoint, emu.credentials) as client:
        for task_id, seconds in durations.items():
            client.invoke_async(FUNCTION, {"sleep": seconds}, task_id=task_id)
    before = emu.stats()["paths"]
    reset_pollers()
    start = time.time()

    with audit_sessions(monkeypatch) as audit:
        events = asyncio.run(_run_fleet(list(durations)))
    assert audit.left_open == 0 and audit.unclosed_warnings == [], (audit.left_open, audit.unclosed_warnings)

    after = emu.stats()["paths"]
    for (task_id, seconds), ev in zip(durations.items(), events, strict=True):
        assert ev["async_task_id"] == task_id
        assert ev["task"]["taskId"] == task_id
        if seconds > 3:
            assert ev["status"] == "failure" and ev["task_status"] == "Failed", ev
            assert "timed out" in ev["task"]["taskErrorMessage"]
        else:
            assert ev["status"] == "success" and ev["task_status"] == "Succeeded", ev
            # its own task (every duration differs); payloads are left out of the event
            assert ev["task"]["durationMs"] >= 900 * seconds
            assert "returnPayload" not in ev["task"]
        assert ev["progress"]["last_status"] == ev["task_status"]  # the progress lines ended with it
        assert ev["lines_logged"] >= 1 and "events" not in ev["task"]

    prefix = f"GET /2023-03-30/functions/{FUNCTION}/async-tasks"
    gets = sum(n - before.get(p, 0) for p, n in after.items() if p.startswith(prefix + "/"))
    lists = after.get(prefix, 0) - before.get(prefix, 0)
    stats = poller_stats()
    assert lists >= 1 and stats["list_requests"] == lists  # the shared poller did list, and counted right
    # Per-trigger polling on the WaitPolicy reads each task at 1 s, then every 1 s (the gap's floor, below 10 s)
    # until a read sees it ended: ceil(end - start) reads for a task that ends `end - start` seconds in.
    per_trigger = sum(max(1, math.ceil(ev["task"]["endTime"] / 1000.0 - start)) for ev in events)
    assert gets + lists < per_trigger, (gets, lists, per_trigger)
    # One read per trigger (its startedTime), one more per failure the list shows without a message, and the
    # fallbacks of tasks no scan reached in time: far fewer than one per second each.
    assert gets <= COUNT + len(FAILING) + COUNT // 2, (gets, stats)


def test_three_hundred_concurrent_reads_on_one_hook_leave_no_session_open(
    emu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 item 10: concurrent first calls on one hook shared one client (one aiohttp session), closed."""
    from airflow_fc_async.hooks.fc import FcHook

    emu.deploy(
        FUNCTION,
        runtime="emulator-sleep",
        source="",
        timeout=3,
        async_invoke_config={"asyncTask": True, "maxAsyncRetryAttempts": 0},
    )
    monkeypatch.setenv("AIRFLOW_CONN_FC_DEFAULT", emu.connection_json())
    with FcClient(emu.endpoint, emu.credentials) as client:
        client.invoke_async(FUNCTION, {"sleep": 0.1}, task_id="fleet-one-hook")

    async def many_reads() -> list[Any]:
        hook = FcHook()
        try:
            return await asyncio.gather(
                *(hook.aget_async_task(FUNCTION, "fleet-one-hook") for _ in range(300))
            )
        finally:
            await hook.aclose()

    with audit_sessions(monkeypatch) as audit:
        tasks = asyncio.run(asyncio.wait_for(many_reads(), timeout=120))
    assert {t.task_id for t in tasks} == {"fleet-one-hook"}
    assert audit.opened == 1, audit.opened
    assert audit.left_open == 0 and audit.unclosed_warnings == []
