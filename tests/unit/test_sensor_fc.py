"""FcAsyncTaskSensor: poke, soft_fail, the deferrable path and execute_complete."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    PokeReturnValue,
    TaskDeferred,
)

from airflow_fc_async.core.errors import FcNotFoundError, FcThrottledError
from airflow_fc_async.sensors.fc import FcAsyncTaskSensor
from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger
from tests.unit._fc_fakes import FakeHook, context, task


def sensor(hook: FakeHook, **kwargs: object) -> FcAsyncTaskSensor:
    kwargs.setdefault("poke_interval", 0.01)
    kwargs.setdefault("timeout", 30)
    s = FcAsyncTaskSensor(task_id="watch", function_name="fn", async_task_id="t1", **kwargs)  # type: ignore[arg-type]
    s.__dict__["_fc_hook"] = hook
    return s


def test_templated_names_and_validation() -> None:
    assert set(FcAsyncTaskSensor.template_fields) == {
        "function_name",
        "async_task_id",
        "qualifier",
        "fc_conn_id",
    }
    with pytest.raises(ValueError, match="async_task_id"):
        FcAsyncTaskSensor(task_id="w", function_name="fn", async_task_id="")


def test_poke_running_is_not_done_and_transient_errors_poke_again() -> None:
    hook = FakeHook()
    hook.script("t1", "Running")
    assert sensor(hook).poke(context()) is False
    hook.script("t1", FcThrottledError("slow", status=429, code="Throttling", request_id="r"))
    assert sensor(hook).poke(context()) is False


def test_poke_succeeded_returns_the_operator_xcom_dict() -> None:
    hook = FakeHook()
    hook.script("t1", task("t1", "Succeeded", returnPayload='{"a": 1}'))
    ret = sensor(hook).poke(context())
    assert isinstance(ret, PokeReturnValue) and ret.is_done
    assert ret.xcom_value == {
        "task_id": "t1",
        "request_id": "req-t1",
        "status": "Succeeded",
        "return_payload": {"a": 1},
        "destination_record": None,
    }


def test_execute_in_poke_mode_waits_then_returns_the_result() -> None:
    hook = FakeHook()
    hook.script("t1", "Enqueued", "Running", "Succeeded")
    assert sensor(hook).execute(context())["status"] == "Succeeded"
    assert hook.count("get") == 3


@pytest.mark.parametrize("status", ["Failed", "Stopped", "Expired", "Invalid"])
def test_ended_without_success_fails(status: str) -> None:
    hook = FakeHook()
    hook.script("t1", task("t1", status, taskErrorMessage="why"))
    with pytest.raises(AirflowFailException, match=f"ended {status}: why"):
        sensor(hook).execute(context())


def test_soft_fail_skips_instead() -> None:
    hook = FakeHook()
    hook.script("t1", "Failed")
    with pytest.raises(AirflowSkipException):
        sensor(hook, soft_fail=True).execute(context())


def test_permanent_read_error_fails() -> None:
    hook = FakeHook()
    hook.script("t1", FcNotFoundError("no task", status=404, code="AsyncTaskNotFound", request_id="r"))
    with pytest.raises(AirflowFailException, match="no task"):
        sensor(hook).execute(context())


def test_deferrable_pokes_first_then_defers() -> None:
    hook = FakeHook()
    hook.script("t1", "Running")
    with pytest.raises(TaskDeferred) as info:
        sensor(hook, deferrable=True, timeout=100).execute(context())
    trig = info.value.trigger
    assert isinstance(trig, FcAsyncTaskTrigger)
    kwargs = trig.serialize()[1]
    assert kwargs["stop_on_kill"] is False  # a sensor never stops what it watches
    assert kwargs["progress"]["last_status"] == "Running"
    assert info.value.timeout == timedelta(seconds=160)


def test_deferrable_with_an_ended_task_never_defers() -> None:
    hook = FakeHook()
    hook.script("t1", "Succeeded")
    assert sensor(hook, deferrable=True).execute(context())["status"] == "Succeeded"


def _event(status: str, **extra: object) -> dict[str, object]:
    return {"status": status, "async_task_id": "t1", "function_name": "fn", "lines_logged": 0, **extra}


def test_execute_complete_paths() -> None:
    hook = FakeHook()
    hook.script("t1", task("t1", "Succeeded", returnPayload="ok"))
    s = sensor(hook)
    assert s.execute_complete(context(), _event("success"))["return_payload"] == "ok"
    with pytest.raises(AirflowFailException, match="boom"):
        s.execute_complete(
            context(),
            _event("failure", task={"taskId": "t1", "status": "Failed", "taskErrorMessage": "boom"}),
        )
    with pytest.raises(AirflowSensorTimeout):
        s.execute_complete(context(), _event("timeout"))
    with pytest.raises(AirflowFailException, match="denied"):
        s.execute_complete(context(), _event("error", message="denied"))
    assert hook.count("stop") == 0


def test_soft_fail_applies_after_deferral() -> None:
    hook = FakeHook()
    s = sensor(hook, soft_fail=True)
    with pytest.raises(AirflowSkipException):
        s.resume_execution("execute_complete", {"event": _event("timeout")}, context())


def test_reschedule_pokes_log_each_line_once_across_processes(capsys: pytest.CaptureFixture[str]) -> None:
    """Each poke of a reschedule-mode sensor is a new process (a new sensor object): the progress already logged
    in this try comes from the task state store, so the try's log tells each status change once."""
    from tests.unit._fc_fakes import FakeStore

    store = FakeStore()
    reads = ["Enqueued", "Running", "Running", "Succeeded"]
    for status in reads:
        hook = FakeHook()
        hook.script("t1", status)
        sensor(hook, mode="reschedule").poke(context(store=store))
    out = capsys.readouterr().out
    assert len(re.findall(r"FC task t1: Enqueued(?! ->)", out)) == 1, out  # the first status, told once
    assert out.count("Enqueued -> Running") == 1 and out.count("Running -> Succeeded") == 1
    hook = FakeHook()
    hook.script("t1", "Succeeded")
    sensor(hook, mode="reschedule").poke(context(try_number=2, store=store))  # a new try tells it anew
    assert "Succeeded" in capsys.readouterr().out
