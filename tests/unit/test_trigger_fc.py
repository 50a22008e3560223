"""FcAsyncTaskTrigger: serialize round trip, one event per outcome, transient errors, deadline, cancellation."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from airflow_fc_async import compat
from airflow_fc_async.core.errors import FcAuthError, FcServerError, FcTransportError
from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger
from tests.unit._fc_fakes import FakeHook, task


def make(hook: FakeHook | None = None, **kwargs: object) -> FcAsyncTaskTrigger:
    args: dict[str, object] = {"function_name": "fn", "async_task_id": "t1", "poll_interval": 0.01}
    args.update(kwargs)
    trig = FcAsyncTaskTrigger(**args)  # type: ignore[arg-type]
    if hook is not None:
        trig.__dict__["_fc_hook"] = hook
    return trig


async def events(trig: FcAsyncTaskTrigger) -> list[dict[str, object]]:
    return [ev.payload async for ev in trig.run()]


def test_serialize_round_trip_is_json_and_mirrors_init() -> None:
    trig = make(
        qualifier="prod",
        fc_conn_id="my_fc",
        timeout_at=1.5e9,
        stop_on_kill=False,
        progress={"last_status": "Running", "last_event_id": 3, "retries_seen": 1},
        request_id="req",
    )
    path, kwargs = trig.serialize()
    assert path == "airflow_fc_async.triggers.fc.FcAsyncTaskTrigger"
    json.dumps(kwargs)  # stored in the metadata DB
    assert not any("secret" in k or "token" in k for k in kwargs)
    again = FcAsyncTaskTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)


async def test_success_yields_one_event_with_the_new_lines() -> None:
    hook = FakeHook()
    hook.script("t1", "Running", task("t1", "Succeeded", returnPayload="big", taskPayload="in"))
    evs = await events(
        make(hook, progress={"last_status": "Enqueued", "last_event_id": -1, "retries_seen": 0})
    )
    assert len(evs) == 1
    ev = evs[0]
    assert ev["status"] == "success" and ev["async_task_id"] == "t1"
    assert ev["lines_logged"] == 2 and "lines" not in ev  # logged live in the triggerer, not carried
    assert "returnPayload" not in ev["task"] and "taskPayload" not in ev["task"]  # the event stays small
    assert "events" not in ev["task"] and ev["task"]["taskId"] == "t1"
    assert ev["progress"]["last_status"] == "Succeeded"
    assert hook.count("aclose") == 1  # the session is released by run() itself


async def test_taking_only_the_first_event_still_releases_the_session() -> None:
    hook = FakeHook()
    hook.script("t1", "Succeeded")
    gen = make(hook).run()
    first = await anext(gen)
    assert first.payload["status"] == "success"
    await gen.aclose()  # what asyncio.run's shutdown does for dag.test's single anext()
    assert hook.count("aclose") == 1


async def test_failure_event_carries_the_error() -> None:
    hook = FakeHook()
    hook.script("t1", task("t1", "Failed", taskErrorMessage="Function timed out"))
    (ev,) = await events(make(hook))
    assert ev["status"] == "failure"
    assert ev["task"]["taskErrorMessage"] == "Function timed out"
    assert ev["lines_logged"] == 1


async def test_the_event_stays_small_for_a_long_story() -> None:
    """Many FC events and a long error: the event holds ids, statuses and counts (Airflow logs it whole)."""
    hook = FakeHook()
    story = [
        {"eventId": i, "status": "Retrying", "timestamp": 1000 + i, "eventDetail": "x" * 200}
        for i in range(30)
    ]
    hook.script("t1", task("t1", "Failed", taskErrorMessage="E" * 5000, events=story, taskPayload="p" * 9000))
    (ev,) = await events(make(hook))
    assert len(json.dumps(ev)) < 1200, ev
    assert ev["task"]["taskErrorMessage"].startswith("EEEE") and ev["task_status"] == "Failed"


async def test_transient_errors_are_retried_not_fatal() -> None:
    hook = FakeHook()
    hook.script(
        "t1",
        FcTransportError("reset"),
        FcServerError("busy", status=503, code="Busy", request_id="r"),
        "Succeeded",
    )
    (ev,) = await events(make(hook))
    assert ev["status"] == "success"
    assert hook.count("get") == 3


async def test_permanent_error_yields_an_error_event() -> None:
    hook = FakeHook()
    hook.script("t1", FcAuthError("denied", status=403, code="AccessDenied", request_id="r"))
    (ev,) = await events(make(hook))
    assert ev["status"] == "error" and ev["retryable"] is False and "denied" in ev["message"]


async def test_deadline_yields_a_timeout_event_and_does_not_stop() -> None:
    hook = FakeHook()
    hook.script("t1", "Running")
    (ev,) = await events(make(hook, timeout_at=time.time() + 0.1))
    assert ev["status"] == "timeout"
    assert hook.count("stop") == 0  # the operator stops it in execute_complete
    assert hook.count("get") >= 1


async def test_on_kill_stops_only_when_asked() -> None:
    hook = FakeHook()
    await make(hook).on_kill()
    assert hook.calls == [("stop", "t1")]
    hook2 = FakeHook()
    await make(hook2, stop_on_kill=False).on_kill()
    assert hook2.calls == []


async def test_cleanup_never_stops() -> None:
    hook = FakeHook()
    await make(hook).cleanup()
    assert hook.count("stop") == 0 and hook.count("aclose") == 1


async def _cancel_mid_run(trig: FcAsyncTaskTrigger, msg: str | None = None) -> None:
    task_ = asyncio.ensure_future(events(trig))
    await asyncio.sleep(0.05)
    task_.cancel(msg)
    with pytest.raises(asyncio.CancelledError):
        await task_


@pytest.mark.parametrize(
    ("has_on_kill", "still_deferred", "msg", "stops"),
    [
        (True, False, None, False),  # 3.3+: on_kill does it; a plain cancel is a restart
        (True, False, compat.USER_ACTION_CANCEL_MSG, False),  # 3.3+: on_kill is called separately
        (False, True, None, False),  # < 3.3, triggerer restart: task instance still deferred
        (False, False, None, True),  # < 3.3, a user acted: the task instance left DEFERRED
    ],
)
async def test_cancellation_fallback_before_3_3(
    monkeypatch: pytest.MonkeyPatch, has_on_kill: bool, still_deferred: bool, msg: str | None, stops: bool
) -> None:
    async def deferred(_: object) -> bool:
        return still_deferred

    monkeypatch.setattr(compat, "trigger_has_on_kill", lambda: has_on_kill)
    monkeypatch.setattr(compat, "task_instance_still_deferred", deferred)
    hook = FakeHook()
    hook.script("t1", "Running")
    await _cancel_mid_run(make(hook), msg)
    assert hook.count("stop") == (1 if stops else 0)


async def test_cancellation_fallback_respects_stop_on_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    async def deferred(_: object) -> bool:
        return False

    monkeypatch.setattr(compat, "trigger_has_on_kill", lambda: False)
    monkeypatch.setattr(compat, "task_instance_still_deferred", deferred)
    hook = FakeHook()
    hook.script("t1", "Running")
    await _cancel_mid_run(make(hook, stop_on_kill=False))
    assert hook.count("stop") == 0
