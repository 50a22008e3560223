"""FcHook: Function Compute 3.0 async tasks from Airflow (sync methods for workers, ``a``-prefixed for triggers).

A thin adapter: it turns a connection into an :class:`~airflow_fc_async.core.fc.FcClient` (built on first use,
so importing or constructing the hook costs nothing) and forwards. HTTP libraries are imported only when a
client is built; aiohttp only when an async method first runs.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, Unpack, cast

from airflow_fc_async.core.endpoints import console_task_url, emulator_console_task_url, is_emulator_endpoint
from airflow_fc_async.core.errors import FcInvalidArgumentError
from airflow_fc_async.core.models import AsyncInvocation, AsyncInvokeConfig, AsyncTask
from airflow_fc_async.hooks.base import FcBaseHook

if TYPE_CHECKING:
    from airflow_fc_async.core.fc import AsyncFcClient, FcClient
    from airflow_fc_async.core.fc_requests import InvokeOptions
    from airflow_fc_async.core.function_logs import LogCursor, LogRequest
    from airflow_fc_async.core.sls import AsyncSlsClient, SlsClient
    from airflow_fc_async.core.task_query import AsyncTaskQuery, TaskFilters

__all__ = ["FcHook"]

_MAX_TASK_ID = 128


class FcHook(FcBaseHook):
    """Function Compute 3.0 async tasks: invoke, read, list, stop, re-run, and the async invoke config.

    :param fc_conn_id: an ``alibaba_fc`` (or ``alibaba_cloud``) connection; see :class:`FcBaseHook`.
    """

    def __init__(self, fc_conn_id: str = FcBaseHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(fc_conn_id, **kwargs)
        self._client: FcClient | None = None
        self._aclient: AsyncFcClient | None = None
        self._sls: SlsClient | None = None
        self._asls: AsyncSlsClient | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Airflow 2.x form only (3.2+ reads ``ui-field-behaviour`` from the provider info)."""
        return cls._ui_field_behaviour()

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Airflow 2.x form only (3.2+ reads ``conn-fields`` from the provider info)."""
        return cls._form_widgets()

    # -- clients -----------------------------------------------------------------------------------------------
    def get_conn(self) -> FcClient:
        """The sync client (one pooled session per hook)."""
        return cast("FcClient", self._cached_client("_client", "fc:FcClient", "fc"))

    async def aget_conn(self) -> AsyncFcClient:
        """The async client (one per hook), built from a connection read without blocking the event loop."""
        return cast("AsyncFcClient", await self._acached_client("_aclient", "fc:AsyncFcClient", "fc"))

    def get_sls_client(self) -> SlsClient:
        """The sync SLS (GetLogs) client: extra ``sls_endpoint``, else ``https://{region}.log.aliyuncs.com``."""
        return cast("SlsClient", self._cached_client("_sls", "sls:SlsClient", "sls"))

    async def aget_sls_client(self) -> AsyncSlsClient:
        return cast("AsyncSlsClient", await self._acached_client("_asls", "sls:AsyncSlsClient", "sls"))

    def close(self) -> None:
        self._close_clients("_client", "_sls")

    async def aclose(self) -> None:
        await self._aclose_clients("_aclient", "_asls")

    def console_url(self, function_name: str, task_id: str, qualifier: str = "LATEST") -> str:
        """The FC console page of a task while the connection names a region and the FC endpoint is Alibaba
        Cloud's (its default, or an override such as a VPC endpoint); the emulator's console page when the FC
        endpoint is the emulator (a loopback host) or there is no region."""
        s = self.settings()
        fc = s.endpoint("fc") if (not s.region or "fc" in s.overrides) else ""
        if s.region and not (fc and is_emulator_endpoint(fc)):
            return console_task_url(s.region, function_name, task_id, qualifier)
        return emulator_console_task_url(fc, function_name, task_id, qualifier)

    # -- sync --------------------------------------------------------------------------------------------------
    def invoke_async(
        self, function_name: str, payload: Any = None, **options: Unpack[InvokeOptions]
    ) -> AsyncInvocation:
        """Start ``function_name`` asynchronously (``qualifier``, ``task_id``, ``delay_seconds``: see
        :class:`~airflow_fc_async.core.fc_requests.InvokeOptions`)."""
        inv = self.get_conn().invoke_async(function_name, payload, **options)
        # DEBUG: the operators log the accepted task themselves, and an INFO record through Airflow's handlers
        # costs about as much CPU as the HTTP call (measured by benchmarks/p2_client_cost).
        qualifier = options.get("qualifier", "LATEST")
        self.log.debug(
            "Invoked %s:%s async: task id %s, request id %s",
            function_name,
            qualifier,
            inv.task_id,
            inv.request_id,
        )
        return inv

    def invoke_sync(self, function_name: str, payload: Any = None, *, qualifier: str = "LATEST") -> bytes:
        return self.get_conn().invoke_sync(function_name, payload, qualifier=qualifier)

    def get_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> AsyncTask:
        return self.get_conn().get_async_task(function_name, task_id, qualifier=qualifier)

    def list_async_tasks(
        self, function_name: str | AsyncTaskQuery, **filters: Unpack[TaskFilters]
    ) -> Iterator[AsyncTask]:
        """The function's tasks, newest first unless ``newest_first=False``; ``qualifier``, ``prefix``, ``status``
        (one or several), ``started_after``/``started_before``, ``include_payload``, ``limit``, ``page_size``:
        see :class:`~airflow_fc_async.core.task_query.AsyncTaskQuery`."""
        return self.get_conn().list_async_tasks(function_name, **filters)

    def stop_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> None:
        self.get_conn().stop_async_task(function_name, task_id, qualifier=qualifier)
        self.log.info("Asked FC to stop task %s of %s:%s", task_id, function_name, qualifier)

    def rerun_async_task(
        self, function_name: str, task_id: str, *, qualifier: str = "LATEST", new_task_id: str | None = None
    ) -> AsyncInvocation:
        """Invoke ``function_name`` again with the payload task ``task_id`` had, under a new task id."""
        from airflow_fc_async.core.validation import check_rerun_payload

        source = self.get_async_task(function_name, task_id, qualifier=qualifier)
        if source.payload is None:
            self.log.warning("Task %s has no recorded payload: re-running it with an empty one", task_id)
        body = check_rerun_payload(task_id, source.payload)  # refuses a payload FC could not record as it was
        new_id = new_task_id or rerun_task_id(task_id)
        inv = self.invoke_async(function_name, body, qualifier=qualifier, task_id=new_id)
        self.log.info("Re-ran task %s as %s", task_id, inv.task_id)
        return inv

    def put_async_invoke_config(
        self,
        function_name: str,
        *,
        qualifier: str = "LATEST",
        async_task: bool | None = True,
        max_async_retry_attempts: int | None = None,
        max_async_event_age_in_seconds: int | None = None,
        on_success: str | None = None,
        on_failure: str | None = None,
    ) -> AsyncInvokeConfig:
        """Set the function's async invoke config (ranges and ARNs are checked before sending)."""
        config = AsyncInvokeConfig(
            async_task=async_task,
            max_async_retry_attempts=max_async_retry_attempts,
            max_async_event_age_in_seconds=max_async_event_age_in_seconds,
            on_success=on_success,
            on_failure=on_failure,
        )
        return self.get_conn().put_async_invoke_config(function_name, config, qualifier=qualifier)

    def get_async_invoke_config(
        self, function_name: str, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig | None:
        return self.get_conn().get_async_invoke_config(function_name, qualifier=qualifier)

    def delete_async_invoke_config(self, function_name: str, *, qualifier: str = "LATEST") -> None:
        self.get_conn().delete_async_invoke_config(function_name, qualifier=qualifier)

    def list_async_invoke_configs(self, *, function_name: str | None = None) -> Iterator[AsyncInvokeConfig]:
        return self.get_conn().list_async_invoke_configs(function_name=function_name)

    def get_function(self, function_name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        return self.get_conn().get_function(function_name, qualifier=qualifier)

    # -- function logs (SLS) ------------------------------------------------------------------------------------
    def function_log_cursor(
        self,
        function_name: str,
        request_id: str | None,
        *,
        qualifier: str = "LATEST",
        log_project: str | None = None,
        log_store: str | None = None,
    ) -> LogCursor | None:
        """A cursor over the function's log lines of one request: the project and logstore given, else those
        of GetFunction's ``logConfig``; None (and one warning) when the function ships no logs."""
        from airflow_fc_async.core.function_logs import LogCursor, log_config_of

        if not (log_project and log_store):
            config = log_config_of(self.get_function(function_name, qualifier=qualifier))
            if config is None and not (log_project or log_store):
                self.log.warning(
                    "Function %s has no logConfig (no SLS project/logstore): its log lines cannot be shown; "
                    "set logConfig on the function, or log_project and log_store on the task",
                    function_name,
                )
                return None
            project, store = config or (None, None)
            log_project, log_store = log_project or project, log_store or store
        if not (log_project and log_store):
            self.log.warning("Function logs of %s: need both log_project and log_store", function_name)
            return None
        return LogCursor(log_project, log_store, function_name, request_id or "")

    def read_function_logs(
        self, cursor: LogCursor, task: AsyncTask | None = None, *, max_pages: int = 20
    ) -> list[str]:
        """The new log lines of ``cursor``'s request (``task``: the latest read, for its instance and start)."""
        flow = self._log_flow(cursor, task, max_pages)
        try:
            fetch = next(flow)
            client = self.get_sls_client()
            while True:
                try:
                    fetch = flow.send(fetch(client))
                except FcInvalidArgumentError as exc:
                    fetch = flow.throw(exc)
        except StopIteration as done:
            return list(done.value)

    async def aread_function_logs(
        self, cursor: LogCursor, task: AsyncTask | None = None, *, max_pages: int = 20
    ) -> list[str]:
        """The async twin of :meth:`read_function_logs` (triggers)."""
        flow = self._log_flow(cursor, task, max_pages)
        try:
            fetch = next(flow)
            client = await self.aget_sls_client()
            while True:
                try:
                    fetch = flow.send(await fetch(client))
                except FcInvalidArgumentError as exc:
                    fetch = flow.throw(exc)
        except StopIteration as done:
            return list(done.value)

    def _log_flow(
        self, cursor: LogCursor, task: AsyncTask | None, max_pages: int
    ) -> Generator[Callable[[Any], Any], Any, list[str]]:
        """The log reading without I/O: yields a GetLogs call to make on the SLS client (sync or async) and is
        sent its page, or thrown its FcInvalidArgumentError; returns the new lines."""
        if task is not None:
            cursor.observe(task)
        lines: list[str] = []
        if not cursor.ready:
            return lines
        for _ in range(max_pages):
            req = cursor.next_request(time.time())
            try:
                page = yield _get_logs(cursor, req)
            except FcInvalidArgumentError:
                if not cursor.fulltext:
                    raise
                self.log.info("The logstore refuses the full-text query: reading by instance only")
                cursor.disable_fulltext()
                continue
            lines += cursor.update(page.rows, req.line)
            if not cursor.more:
                break
        return lines

    # -- async (triggers) --------------------------------------------------------------------------------------
    async def ainvoke_async(
        self, function_name: str, payload: Any = None, **options: Unpack[InvokeOptions]
    ) -> AsyncInvocation:
        return await (await self.aget_conn()).invoke_async(function_name, payload, **options)

    async def aget_async_task(
        self, function_name: str, task_id: str, *, qualifier: str = "LATEST"
    ) -> AsyncTask:
        client = await self.aget_conn()
        return await client.get_async_task(function_name, task_id, qualifier=qualifier)

    async def astop_async_task(self, function_name: str, task_id: str, *, qualifier: str = "LATEST") -> None:
        client = await self.aget_conn()
        await client.stop_async_task(function_name, task_id, qualifier=qualifier)

    async def alist_async_tasks(
        self, function_name: str | AsyncTaskQuery, **filters: Unpack[TaskFilters]
    ) -> AsyncIterator[AsyncTask]:
        async for task in (await self.aget_conn()).list_async_tasks(function_name, **filters):
            yield task

    async def aget_async_invoke_config(
        self, function_name: str, *, qualifier: str = "LATEST"
    ) -> AsyncInvokeConfig | None:
        client = await self.aget_conn()
        return await client.get_async_invoke_config(function_name, qualifier=qualifier)

    async def aget_function(self, function_name: str, *, qualifier: str | None = None) -> dict[str, Any]:
        client = await self.aget_conn()
        return await client.get_function(function_name, qualifier=qualifier)


def _get_logs(cursor: LogCursor, req: LogRequest) -> Callable[[Any], Any]:
    """The GetLogs call of ``req`` on a sync or an async SLS client (the latter returns its coroutine)."""
    return lambda client: client.get_logs(
        cursor.project, cursor.logstore, req.from_time, req.to_time,
        query=req.query, topic=req.topic, line=req.line, offset=req.offset,
    )  # fmt: skip


def rerun_task_id(task_id: str) -> str:
    """``<task id>-rerun-<6 hex>``, the source id trimmed so that the whole stays within 128 characters."""
    suffix = f"-rerun-{secrets.token_hex(3)}"
    return task_id[: _MAX_TASK_ID - len(suffix)] + suffix
