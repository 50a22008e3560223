"""airflow_fc_async.compat on the running Airflow: which branch is active, and that it behaves.

`make test-compat` runs this file on 2.11, 3.0 and 3.3; each test asserts the branch its version must take (no
branch is forced here: only the task-instance state, which needs a running Airflow, is faked).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_fc_async import compat
from airflow_fc_async.triggers.fc import FcAsyncTaskTrigger
from tests.unit._fc_fakes import FakeHook

VERSION = compat._airflow_version()


def test_the_flags_match_the_running_airflow() -> None:
    from airflow import __version__

    assert tuple(int(p) for p in __version__.split(".")[:2]) == VERSION
    assert compat.AIRFLOW_V_3_3_PLUS is (VERSION >= (3, 3))
    # the triggerer calls on_kill from 3.3 on; before, the trigger's CancelledError fallback does the stop
    assert compat.trigger_has_on_kill() is compat.AIRFLOW_V_3_3_PLUS


def trigger(hook: FakeHook, **kwargs: Any) -> FcAsyncTaskTrigger:
    trig = FcAsyncTaskTrigger(function_name="fn", async_task_id="t1", poll_interval=0.01, **kwargs)
    trig.__dict__["_fc_hook"] = hook
    return trig


async def cancel_mid_run(trig: FcAsyncTaskTrigger) -> None:
    async def drain() -> None:
        async for _ in trig.run():
            pass

    running = asyncio.ensure_future(drain())
    await asyncio.sleep(0.05)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running


async def test_a_user_cancel_of_a_deferred_task_stops_the_fc_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """3.3: the cancel itself stops nothing and on_kill stops; before: the CancelledError fallback stops."""

    async def user_acted(_: object) -> bool:
        return False  # the task instance left DEFERRED

    monkeypatch.setattr(compat, "task_instance_still_deferred", user_acted)
    hook = FakeHook()
    hook.script("t1", "Running")
    trig = trigger(hook)
    await cancel_mid_run(trig)
    if compat.AIRFLOW_V_3_3_PLUS:
        assert hook.count("stop") == 0
        trig.__dict__["_fc_hook"] = hook  # run() released its session; on_kill opens another
        await trig.on_kill()  # what the 3.3 triggerer calls on a user action
    assert hook.count("stop") == 1


async def test_a_triggerer_restart_never_stops_the_fc_task(monkeypatch: pytest.MonkeyPatch) -> None:
    async def restart(_: object) -> bool:
        return True  # still DEFERRED: another triggerer takes over

    monkeypatch.setattr(compat, "task_instance_still_deferred", restart)
    hook = FakeHook()
    hook.script("t1", "Running")
    await cancel_mid_run(trigger(hook))
    assert hook.count("stop") == 0


@pytest.mark.parametrize(
    ("map_index", "states", "expected"),
    [
        (-1, {"run": {"invoke": "deferred"}}, True),
        (-1, {"run": {"invoke": "failed"}}, False),
        (2, {"run": {"invoke_2": "scheduled", "invoke": "deferred"}}, False),
        (2, {"run": {"invoke_2": "deferred"}}, True),
    ],
)
async def test_task_instance_still_deferred_reads_this_versions_state(
    monkeypatch: pytest.MonkeyPatch, map_index: int, states: dict[str, dict[str, str]], expected: bool
) -> None:
    """3.x asks the API server (RuntimeTaskInstance.get_task_states); 2.x reads the metadata DB."""
    seen: dict[str, object] = {}
    ti = SimpleNamespace(dag_id="dag", task_id="invoke", run_id="run", map_index=map_index)
    if VERSION >= (3, 0):
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        def get_task_states(**kwargs: object) -> dict[str, dict[str, str]]:
            seen.update(kwargs)
            return states

        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
        assert await compat.task_instance_still_deferred(ti) is expected
        assert seen["run_ids"] == ["run"] and seen["task_ids"] == ["invoke"]
    else:
        key = "invoke" if map_index < 0 else f"invoke_{map_index}"

        def db_state(task_instance: Any) -> str | None:
            seen["ti"] = task_instance
            return states["run"].get(key)

        monkeypatch.setattr(compat, "_airflow2_ti_state", db_state)
        assert await compat.task_instance_still_deferred(ti) is expected
        assert seen["ti"] is ti


async def test_an_unreadable_state_counts_as_deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("no comms")

    if VERSION >= (3, 0):
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(broken))
    else:
        monkeypatch.setattr(compat, "_airflow2_ti_state", broken)
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1)
    assert await compat.task_instance_still_deferred(ti) is True
    assert await compat.task_instance_still_deferred(None) is True


def test_the_state_source_of_this_version() -> None:
    """2.x: a real (fresh) metadata DB, where an unknown task instance reads as None; 3.x: the API call exists."""
    if VERSION >= (3, 0):  # workers have no DB access: the state comes from the API server
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        assert callable(RuntimeTaskInstance.get_task_states)
        return
    from tests.e2e.conftest import reset_airflow_db

    reset_airflow_db()
    ti = SimpleNamespace(dag_id="nope", task_id="t", run_id="r", map_index=-1)
    assert compat._airflow2_ti_state(ti) is None


def test_deferral_timeout_is_told_from_a_trigger_failure() -> None:
    cls = compat.task_deferral_timeout()
    if VERSION >= (3, 0):
        assert cls.__name__ == "TaskDeferralTimeout"
        assert compat.is_deferral_timeout(cls("Trigger timeout"))
    else:  # Airflow 2 raises TaskDeferralError for both; the message tells them apart
        from airflow.exceptions import TaskDeferralError

        assert cls is TaskDeferralError
        assert compat.is_deferral_timeout(TaskDeferralError(compat.AIRFLOW2_DEFERRAL_TIMEOUT_ERROR))
        assert not compat.is_deferral_timeout(TaskDeferralError("Trigger failure"))
    assert not compat.is_deferral_timeout(RuntimeError("Trigger timeout"))


def test_task_state_store_is_read_from_the_context() -> None:
    store = object()
    assert compat.task_state_store({"task_state_store": store}) is store
    assert compat.task_state_store({}) is None  # before 3.3 the context has none: prefix re-attach


def test_the_task_instance_is_read_from_this_versions_context() -> None:
    ti = object()
    if VERSION >= (3, 0):  # a TypedDict: a plain dict at run time
        from airflow.sdk.definitions.context import Context

        context: Any = Context(ti=ti)  # type: ignore[typeddict-item]
        assert isinstance(context, dict)
    else:  # a MutableMapping that is no dict
        from airflow.utils.context import Context  # type: ignore[no-redef]

        context = Context({"ti": ti})
        assert not isinstance(context, dict)
    assert compat.context_task_instance(context) is ti
    assert compat.context_task_instance(None) is None


def test_resumable_job_mixin_exists_only_from_3_3() -> None:
    try:
        from airflow.sdk import ResumableJobMixin  # noqa: F401
    except ImportError:
        present = False
    else:
        present = True
    assert present is compat.AIRFLOW_V_3_3_PLUS


def test_the_connection_form_of_this_version() -> None:
    """2.x builds the form from get_connection_form_widgets; 3.2+ from conn-fields in the provider info."""
    from airflow.providers_manager import ProvidersManager

    from airflow_fc_async.get_provider_info import get_provider_info

    ours = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == "alibaba_fc"]
    assert set(ours[0]["conn-fields"]) >= {"access_key_id", "access_key_secret", "region", "fc_endpoint"}
    widgets = {k for k in ProvidersManager().connection_form_widgets if k.startswith("extra__alibaba_fc__")}
    if VERSION < (3, 0) or VERSION >= (3, 2):
        assert "extra__alibaba_fc__access_key_secret" in widgets and len(widgets) == 8
    else:  # 3.0/3.1 without the FAB provider: no form widgets (the extra JSON is edited instead)
        assert widgets == set()


def test_dag_run_marker_tells_a_run_created_again_from_the_first() -> None:
    """Airflow 3: run_after; Airflow 2: the run's database id and start date; nothing known: None."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from airflow_fc_async import compat

    first = compat.dag_run_marker(
        {"dag_run": SimpleNamespace(run_after=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC))}
    )
    again = compat.dag_run_marker(
        {"dag_run": SimpleNamespace(run_after=datetime(2026, 1, 1, 0, 5, tzinfo=UTC))}
    )
    assert first and again and first != again
    start = datetime(2024, 3, 1, tzinfo=UTC)
    old = compat.dag_run_marker({"dag_run": SimpleNamespace(id=7, start_date=start)})
    new = compat.dag_run_marker({"dag_run": SimpleNamespace(id=8, start_date=start)})
    assert old and new and old != new
    assert compat.dag_run_marker({}) is None


def test_an_upstream_output_is_an_xcom_arg_of_this_version() -> None:
    """XComArg is the task SDK's on Airflow 3, airflow.models' on 2: the invoke operator accepts one as payload."""
    from datetime import UTC, datetime

    from airflow.providers.common.compat.sdk import DAG, BaseOperator

    from airflow_fc_async.operators.fc import FcInvokeAsyncOperator

    with DAG("compat_xcom_arg", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)):
        upstream = BaseOperator(task_id="upstream")
        assert compat.is_xcom_arg(upstream.output)
        assert not compat.is_xcom_arg({"n": 1}) and not compat.is_xcom_arg("{{ ti.xcom_pull('upstream') }}")
        op = FcInvokeAsyncOperator(task_id="invoke", function_name="fn", payload=upstream.output)
    assert compat.is_xcom_arg(op.payload)
    with pytest.raises(ValueError, match="payload must be"):
        FcInvokeAsyncOperator(task_id="bad", function_name="fn", payload=object())
