"""A user's clear is not a retry: the next try never re-attaches to the FC task the clear is stopping.

Found with real Airflow processes (tests/reliability_long, R4 deferrable + clear): the cleared try's trigger stops
its FC task in on_kill, which may run after the new try started and re-attached to that task.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_fc_async.core import task_ids
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.operators.following import FcAsyncTaskMixin
from tests.unit._fc_fakes import FakeHook, FakeStore, context

PREFIX = task_ids.task_id_prefix("dag", "invoke", "manual__2024-01-01T00:00:00+00:00", -1)
ID1, ID2 = (task_ids.try_task_id(PREFIX, n) for n in (1, 2))


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> FakeHook:
    fake = FakeHook()
    monkeypatch.setattr(FcAsyncTaskMixin, "_new_hook", lambda self: fake)
    return fake


def run(store: FakeStore, clear_number: int, try_number: int = 2, **kwargs: Any) -> dict[str, Any]:
    ctx = context(try_number=try_number, store=store)
    ctx["dag_run"] = SimpleNamespace(clear_number=clear_number)
    o = FcInvokeAsyncOperator(
        task_id="invoke", function_name="my-fc-job", poll_interval=0.05, deferrable=False, **kwargs
    )
    return o.execute(ctx)


def saved(clear_number: int | None) -> FakeStore:
    value = {"function_name": "my-fc-job", "qualifier": "LATEST", "task_id": ID1, "request_id": "r"}
    if clear_number is not None:
        value["clear_number"] = clear_number  # type: ignore[assignment]
    return FakeStore({"fc_async_task": value})


def invoked(hook: FakeHook) -> list[str]:
    return [args[3] for kind, args in hook.calls if kind == "invoke"]


def test_the_clear_number_is_stored_with_the_task(hook: FakeHook) -> None:
    hook.script(ID1, "Succeeded")
    store = FakeStore({})
    run(store, clear_number=3, try_number=1)
    assert store.values["fc_async_task"]["clear_number"] == 3


def test_after_a_clear_a_running_earlier_task_is_not_reattached(hook: FakeHook) -> None:
    hook.script(ID1, "Running", "Stopped")  # the cleared try's on_kill stops it soon
    hook.script(ID2, "Succeeded")
    hook.listed = []  # no prefix lookup either: it would find ID1 again
    store = saved(clear_number=0)
    result = run(store, clear_number=1)
    assert result["task_id"] == ID2 and invoked(hook) == [ID2]
    assert store.values["fc_async_task"] == {
        **store.values["fc_async_task"],
        "task_id": ID2,
        "clear_number": 1,
    }
    assert hook.count("list") == 0


def test_a_retry_without_a_clear_still_reattaches(hook: FakeHook) -> None:
    hook.script(ID1, "Running", "Succeeded")
    result = run(saved(clear_number=1), clear_number=1)
    assert result["task_id"] == ID1 and invoked(hook) == []


@pytest.mark.parametrize("stored", [None, 5])
def test_unknown_or_newer_clear_numbers_keep_the_reattach(hook: FakeHook, stored: int | None) -> None:
    hook.script(ID1, "Running", "Succeeded")
    result = run(saved(clear_number=stored), clear_number=2)
    assert result["task_id"] == ID1 and invoked(hook) == []


def test_stop_on_kill_false_reattaches_after_a_clear(hook: FakeHook) -> None:
    """The cleared try left its FC task running (stop_on_kill=False): following it beats a second run."""
    hook.script(ID1, "Running", "Succeeded")
    result = run(saved(clear_number=0), clear_number=1, stop_on_kill=False)
    assert result["task_id"] == ID1 and invoked(hook) == []
