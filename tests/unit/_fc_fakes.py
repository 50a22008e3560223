"""Scripted stand-ins for FcHook and the Airflow context, shared by the operator, sensor and trigger unit tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from unittest import mock

from airflow_fc_async.core.models import AsyncInvocation, AsyncInvokeConfig, AsyncTask


def task(task_id: str = "t1", status: str = "Running", **extra: Any) -> AsyncTask:
    raw: dict[str, Any] = {"taskId": task_id, "status": status, "requestId": f"req-{task_id}"}
    raw.update(extra)
    return AsyncTask.from_json(raw)


class FakeHook:
    """Answers GetAsyncTask from a per-task script (the last read repeats); records every call."""

    def __init__(self, reads: dict[str, list[AsyncTask | Exception]] | None = None) -> None:
        self.reads = reads or {}
        self.listed: list[AsyncTask] = []
        self.invoke_error: Exception | None = None
        self.taken: dict[
            str, tuple[AsyncTask, str]
        ] = {}  # the client's answer to a 409 it matched: (task, conflict)
        self.calls: list[tuple[str, Any]] = []

    def script(self, task_id: str, *statuses: AsyncTask | Exception | str) -> None:
        self.reads[task_id] = [task(task_id, s) if isinstance(s, str) else s for s in statuses]

    def _next(self, task_id: str) -> AsyncTask:
        script = self.reads.get(task_id)
        if not script:
            from airflow_fc_async.core.errors import FcNotFoundError

            raise FcNotFoundError("no such task", status=404, code="AsyncTaskNotFound", request_id="r")
        item = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(item, Exception):
            raise item
        return item

    # sync twin
    def invoke_async(
        self, function_name: str, payload: Any, *, qualifier: str = "LATEST", task_id: Any = None
    ):
        self.calls.append(("invoke", (function_name, payload, qualifier, task_id)))
        if self.invoke_error is not None:
            raise self.invoke_error
        if task_id in self.taken:
            found, conflict = self.taken[task_id]
            return AsyncInvocation(task_id, found.request_id, existing=found, conflict=conflict)
        return AsyncInvocation(task_id=task_id, request_id=f"req-{task_id}")

    def get_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> AsyncTask:
        self.calls.append(("get", task_id))
        return self._next(task_id)

    def stop_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> None:
        self.calls.append(("stop", task_id))

    def get_async_invoke_config(self, function_name: str, *, qualifier: str = "LATEST") -> AsyncInvokeConfig:
        self.calls.append(("config", function_name))
        return AsyncInvokeConfig(async_task=True)  # records kept: a 404 is about the task, not the config

    def list_async_tasks(self, function_name: str, **kwargs: Any) -> Iterable[AsyncTask]:
        self.calls.append(("list", kwargs))
        prefix = kwargs.get("prefix") or ""
        return iter([t for t in self.listed if t.task_id.startswith(prefix)])

    def console_url(self, function_name: str, task_id: str, qualifier: str = "LATEST") -> str:
        return f"https://console.example/{function_name}/{task_id}?q={qualifier}"

    # async twins
    async def aget_async_task(
        self, function_name: str, task_id: str, *, qualifier: str = "LATEST"
    ) -> AsyncTask:
        return self.get_async_task(function_name, task_id, qualifier=qualifier)

    async def astop_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> None:
        self.stop_async_task(function_name, task_id, qualifier=qualifier)

    async def aclose(self) -> None:
        self.calls.append(("aclose", None))

    def count(self, kind: str) -> int:
        return sum(1 for k, _ in self.calls if k == kind)


class FakeStore:
    """The task state store of Airflow 3.3 (get/set), in memory."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value


def context(try_number: int = 1, store: FakeStore | None = None, map_index: int = -1) -> dict[str, Any]:
    ti = mock.MagicMock()
    ti.dag_id, ti.task_id, ti.map_index, ti.try_number = "dag", "invoke", map_index, try_number
    ctx: dict[str, Any] = {"ti": ti, "run_id": "manual__2024-01-01T00:00:00+00:00"}
    if store is not None:
        ctx["task_state_store"] = store
    return ctx


def pushed(ctx: dict[str, Any]) -> dict[str, Any]:
    """What the operator pushed to XCom with explicit keys."""
    return {c.kwargs["key"]: c.kwargs["value"] for c in ctx["ti"].xcom_push.call_args_list}
