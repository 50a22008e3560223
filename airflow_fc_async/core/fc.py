"""Function Compute 3.0 async-task clients: :class:`FcClient` (requests) and :class:`AsyncFcClient` (aiohttp).

Both inherit every request and every reply reading from :class:`FcRequests`, which does no I/O: the two clients
differ only in how they send. Inputs are validated before anything is sent.

Invoke is made safe to retry: a task id is always sent (generated here when the caller gives none), so a
repeated InvokeFunction cannot start the function twice. Every 409 (the id is taken) is resolved in one place,
``FcRequests._resolve_conflict``: the task is read back, and it is returned (``AsyncInvocation.existing``) only
when it holds this very payload; otherwise the invoke fails with a ``FcConflictError`` saying so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime
from typing import Any

from airflow_fc_async.core.errors import (
    FcConflictError,
    FcNotFoundError,
)
from airflow_fc_async.core.fc_requests import FcRequests, _ListPlan
from airflow_fc_async.core.http import (
    handle_reply,
)
from airflow_fc_async.core.models import (
    AsyncInvocation,
    AsyncInvokeConfig,
    AsyncTask,
    TaskStatus,
)
from airflow_fc_async.core.transport import AsyncSender, SyncSender

__all__ = ["AsyncFcClient", "FcClient"]


class FcClient(SyncSender, FcRequests):
    """Synchronous FC client over one pooled ``requests`` session. Thread-safe; :meth:`close` when done.

    ``proxies`` (e.g. ``{"https": "http://proxy:3128"}``) replaces the proxy environment variables, which are
    not read (``trust_env`` is off to keep per-call CPU low).
    """

    def invoke_async(
        self,
        function_name: str,
        payload: Any,
        *,
        qualifier: str = "LATEST",
        task_id: str | None = None,
        delay_seconds: int | None = None,
    ) -> AsyncInvocation:
        inv = self._invoke_async_op(function_name, payload, qualifier, task_id, delay_seconds)
        for attempt in self.retry.retrying(action=inv.op.action):
            with attempt:
                reply = self._transport.send(self._sign(inv.op))
                try:
                    return handle_reply(inv.op, reply)
                except FcConflictError as err:
                    try:
                        task: AsyncTask | None = self.get_async_task(
                            inv.function_name, inv.task_id, qualifier=inv.qualifier
                        )
                    except FcNotFoundError:
                        task = None
                    retry = attempt.retry_state.attempt_number > 1
                    return self._resolve_conflict(inv, err, task, retry=retry)
        raise AssertionError("unreachable")  # pragma: no cover

    def invoke_sync(self, function_name: str, payload: Any, *, qualifier: str = "LATEST") -> bytes:
        result: bytes = self._run(self._invoke_sync_op(function_name, payload, qualifier))
        return result

    def get_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> AsyncTask:
        result: AsyncTask = self._run(self._get_task_op(function_name, task_id, qualifier))
        return result

    def list_async_tasks(
        self,
        function_name: str,
        *,
        qualifier: str | None = None,
        prefix: str | None = None,
        status: str | TaskStatus | Iterable[str | TaskStatus] | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        include_payload: bool = False,
        newest_first: bool = True,
        limit: int | None = None,
        page_size: int = 100,
    ) -> Iterator[AsyncTask]:
        """Tasks page by page, following ``nextToken`` lazily; the arguments are checked at once."""
        plan = self._list_plan(
            function_name,
            qualifier=qualifier,
            prefix=prefix,
            status=status,
            started_after=started_after,
            started_before=started_before,
            include_payload=include_payload,
            newest_first=newest_first,
            limit=limit,
            page_size=page_size,
        )
        return self._iter_tasks(plan)

    def _iter_tasks(self, plan: _ListPlan) -> Iterator[AsyncTask]:
        token: str | None = None
        taken = 0
        while True:
            tasks, next_token = self._run(self._list_page_op(plan, token, taken))
            for task in tasks:
                if self._keep(plan, task):
                    yield task
                    taken += 1
                    if plan.limit is not None and taken >= plan.limit:
                        return
            if not next_token or next_token == token:
                return
            token = next_token

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
        self._list_configs_op(function_name, None)  # check the arguments now, not on first next()
        return self._iter_configs(function_name)

    def _iter_configs(self, function_name: str | None) -> Iterator[AsyncInvokeConfig]:
        token: str | None = None
        while True:
            configs, next_token = self._run(self._list_configs_op(function_name, token))
            yield from configs
            if not next_token or next_token == token:
                return
            token = next_token

    def get_function(self, function_name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._run(self._get_function_op(function_name, qualifier))
        return result


class AsyncFcClient(AsyncSender, FcRequests):
    """The asyncio twin of :class:`FcClient` (same method names, awaited); :meth:`aclose` when done. The
    clients of one event loop share one connection pool per endpoint (short requests only)."""

    share_pool = True

    async def invoke_async(
        self,
        function_name: str,
        payload: Any,
        *,
        qualifier: str = "LATEST",
        task_id: str | None = None,
        delay_seconds: int | None = None,
    ) -> AsyncInvocation:
        inv = self._invoke_async_op(function_name, payload, qualifier, task_id, delay_seconds)
        async for attempt in self.retry.async_retrying(action=inv.op.action):
            with attempt:
                reply = await self._transport.send(self._sign(inv.op))
                try:
                    return handle_reply(inv.op, reply)
                except FcConflictError as err:
                    try:
                        task: AsyncTask | None = await self.get_async_task(
                            inv.function_name, inv.task_id, qualifier=inv.qualifier
                        )
                    except FcNotFoundError:
                        task = None
                    retry = attempt.retry_state.attempt_number > 1
                    return self._resolve_conflict(inv, err, task, retry=retry)
        raise AssertionError("unreachable")  # pragma: no cover

    async def invoke_sync(self, function_name: str, payload: Any, *, qualifier: str = "LATEST") -> bytes:
        result: bytes = await self._run(self._invoke_sync_op(function_name, payload, qualifier))
        return result

    async def get_async_task(
        self, function_name: str, task_id: str, *, qualifier: str = "LATEST"
    ) -> AsyncTask:
        result: AsyncTask = await self._run(self._get_task_op(function_name, task_id, qualifier))
        return result

    def list_async_tasks(
        self,
        function_name: str,
        *,
        qualifier: str | None = None,
        prefix: str | None = None,
        status: str | TaskStatus | Iterable[str | TaskStatus] | None = None,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        include_payload: bool = False,
        newest_first: bool = True,
        limit: int | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AsyncTask]:
        """An async iterator (``async for``); the arguments are checked at once."""
        plan = self._list_plan(
            function_name,
            qualifier=qualifier,
            prefix=prefix,
            status=status,
            started_after=started_after,
            started_before=started_before,
            include_payload=include_payload,
            newest_first=newest_first,
            limit=limit,
            page_size=page_size,
        )
        return self._aiter_tasks(plan)

    async def _aiter_tasks(self, plan: _ListPlan) -> AsyncIterator[AsyncTask]:
        token: str | None = None
        taken = 0
        while True:
            tasks, next_token = await self._run(self._list_page_op(plan, token, taken))
            for task in tasks:
                if self._keep(plan, task):
                    yield task
                    taken += 1
                    if plan.limit is not None and taken >= plan.limit:
                        return
            if not next_token or next_token == token:
                return
            token = next_token

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
        self._list_configs_op(function_name, None)
        return self._aiter_configs(function_name)

    async def _aiter_configs(self, function_name: str | None) -> AsyncIterator[AsyncInvokeConfig]:
        token: str | None = None
        while True:
            configs, next_token = await self._run(self._list_configs_op(function_name, token))
            for config in configs:
                yield config
            if not next_token or next_token == token:
                return
            token = next_token

    async def get_function(self, function_name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._run(self._get_function_op(function_name, qualifier))
        return result
