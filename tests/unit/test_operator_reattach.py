"""FcInvokeAsyncOperator: on_kill in the blocking wait, and every re-attach branch on a retry."""

from __future__ import annotations

import threading
import time

import pytest
from airflow.providers.common.compat.sdk import AirflowException

from airflow_fc_async.core import task_ids
from airflow_fc_async.core.errors import FcConflictError
from airflow_fc_async.operators._base import FcAsyncTaskMixin
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from tests.unit._fc_fakes import FakeHook, FakeStore, context, task

PREFIX = task_ids.task_id_prefix("dag", "invoke", "manual__2024-01-01T00:00:00+00:00", -1)
ID1, ID2, ID3 = (task_ids.try_task_id(PREFIX, n) for n in (1, 2, 3))


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> FakeHook:
    fake = FakeHook()
    monkeypatch.setattr(FcAsyncTaskMixin, "_new_hook", lambda self: fake)
    return fake


def op(**kwargs: object) -> FcInvokeAsyncOperator:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("deferrable", False)
    return FcInvokeAsyncOperator(task_id="invoke", function_name="my-fc-job", **kwargs)  # type: ignore[arg-type]


def invoked(hook: FakeHook) -> list[str]:
    return [args[3] for kind, args in hook.calls if kind == "invoke"]


# -- on_kill ---------------------------------------------------------------------------------------------------
def _airflow2_execute_guard_for_this_thread() -> None:
    """Airflow 2's ExecutorSafeguard keeps execute()'s callers in a thread-local set up on the main thread only."""
    try:
        from airflow.models.baseoperator import ExecutorSafeguard
    except ImportError:  # Airflow 3: the task SDK's guard needs nothing per thread
        return
    sentinel = getattr(ExecutorSafeguard, "_sentinel", None)
    if sentinel is not None and not hasattr(sentinel, "callers"):
        sentinel.callers = {}


def _kill_mid_wait(hook: FakeHook, operator: FcInvokeAsyncOperator) -> BaseException | None:
    hook.script(ID1, "Running")
    outcome: list[BaseException | None] = []

    def run() -> None:
        _airflow2_execute_guard_for_this_thread()
        try:
            operator.execute(context())
            outcome.append(None)
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while hook.count("get") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    hook.script(ID1, "Succeeded")  # a read after the kill must not turn into success
    operator.on_kill()
    worker.join(10)
    assert not worker.is_alive()
    return outcome[0]


def test_on_kill_stops_the_task_and_the_loop_raises(hook: FakeHook) -> None:
    exc = _kill_mid_wait(hook, op(poll_interval=0.2))
    assert isinstance(exc, AirflowException)
    assert "killed" in str(exc) and "stopped" in str(exc)
    assert hook.count("stop") == 1


def test_on_kill_without_stop_on_kill_leaves_the_task_running(hook: FakeHook) -> None:
    exc = _kill_mid_wait(hook, op(poll_interval=0.2, stop_on_kill=False))
    assert isinstance(exc, AirflowException)
    assert "left running" in str(exc)
    assert hook.count("stop") == 0


def test_on_kill_before_any_invoke_or_after_the_end_stops_nothing(hook: FakeHook) -> None:
    o = op()
    o.on_kill()
    assert hook.count("stop") == 0
    hook.script(ID1, "Succeeded")
    o2 = op()
    o2.execute(context())
    o2.on_kill()
    assert hook.count("stop") == 0


# -- re-attach: the task state store (Airflow 3.3) --------------------------------------------------------------
def _saved(task_id: str, **over: str) -> FakeStore:
    value = {"function_name": "my-fc-job", "qualifier": "LATEST", "task_id": task_id, "request_id": "r"}
    value.update(over)
    return FakeStore({"fc_async_task": value})


def test_store_with_an_active_task_reattaches_without_invoking(hook: FakeHook) -> None:
    hook.script(ID1, "Running", "Running", task(ID1, "Succeeded", returnPayload='{"ok":1}'))
    result = op().execute(context(try_number=2, store=_saved(ID1)))
    assert result["task_id"] == ID1 and result["return_payload"] == {"ok": 1}
    assert invoked(hook) == []


def test_store_with_a_succeeded_task_returns_its_result(hook: FakeHook) -> None:
    hook.script(ID1, task(ID1, "Succeeded", returnPayload="done"))
    result = op().execute(context(try_number=2, store=_saved(ID1)))
    assert (result["status"], result["return_payload"]) == ("Succeeded", "done")
    assert invoked(hook) == []


@pytest.mark.parametrize("status", ["Failed", "Stopped", "Expired", "Invalid"])
def test_store_with_an_ended_unsuccessful_task_invokes_a_new_one(hook: FakeHook, status: str) -> None:
    hook.script(ID1, status)
    hook.script(ID2, "Succeeded")
    hook.listed = [task(ID1, status)]
    store = _saved(ID1)
    result = op().execute(context(try_number=2, store=store))
    assert result["task_id"] == ID2  # never the earlier failure reported as success
    assert invoked(hook) == [ID2]
    assert store.values["fc_async_task"]["task_id"] == ID2


def test_store_of_another_function_is_ignored(hook: FakeHook) -> None:
    hook.script(ID1, "Running")
    hook.script(ID2, "Succeeded")
    op().execute(context(try_number=2, store=_saved(ID1, function_name="other")))
    assert invoked(hook) == [ID2]


# -- re-attach: the ListAsyncTasks prefix lookup (every version) -----------------------------------------------
def test_prefix_lookup_reattaches_to_an_active_earlier_try(hook: FakeHook) -> None:
    hook.listed = [task(ID1, "Running")]
    hook.script(ID1, "Running", "Succeeded")
    result = op().execute(context(try_number=2))
    assert result["task_id"] == ID1
    assert invoked(hook) == []
    listing = next(args for kind, args in hook.calls if kind == "list")
    assert listing["prefix"] == f"{PREFIX}-t"


def test_prefix_lookup_returns_a_succeeded_earlier_try_of_this_run(hook: FakeHook) -> None:
    hook.listed = [task(ID1, "Failed"), task(ID2, "Succeeded")]
    hook.script(ID2, task(ID2, "Succeeded", returnPayload="2"))
    result = op().execute(context(try_number=3))
    assert (result["task_id"], result["return_payload"]) == (ID2, 2)
    assert invoked(hook) == []


def test_prefix_lookup_with_only_failed_tries_invokes_anew(hook: FakeHook) -> None:
    hook.listed = [task(ID1, "Failed"), task(ID2, "Stopped")]
    hook.script(ID3, "Succeeded")
    assert op().execute(context(try_number=3))["task_id"] == ID3
    assert invoked(hook) == [ID3]


def test_prefix_lookup_ignores_other_task_instances(hook: FakeHook) -> None:
    other = task_ids.try_task_id(task_ids.task_id_prefix("dag", "invoke", "other-run", -1), 1)
    mapped = task_ids.try_task_id(
        task_ids.task_id_prefix("dag", "invoke", "manual__2024-01-01T00:00:00+00:00", 0), 1
    )
    hook.listed = [task(other, "Running"), task(mapped, "Succeeded"), task(f"{PREFIX}-tx", "Running")]
    hook.script(ID2, "Succeeded")
    assert op().execute(context(try_number=2))["task_id"] == ID2
    assert invoked(hook) == [ID2]


def test_first_try_does_not_look_up_and_a_409_attaches_to_its_own_task(hook: FakeHook) -> None:
    hook.invoke_error = FcConflictError("exists", status=409, code="Conflict", request_id="r")
    hook.script(ID1, "Running", "Succeeded")
    assert op().execute(context(try_number=1))["task_id"] == ID1
    assert not any(kind == "list" for kind, _ in hook.calls)


def test_a_409_on_an_already_failed_task_of_this_try_fails(hook: FakeHook) -> None:
    hook.invoke_error = FcConflictError("exists", status=409, code="Conflict", request_id="r")
    hook.script(ID1, task(ID1, "Failed", taskErrorMessage="boom"))
    with pytest.raises(AirflowException, match="boom"):
        op().execute(context(try_number=1))


def test_explicit_id_gets_a_try_suffix_on_retries(hook: FakeHook) -> None:
    hook.listed = [task("my-job", "Failed")]
    hook.script("my-job-t2", "Succeeded")
    assert op(async_task_id="my-job").execute(context(try_number=2))["task_id"] == "my-job-t2"
    hook.listed = [task("my-job", "Running")]
    hook.script("my-job", "Succeeded")
    assert op(async_task_id="my-job").execute(context(try_number=2))["task_id"] == "my-job"


def test_deferrable_reattach_defers_on_the_earlier_task(hook: FakeHook) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    hook.script(ID1, "Running")
    with pytest.raises(TaskDeferred) as info:
        op(deferrable=True).execute(context(try_number=2, store=_saved(ID1)))
    assert info.value.trigger.serialize()[1]["async_task_id"] == ID1
    assert invoked(hook) == []
