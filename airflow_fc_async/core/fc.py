"""Function Compute 3.0 async-task clients: :class:`FcClient` (requests) and :class:`AsyncFcClient` (aiohttp).

Each holds an :class:`FcRequests` (every request and every reply reading, no I/O) and a transport, and sends what
the builder builds through ``run`` / ``arun``: the two clients differ only in how they send. Inputs are
validated before anything is sent.

Invoke is made safe to retry: a task id is always sent (generated here when the caller gives none), so a
repeated InvokeFunction cannot start the function twice. It goes through the one retry path like every call;
a 409 (the id is taken) that ends it is resolved afterwards, in one place, ``PendingInvoke.resolve``: the task is
read back (one GetAsyncTask, under its own retries), and it is returned (``AsyncInvocation.existing``) only when
it holds this very payload; otherwise the invoke fails with an ``FcTaskIdInUseError`` (an ``FcConflictError``)
saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar, Unpack

from airflow_fc_async.core.errors import (
    FcConflictError,
    FcNotFoundError,
)
from airflow_fc_async.core.fc_requests import FcRequests, InvokeOptions, PendingInvoke
from airflow_fc_async.core.models import (
    AsyncInvocation,
    AsyncInvokeConfig,
    AsyncTask,
)
from airflow_fc_async.core.task_query import AsyncTaskQuery, Pager, TaskFilters
from airflow_fc_async.core.transport import AsyncSender, CountingSigner, SyncSender

__all__ = ["AsyncFcClient", "AsyncTaskQuery", "FcClient", "InvokeOptions", "TaskFilters"]

T = TypeVar("T")


class FcClient(SyncSender):
    """Synchronous FC client over one pooled ``requests`` session. Thread-safe; :meth:`close` when done.

    ``proxies`` (e.g. ``{"https": "http://proxy:3128"}``) replaces the proxy environment variables, which are
    not read (``trust_env`` is off to keep per-call CPU low).
    """

    requests_class = FcRequests
    _requests: FcRequests

    def invoke_async(
        self, function_name: str, payload: Any, **options: Unpack[InvokeOptions]
    ) -> AsyncInvocation:
        inv = self._requests.invoke_async_op(function_name, payload, **options)
        sign = CountingSigner(self._requests.sign)
        try:
            result: AsyncInvocation = self._run(inv.op, sign)
        except FcConflictError as err:
            return inv.resolve(err, self._read_back(inv), retry=sign.attempts > 1)
        return result

    def _read_back(self, inv: PendingInvoke) -> AsyncTask | None:
        try:
            return self.get_async_task(inv.function_name, inv.task_id, qualifier=inv.qualifier)
        except FcNotFoundError:
            return None

    def invoke_sync(self, function_name: str, payload: Any, *, qualifier: str = "LATEST") -> bytes:
        result: bytes = self._run(self._requests.invoke_sync_op(function_name, payload, qualifier))
        return result

    def get_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> AsyncTask:
        result: AsyncTask = self._run(self._requests.get_task_op(function_name, task_id, qualifier))
        return result

    def list_async_tasks(
        self, function_name: str | AsyncTaskQuery, **filters: Unpack[TaskFilters]
    ) -> Iterator[AsyncTask]:
        """Tasks page by page, following ``nextToken`` lazily; the arguments (:class:`TaskFilters`, or an
        :class:`AsyncTaskQuery` in place of ``function_name``) are checked at once."""
        return self._walk(self._requests.task_pager(AsyncTaskQuery.of(function_name, filters)))

    def stop_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> None:
        self._run(self._requests.stop_task_op(function_name, task_id, qualifier))

    def put_async_invoke_config(
        self, function_name: str, config: AsyncInvokeConfig, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig:
        result: AsyncInvokeConfig = self._run(self._requests.put_config_op(function_name, config, qualifier))
        return result

    def get_async_invoke_config(
        self, function_name: str, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig | None:
        result: AsyncInvokeConfig | None = self._run(self._requests.get_config_op(function_name, qualifier))
        return result

    def delete_async_invoke_config(self, function_name: str, *, qualifier: str = "LATEST") -> None:
        self._run(self._requests.delete_config_op(function_name, qualifier))

    def list_async_invoke_configs(self, *, function_name: str | None = None) -> Iterator[AsyncInvokeConfig]:
        return self._walk(
            self._requests.config_pager(function_name)
        )  # the arguments are checked now, not on next()

    def _walk(self, pager: Pager[T]) -> Iterator[T]:
        while (op := pager.next_request()) is not None:
            yield from pager.take(self._run(op))

    def get_function(self, function_name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._run(self._requests.get_function_op(function_name, qualifier))
        return result


class AsyncFcClient(AsyncSender):
    """The asyncio twin of :class:`FcClient` (same method names, awaited); :meth:`aclose` when done. The
    clients of one event loop share one connection pool per endpoint (short requests only)."""

    requests_class = FcRequests
    _requests: FcRequests
    share_pool = True

    async def invoke_async(
        self, function_name: str, payload: Any, **options: Unpack[InvokeOptions]
    ) -> AsyncInvocation:
        inv = self._requests.invoke_async_op(function_name, payload, **options)
        sign = CountingSigner(self._requests.sign)
        try:
            result: AsyncInvocation = await self._run(inv.op, sign)
        except FcConflictError as err:
            return inv.resolve(err, await self._read_back(inv), retry=sign.attempts > 1)
        return result

    async def _read_back(self, inv: PendingInvoke) -> AsyncTask | None:
        try:
            return await self.get_async_task(inv.function_name, inv.task_id, qualifier=inv.qualifier)
        except FcNotFoundError:
            return None

    async def invoke_sync(self, function_name: str, payload: Any, *, qualifier: str = "LATEST") -> bytes:
        result: bytes = await self._run(self._requests.invoke_sync_op(function_name, payload, qualifier))
        return result

    async def get_async_task(
        self, function_name: str, task_id: str, *, qualifier: str = "LATEST"
    ) -> AsyncTask:
        result: AsyncTask = await self._run(self._requests.get_task_op(function_name, task_id, qualifier))
        return result

    def list_async_tasks(
        self, function_name: str | AsyncTaskQuery, **filters: Unpack[TaskFilters]
    ) -> AsyncIterator[AsyncTask]:
        """An async iterator (``async for``); the arguments are checked at once."""
        return self._awalk(self._requests.task_pager(AsyncTaskQuery.of(function_name, filters)))

    async def stop_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> None:
        await self._run(self._requests.stop_task_op(function_name, task_id, qualifier))

    async def put_async_invoke_config(
        self, function_name: str, config: AsyncInvokeConfig, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig:
        result: AsyncInvokeConfig = await self._run(
            self._requests.put_config_op(function_name, config, qualifier)
        )
        return result

    async def get_async_invoke_config(
        self, function_name: str, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig | None:
        result: AsyncInvokeConfig | None = await self._run(
            self._requests.get_config_op(function_name, qualifier)
        )
        return result

    async def delete_async_invoke_config(self, function_name: str, *, qualifier: str = "LATEST") -> None:
        await self._run(self._requests.delete_config_op(function_name, qualifier))

    def list_async_invoke_configs(
        self, *, function_name: str | None = None
    ) -> AsyncIterator[AsyncInvokeConfig]:
        return self._awalk(self._requests.config_pager(function_name))

    async def _awalk(self, pager: Pager[T]) -> AsyncIterator[T]:
        while (op := pager.next_request()) is not None:
            for item in pager.take(await self._run(op)):
                yield item

    async def get_function(self, function_name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._run(self._requests.get_function_op(function_name, qualifier))
        return result
