"""Function Compute 3.0 async-task clients: :class:`FcClient` (requests) and :class:`AsyncFcClient` (aiohttp).

Both inherit every request and every reply reading from :class:`FcRequests`, which does no I/O: the two clients
differ only in how they send. Inputs are validated before anything is sent.

Invoke is made safe to retry: a task id is always sent (generated here when the caller gives none), so a
repeated InvokeFunction cannot start the function twice. Every 409 (the id is taken) is resolved in one place,
``FcRequests._resolve_conflict``: the task is read back, and it is returned (``AsyncInvocation.existing``) only
when it holds this very payload; otherwise the invoke fails with a ``FcConflictError`` saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar, Unpack

from airflow_fc_async.core.errors import (
    FcConflictError,
    FcNotFoundError,
)
from airflow_fc_async.core.fc_requests import FcRequests, InvokeOptions, _Invoke
from airflow_fc_async.core.http import (
    handle_reply,
)
from airflow_fc_async.core.models import (
    AsyncInvocation,
    AsyncInvokeConfig,
    AsyncTask,
)
from airflow_fc_async.core.task_query import AsyncTaskQuery, Pager, TaskFilters
from airflow_fc_async.core.transport import AsyncSender, SyncSender

__all__ = ["AsyncFcClient", "AsyncTaskQuery", "FcClient", "InvokeOptions", "TaskFilters"]

T = TypeVar("T")


class FcClient(SyncSender, FcRequests):
    """Synchronous FC client over one pooled ``requests`` session. Thread-safe; :meth:`close` when done.

    ``proxies`` (e.g. ``{"https": "http://proxy:3128"}``) replaces the proxy environment variables, which are
    not read (``trust_env`` is off to keep per-call CPU low).
    """

    def invoke_async(
        self, function_name: str, payload: Any, **options: Unpack[InvokeOptions]
    ) -> AsyncInvocation:
        inv = self._invoke_async_op(function_name, payload, **options)
        for attempt in self.retry.retrying(action=inv.op.action):
            with attempt:
                try:
                    return handle_reply(inv.op, self._transport.send(self._sign(inv.op)))
                except FcConflictError as err:
                    task = self._read_back(inv)
                    return self._resolve_conflict(
                        inv, err, task, retry=attempt.retry_state.attempt_number > 1
                    )
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_back(self, inv: _Invoke) -> AsyncTask | None:
        try:
            return self.get_async_task(inv.function_name, inv.task_id, qualifier=inv.qualifier)
        except FcNotFoundError:
            return None

    def invoke_sync(self, function_name: str, payload: Any, *, qualifier: str = "LATEST") -> bytes:
        result: bytes = self._run(self._invoke_sync_op(function_name, payload, qualifier))
        return result

    def get_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> AsyncTask:
        result: AsyncTask = self._run(self._get_task_op(function_name, task_id, qualifier))
        return result

    def list_async_tasks(
        self, function_name: str | AsyncTaskQuery, **filters: Unpack[TaskFilters]
    ) -> Iterator[AsyncTask]:
        """Tasks page by page, following ``nextToken`` lazily; the arguments (:class:`TaskFilters`, or an
        :class:`AsyncTaskQuery` in place of ``function_name``) are checked at once."""
        return self._walk(self._task_pager(AsyncTaskQuery.of(function_name, filters)))

    def stop_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> None:
        self._run(self._stop_task_op(function_name, task_id, qualifier))

    def put_async_invoke_config(
        self, function_name: str, config: AsyncInvokeConfig, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig:
        result: AsyncInvokeConfig = self._run(self._put_config_op(function_name, config, qualifier))
        return result

    def get_async_invoke_config(
        self, function_name: str, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig | None:
        result: AsyncInvokeConfig | None = self._run(self._get_config_op(function_name, qualifier))
        return result

    def delete_async_invoke_config(self, function_name: str, *, qualifier: str = "LATEST") -> None:
        self._run(self._delete_config_op(function_name, qualifier))

    def list_async_invoke_configs(self, *, function_name: str | None = None) -> Iterator[AsyncInvokeConfig]:
        return self._walk(self._config_pager(function_name))  # the arguments are checked now, not on next()

    def _walk(self, pager: Pager[T]) -> Iterator[T]:
        while (op := pager.next_request()) is not None:
            yield from pager.take(self._run(op))

    def get_function(self, function_name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._run(self._get_function_op(function_name, qualifier))
        return result


class AsyncFcClient(AsyncSender, FcRequests):
    """The asyncio twin of :class:`FcClient` (same method names, awaited); :meth:`aclose` when done. The
    clients of one event loop share one connection pool per endpoint (short requests only)."""

    share_pool = True

    async def invoke_async(
        self, function_name: str, payload: Any, **options: Unpack[InvokeOptions]
    ) -> AsyncInvocation:
        inv = self._invoke_async_op(function_name, payload, **options)
        async for attempt in self.retry.async_retrying(action=inv.op.action):
            with attempt:
                try:
                    return handle_reply(inv.op, await self._transport.send(self._sign(inv.op)))
                except FcConflictError as err:
                    task = await self._read_back(inv)
                    return self._resolve_conflict(
                        inv, err, task, retry=attempt.retry_state.attempt_number > 1
                    )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_back(self, inv: _Invoke) -> AsyncTask | None:
        try:
            return await self.get_async_task(inv.function_name, inv.task_id, qualifier=inv.qualifier)
        except FcNotFoundError:
            return None

    async def invoke_sync(self, function_name: str, payload: Any, *, qualifier: str = "LATEST") -> bytes:
        result: bytes = await self._run(self._invoke_sync_op(function_name, payload, qualifier))
        return result

    async def get_async_task(
        self, function_name: str, task_id: str, *, qualifier: str = "LATEST"
    ) -> AsyncTask:
        result: AsyncTask = await self._run(self._get_task_op(function_name, task_id, qualifier))
        return result

    def list_async_tasks(
        self, function_name: str | AsyncTaskQuery, **filters: Unpack[TaskFilters]
    ) -> AsyncIterator[AsyncTask]:
        """An async iterator (``async for``); the arguments are checked at once."""
        return self._awalk(self._task_pager(AsyncTaskQuery.of(function_name, filters)))

    async def stop_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> None:
        await self._run(self._stop_task_op(function_name, task_id, qualifier))

    async def put_async_invoke_config(
        self, function_name: str, config: AsyncInvokeConfig, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig:
        result: AsyncInvokeConfig = await self._run(self._put_config_op(function_name, config, qualifier))
        return result

    async def get_async_invoke_config(
        self, function_name: str, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig | None:
        result: AsyncInvokeConfig | None = await self._run(self._get_config_op(function_name, qualifier))
        return result

    async def delete_async_invoke_config(self, function_name: str, *, qualifier: str = "LATEST") -> None:
        await self._run(self._delete_config_op(function_name, qualifier))

    def list_async_invoke_configs(
        self, *, function_name: str | None = None
    ) -> AsyncIterator[AsyncInvokeConfig]:
        return self._awalk(self._config_pager(function_name))

    async def _awalk(self, pager: Pager[T]) -> AsyncIterator[T]:
        while (op := pager.next_request()) is not None:
            for item in pager.take(await self._run(op)):
                yield item

    async def get_function(self, function_name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._run(self._get_function_op(function_name, qualifier))
        return result
