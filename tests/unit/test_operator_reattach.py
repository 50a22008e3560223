"""FcInvokeAsyncOperator: on_kill in the blocking wait, and every re-attach branch on a retry."""

from __future__ import annotations

import threading
import time

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_fc_async.core import task_ids
from airflow_fc_async.core.errors import FcConflictError, FcNotFoundError, FcTaskIdInUseError
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.operators.following import FcAsyncTaskMixin
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


# -- a taken id (409): attach only to this request's own task (issue 13 item 1) ------------------------------------
def _run_after(ctx: dict[str, object], when: str) -> dict[str, object]:
    """Airflow 3's context: the DAG run carries run_after, a sure marker of this DAG run."""
    from datetime import datetime
    from unittest import mock

    ctx["dag_run"] = mock.MagicMock(run_after=datetime.fromisoformat(when), clear_number=0)
    return ctx


def test_a_409_without_proof_of_ownership_fails_at_once(hook: FakeHook) -> None:
    """No task state store and no sure DAG-run marker (Airflow 2): the same payload alone is not enough."""
    hook.taken[ID1] = (task(ID1, "Succeeded", returnPayload='{"run": 1}'), "same-id")
    with pytest.raises(AirflowFailException) as err:
        op().execute(context(try_number=1))
    assert ID1 in str(err.value) and "already used (409)" in str(err.value)
    assert "airflow dags test" in str(err.value)
    assert not any(
        kind in ("list", "get") for kind, _ in hook.calls
    )  # nothing of the old task read or reported


def test_a_409_with_a_store_that_has_no_record_of_it_fails_at_once(hook: FakeHook) -> None:
    hook.taken[ID1] = (task(ID1, "Succeeded"), "same-id")
    with pytest.raises(AirflowFailException, match="task state store of this task instance has no record"):
        op().execute(context(try_number=1, store=FakeStore()))


def test_a_repeat_of_this_try_attaches_when_the_store_named_the_id_before_the_invoke(hook: FakeHook) -> None:
    store = FakeStore(
        {"fc_async_task": {"function_name": "my-fc-job", "qualifier": "LATEST", "task_id": ID1}}
    )
    hook.taken[ID1] = (task(ID1, "Running"), "same-id")
    gone = FcNotFoundError("not yet", status=404, code="AsyncTaskNotFound", request_id="r")
    hook.script(ID1, gone, "Running", "Succeeded")  # the stored id read before FC listed it: then a 409
    assert op().execute(context(try_number=1, store=store))["task_id"] == ID1
    assert invoked(hook) == [ID1]


def test_a_409_on_an_already_failed_task_of_this_try_fails(hook: FakeHook) -> None:
    store = FakeStore(
        {"fc_async_task": {"function_name": "my-fc-job", "qualifier": "LATEST", "task_id": ID1}}
    )
    gone = FcNotFoundError("not yet", status=404, code="AsyncTaskNotFound", request_id="r")
    hook.script(ID1, gone, task(ID1, "Failed", taskErrorMessage="boom"))
    hook.taken[ID1] = (task(ID1, "Failed", taskErrorMessage="boom"), "same-id")
    with pytest.raises(AirflowException, match="boom"):
        op().execute(context(try_number=1, store=store))


def test_the_invoke_is_written_ahead_to_the_store(hook: FakeHook, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeStore()
    seen: list[object] = []
    real = hook.invoke_async

    def invoke(*args: object, **kwargs: object) -> object:
        seen.append(dict(store.values["fc_async_task"]))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hook, "invoke_async", invoke)
    hook.script(ID1, "Succeeded")
    op().execute(context(try_number=1, store=store))
    assert seen and seen[0]["task_id"] == ID1  # type: ignore[index]


def test_on_airflow_3_run_after_makes_the_id_of_a_run_created_again_new(hook: FakeHook) -> None:
    """A DAG run deleted and created again under its run id (dags test twice) gets other ids: a fresh invoke."""
    first = _run_after(context(), "2026-01-01T00:00:01+00:00")
    again = _run_after(context(), "2026-01-01T00:05:00+00:00")
    for ctx in (first, again):
        hook.script(op()._task_id_prefix(ctx)[0] + "-t1", "Succeeded")  # type: ignore[arg-type]
        op().execute(ctx)
    ids = invoked(hook)
    assert len(set(ids)) == 2 and ID1 not in ids
    assert all(i.startswith("dag-invoke-manual__2024-01-01T00_00_00_00_00-") for i in ids)


def test_without_a_store_a_409_of_the_same_run_marker_and_payload_is_still_refused(hook: FakeHook) -> None:
    """Airflow 3.0's dags test with the same date repeats run_after: the marker alone proves nothing."""
    ctx = _run_after(context(), "2026-01-01T00:00:01+00:00")
    own = op()._task_id_prefix(ctx)[0] + "-t1"  # type: ignore[arg-type]
    hook.taken[own] = (task(own, "Succeeded"), "same-id")
    with pytest.raises(AirflowFailException, match="without a task state store"):
        op().execute(ctx)


def test_a_reused_user_id_with_another_payload_fails_at_once_and_names_the_id(hook: FakeHook) -> None:
    """The issue's case: async_task_id="nightly_job" again in a new DAG run with {"run": 2}."""
    from airflow_fc_async.core.errors import task_id_in_use

    hook.invoke_error = FcConflictError(
        task_id_in_use("nightly_job", "my-fc-job", "that task holds another payload"),
        status=409,
        code="AsyncTaskAlreadyExists",
        request_id="r",
    )
    with pytest.raises(AirflowFailException) as err:
        op(async_task_id="nightly_job", payload={"run": 2}).execute(context(try_number=1))
    assert "'nightly_job'" in str(err.value) and "idempotency key" in str(err.value)
    assert hook.count("get") == 0


def test_a_refused_generated_id_gets_the_generated_ids_advice_whoever_refused_it(hook: FakeHook) -> None:
    """Issue 18: one message for a 409, whose advice fits a generated id (not "the same payload returns the
    existing task", which the operator's own refusal contradicts, nor "use the operator's generated id")."""
    hook.invoke_error = FcTaskIdInUseError(
        ID1, "my-fc-job", "that task holds another payload", status=409, code="Conflict", request_id="r"
    )
    with pytest.raises(AirflowFailException) as by_client:
        op().execute(context(try_number=1))
    hook.invoke_error = None
    hook.taken[ID1] = (task(ID1, "Succeeded"), "same-id")
    with pytest.raises(AirflowFailException) as by_operator:
        op().execute(context(try_number=1))
    for err, why in ((by_client, "another payload"), (by_operator, "nothing proves it is this DAG run's")):
        text = str(err.value)
        assert f"async task id {ID1!r}" in text and "already used (409)" in text and why in text
        assert "a new DAG run id gets new ids" in text
        assert "returns the existing task's result" not in text and "nightly-{{ ds }}" not in text


def test_a_reused_user_id_with_the_same_payload_returns_the_existing_result(hook: FakeHook) -> None:
    """An idempotency key: the same key with the same payload is the existing task (no store needed)."""
    done = task("nightly-2026-01-01", "Succeeded", returnPayload='{"rows": 3}')
    hook.taken["nightly-2026-01-01"] = (done, "same-id")
    out = op(async_task_id="nightly-2026-01-01", payload={"d": 1}).execute(context(store=FakeStore()))
    assert out["return_payload"] == {"rows": 3} and invoked(hook) == ["nightly-2026-01-01"]


def test_a_409_of_this_calls_own_earlier_attempt_attaches(hook: FakeHook) -> None:
    hook.taken[ID1] = (task(ID1, "Running"), "retry")
    hook.script(ID1, "Succeeded")
    assert op().execute(context(try_number=1))["task_id"] == ID1


def test_a_stored_task_of_another_prefix_is_not_reused(hook: FakeHook) -> None:
    other = task_ids.try_task_id(task_ids.task_id_prefix("dag", "invoke", "other-run", -1), 1)
    store = FakeStore(
        {"fc_async_task": {"function_name": "my-fc-job", "qualifier": "LATEST", "task_id": other}}
    )
    hook.script(other, "Succeeded")
    hook.script(ID2, "Succeeded")
    assert op().execute(context(try_number=2, store=store))["task_id"] == ID2


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
