"""FcInvokeAsyncOperator: validation, blocking wait, outcome, log story, link, deferral and execute_complete."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, TaskDeferred

from airflow_fc_async import compat
from airflow_fc_async.core import task_ids
from airflow_fc_async.core.errors import (
    FcAuthError,
    FcNotFoundError,
    FcPayloadTooLargeError,
    FcServerError,
    FcThrottledError,
    FcValidationError,
)
from airflow_fc_async.links import FcAsyncTaskLink
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.operators.following import FcAsyncTaskMixin
from airflow_fc_async.operators.outcome import MAX_RESULT_BYTES
from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger
from tests.unit._fc_fakes import FakeHook, FakeStore, context, pushed, task

PREFIX = task_ids.task_id_prefix("dag", "invoke", "manual__2024-01-01T00:00:00+00:00", -1)
ID1 = task_ids.try_task_id(PREFIX, 1)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> FakeHook:
    fake = FakeHook()
    monkeypatch.setattr(FcAsyncTaskMixin, "_new_hook", lambda self: fake)
    return fake


def op(**kwargs: object) -> FcInvokeAsyncOperator:
    kwargs.setdefault("poll_interval", 0.01)
    kwargs.setdefault("deferrable", False)
    return FcInvokeAsyncOperator(task_id="invoke", function_name="my-fc-job", **kwargs)  # type: ignore[arg-type]


# -- __init__ validation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"function_name": ""}, "function_name"),
        ({"qualifier": ""}, "qualifier"),
        ({"async_task_id": "1starts-with-digit"}, "async_task_id"),
        ({"async_task_id": "has space"}, "async_task_id"),
        ({"async_task_id": "a" * 129}, "async_task_id"),
        ({"payload": 42}, "payload"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": "soon"}, "poll_interval"),
        ({"max_wait": -5}, "max_wait"),
    ],
)
def test_init_rejects_bad_arguments_naming_them(kwargs: dict[str, object], name: str) -> None:
    args = {"task_id": "invoke", "function_name": "f", **kwargs}
    with pytest.raises((ValueError, FcValidationError), match=name):
        FcInvokeAsyncOperator(**args)  # type: ignore[arg-type]


def test_init_accepts_templates_timedeltas_and_payload_kinds() -> None:
    o = FcInvokeAsyncOperator(
        task_id="i",
        function_name="{{ params.fn }}",
        async_task_id="{{ run_id }}",
        poll_interval=timedelta(seconds=30),
        max_wait=timedelta(minutes=2),
        payload=b"raw",
    )
    assert (o.poll_interval, o.max_wait) == (30.0, 120.0)
    assert set(FcInvokeAsyncOperator.template_fields) == {
        "function_name",
        "payload",
        "qualifier",
        "async_task_id",
        "destination_queue",
        "log_project",
        "log_store",
    }
    assert FcInvokeAsyncOperator.template_fields_renderers == {"payload": "json"}
    assert [link.name for link in o.operator_extra_links] == ["FC async task"]


# -- blocking path ---------------------------------------------------------------------------------------------
def test_blocking_success_returns_result_persists_link_and_tells_the_story(
    hook: FakeHook, capsys: pytest.CaptureFixture[str]
) -> None:
    hook.script(
        ID1,
        task(ID1, "Enqueued"),
        task(ID1, "Running"),
        task(ID1, "Succeeded", returnPayload='{"rows": 3}'),
    )
    ctx = context()
    result = op(payload={"failure": False}).execute(ctx)
    assert result == {
        "task_id": ID1,
        "request_id": f"req-{ID1}",
        "status": "Succeeded",
        "return_payload": {"rows": 3},
        "destination_record": None,
    }
    assert hook.calls[0] == ("invoke", ("my-fc-job", {"failure": False}, "LATEST", ID1))
    assert pushed(ctx)["fc_async_task_url"] == f"https://console.example/my-fc-job/{ID1}?q=LATEST"
    text = capsys.readouterr().out
    assert '{"failure":false}' in text  # the trigger event, at start
    for line in ("Enqueued", "Enqueued -> Running", "Running -> Succeeded"):
        assert f"FC task {ID1}: {line}" in text
    assert text.count("Enqueued -> Running") == 1


def test_payload_is_truncated_in_the_log(hook: FakeHook, capsys: pytest.CaptureFixture[str]) -> None:
    hook.script(ID1, "Succeeded")
    op(payload="x" * 5000).execute(context())
    out = capsys.readouterr().out
    assert "x" * 1024 + "... (3976 more characters)" in out
    assert "x" * 1100 not in out


def test_failed_task_raises_one_message_naming_everything(hook: FakeHook) -> None:
    hook.script(ID1, task(ID1, "Failed", taskErrorMessage="Function timed out after 3 seconds"))
    with pytest.raises(AirflowException) as info:
        op(qualifier="prod").execute(context())
    assert not isinstance(info.value, AirflowFailException)  # Airflow's retries may re-run it
    msg = str(info.value)
    for part in ("my-fc-job", "prod", ID1, f"req-{ID1}", "Failed", "timed out after 3 seconds", "console"):
        assert part in msg


@pytest.mark.parametrize("status", ["Stopped", "Expired", "Invalid"])
def test_other_terminal_statuses_fail(hook: FakeHook, status: str) -> None:
    hook.script(ID1, status)
    with pytest.raises(AirflowException, match=status):
        op().execute(context())


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (FcNotFoundError("no fn", status=404, code="FunctionNotFound", request_id="r"), AirflowFailException),
        (FcAuthError("denied", status=403, code="AccessDenied", request_id="r"), AirflowFailException),
        (
            FcPayloadTooLargeError("big", status=400, code="EntityTooLarge", request_id="r"),
            AirflowFailException,
        ),
        (FcValidationError("payload", "too large"), AirflowFailException),
        (FcServerError("boom", status=503, code="ServiceUnavailable", request_id="r"), AirflowException),
    ],
)
def test_invoke_errors_map_to_fail_or_retry(hook: FakeHook, error: Exception, kind: type) -> None:
    hook.invoke_error = error
    with pytest.raises(kind) as info:
        op().execute(context())
    assert type(info.value) is kind


def test_transient_errors_during_the_wait_are_retried(hook: FakeHook) -> None:
    throttled = FcThrottledError("slow down", status=429, code="Throttling", request_id="r")
    hook.script(
        ID1, throttled, FcServerError("oops", status=500, code="Internal", request_id="r"), "Succeeded"
    )
    assert op().execute(context())["status"] == "Succeeded"
    assert hook.count("get") == 3


def test_permanent_error_during_the_wait_fails(hook: FakeHook) -> None:
    hook.script(ID1, FcNotFoundError("gone", status=404, code="AsyncTaskNotFound", request_id="r"))
    with pytest.raises(AirflowFailException, match="gone"):
        op().execute(context())


def test_max_wait_stops_the_task_and_fails(hook: FakeHook) -> None:
    hook.script(ID1, "Running")
    with pytest.raises(AirflowException, match="max_wait"):
        op(max_wait=0.05).execute(context())
    assert hook.count("stop") == 1


def test_no_wait_returns_at_once(hook: FakeHook) -> None:
    result = op(wait_for_completion=False).execute(context())
    assert result == {"task_id": ID1, "request_id": f"req-{ID1}", "status": "Enqueued"}
    assert hook.count("get") == 0


def test_large_return_payload_is_left_out_of_xcom(hook: FakeHook) -> None:
    hook.script(ID1, task(ID1, "Succeeded", returnPayload="y" * (MAX_RESULT_BYTES + 10)))
    result = op().execute(context())
    assert result["return_payload"] is None
    assert result["return_payload_truncated"] is True


def test_explicit_task_id_is_used_on_the_first_try(hook: FakeHook) -> None:
    hook.script("my-id", "Succeeded")
    assert op(async_task_id="my-id").execute(context())["task_id"] == "my-id"
    assert hook.calls[0][1][3] == "my-id"


# -- deferrable path ---------------------------------------------------------------------------------------------
def test_deferrable_reads_once_stores_and_defers(hook: FakeHook) -> None:
    hook.script(ID1, "Enqueued")
    store = FakeStore()
    ctx = context(store=store)
    deferring = op(deferrable=True, max_wait=600, stop_on_kill=False)
    with pytest.raises(TaskDeferred) as info:
        deferring.execute(ctx)
    trigger = info.value.trigger
    assert isinstance(trigger, FcAsyncTaskTrigger)
    assert info.value.method_name == "execute_complete"
    assert info.value.timeout is not None and info.value.timeout > timedelta(
        seconds=600
    )  # trigger fires first
    _, kwargs = trigger.serialize()
    assert kwargs["async_task_id"] == ID1
    assert kwargs["stop_on_kill"] is False
    assert kwargs["progress"]["last_status"] == "Enqueued"  # the trigger will not log Enqueued again
    assert store.values["fc_async_task"]["task_id"] == ID1  # stored before deferring
    assert hook.count("get") == 1
    url = f"https://console.example/my-fc-job/{ID1}?q=LATEST"
    if compat.finalize_pushes_links():  # Airflow 3 pushes the link at the deferral exit: no XCom call of ours
        assert "fc_async_task_url" not in pushed(ctx)
    else:  # Airflow 2: the task pushes it so that the link works while deferred
        assert pushed(ctx)["fc_async_task_url"] == url
    # finalize asks the operator that ran, which answers without an XCom read (an API round trip)
    assert FcAsyncTaskLink().get_link(deferring, ti_key="unused") == url  # type: ignore[arg-type]


def test_deferrable_never_defers_an_ended_task(hook: FakeHook) -> None:
    hook.script(ID1, task(ID1, "Failed", taskErrorMessage="bad"))
    with pytest.raises(AirflowException, match="bad"):
        op(deferrable=True).execute(context())
    assert hook.count("stop") == 0


def test_deferrable_success_before_deferral(hook: FakeHook) -> None:
    hook.script(ID1, task(ID1, "Succeeded", returnPayload="plain text"))
    assert op(deferrable=True).execute(context())["return_payload"] == "plain text"


def _event(status: str, **extra: object) -> dict[str, object]:
    return {
        "status": status,
        "function_name": "my-fc-job",
        "qualifier": "LATEST",
        "async_task_id": ID1,
        "request_id": f"req-{ID1}",
        "lines_logged": 2,
        "progress": {},
        **extra,
    }


def test_execute_complete_success_reads_the_result_and_does_not_repeat_the_lines(
    hook: FakeHook, capsys: pytest.CaptureFixture[str]
) -> None:
    """The triggerer wrote its lines into the task log live: execute_complete does not log them again, even
    from an event of an older version that still carried them."""
    hook.script(ID1, task(ID1, "Succeeded", returnPayload='{"rows": [1, 2], "note": "' + "x" * 500 + '"}'))
    old_event = _event("success", lines=["Enqueued -> Running", "Running -> Succeeded"])
    result = op().execute_complete(context(), old_event)
    assert result["return_payload"]["rows"] == [1, 2]
    out = capsys.readouterr().out
    assert "Enqueued -> Running" not in out and "Running -> Succeeded" not in out
    (returned,) = [line for line in out.splitlines() if f"FC task {ID1} returned: " in line]
    assert '{"rows": [1, 2], "note": "xxx' in returned and "more characters)" in returned  # one short line
    assert len(returned.split(" returned: ", 1)[1].split(" more characters)")[0]) < 260


def test_execute_complete_failure_raises_with_the_error(hook: FakeHook) -> None:
    raw = {"taskId": ID1, "status": "Failed", "requestId": "req", "taskErrorMessage": "OOM"}
    with pytest.raises(AirflowException, match="OOM"):
        op().execute_complete(context(), _event("failure", task=raw))
    assert hook.count("stop") == 0


def test_execute_complete_timeout_stops_the_task(hook: FakeHook) -> None:
    with pytest.raises(AirflowException, match="did not finish in time"):
        op().execute_complete(context(), _event("timeout"))
    assert hook.calls == [("stop", ID1)]


def test_execute_complete_error_event(hook: FakeHook) -> None:
    with pytest.raises(AirflowFailException, match="forbidden"):
        op().execute_complete(context(), _event("error", message="forbidden", retryable=False))
    with pytest.raises(AirflowException, match="Unexpected trigger event"):
        op().execute_complete(context(), {"nonsense": True})


# -- deferral timeout and the link ---------------------------------------------------------------------------------
def test_a_deferral_timeout_stops_the_stored_task(hook: FakeHook) -> None:
    from airflow_fc_async import compat

    TaskDeferralTimeout = compat.task_deferral_timeout()
    error = (
        "Trigger timeout" if compat._airflow_version() >= (3, 0) else compat.AIRFLOW2_DEFERRAL_TIMEOUT_ERROR
    )
    store = FakeStore(
        {
            "fc_async_task": {
                "function_name": "my-fc-job",
                "qualifier": "LATEST",
                "task_id": ID1,
                "request_id": "r",
            }
        }
    )
    with pytest.raises(TaskDeferralTimeout):
        op().resume_execution("__fail__", {"error": error}, context(store=store))
    assert hook.calls == [("stop", ID1)]
    with pytest.raises(TaskDeferralTimeout):
        op(stop_on_kill=False).resume_execution(
            "__fail__", {"error": "Trigger timeout"}, context(store=store)
        )
    assert hook.count("stop") == 1


def test_link_reads_the_persisted_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_fc_async import links

    seen: dict[str, object] = {}

    def get_value(*, key: str, ti_key: object) -> str | None:
        seen.update(key=key, ti_key=ti_key)
        return "https://console/x" if ti_key == "k1" else None

    monkeypatch.setattr(links.XCom, "get_value", staticmethod(get_value))
    link = links.FcAsyncTaskLink()
    assert link.get_link(op(), ti_key="k1") == "https://console/x"  # type: ignore[arg-type]
    assert seen["key"] == link.xcom_key == "fc_async_task_url"
    assert link.get_link(op(), ti_key="k2") == ""  # type: ignore[arg-type]


def test_importing_the_adapters_stays_cheap() -> None:
    """A DAG file parse must not load the hook or an HTTP client (checked in a fresh interpreter)."""
    import subprocess
    import sys

    code = (  # what Airflow itself loads does not count (Airflow 2 imports requests on `import airflow`)
        "import sys; import airflow; import airflow.providers.common.compat.sdk as s; s.BaseOperator; "
        "names = ('requests', 'aiohttp', 'airflow_fc_async.hooks.fc', 'airflow_fc_async.core.fc'); "
        "before = {m for m in names if m in sys.modules}; "
        "import airflow_fc_async.operators.fc, airflow_fc_async.sensors.fc, "
        "airflow_fc_async.triggers.fc, airflow_fc_async.links; "
        "print(sorted(m for m in names if m in sys.modules and m not in before))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
