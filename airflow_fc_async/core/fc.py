"""Function Compute 3.0 async-task clients: :class:`FcClient` (requests) and :class:`AsyncFcClient` (aiohttp).

Both inherit every request and every reply reading from :class:`_FcBase`, which does no I/O: the two clients
differ only in how they send. Inputs are validated before anything is sent.

Invoke is made safe to retry: a task id is always sent (generated here when the caller gives none), so a
repeated InvokeFunction cannot start the function twice; FC answers the repeat with 409, and a 409 on a retry
is resolved by reading the task back (same payload: it was our own first attempt, which did reach FC).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.endpoints import FC_ENDPOINTS, H
from airflow_fc_async.core.errors import (
    FcApiError,
    FcConflictError,
    FcNotFoundError,
    FcResponseError,
    FcValidationError,
)
from airflow_fc_async.core.http import (
    BaseUrl,
    Call,
    Op,
    Reply,
    RetryPolicy,
    handle_reply,
    parse_json,
    request_id_of,
)
from airflow_fc_async.core.models import (
    AsyncInvocation,
    AsyncInvokeConfig,
    AsyncTask,
    TaskStatus,
    to_epoch_ms,
)
from airflow_fc_async.core.signing import canonical_query, sign_fc_request
from airflow_fc_async.core.transport import AsyncTransport, SyncTransport, run_async, run_sync
from airflow_fc_async.core.validation import (
    check_async_invoke_config,
    check_delay,
    check_function_name,
    check_int_range,
    check_page_limit,
    check_qualifier,
    check_statuses,
    check_task_id,
    check_time_range,
    encode_payload,
    new_task_id,
)

__all__ = ["AsyncFcClient", "FcClient"]

log = logging.getLogger(__name__)

_JSON = "application/json"
_FUNCTION_MISSING = frozenset({"FunctionNotFound", "AliasNotFound", "VersionNotFound", "ServiceNotFound"})


@dataclass(frozen=True)
class _ListPlan:
    function_name: str
    query: dict[str, str | None]
    statuses: frozenset[TaskStatus] | None  # filtered here when FC cannot (several statuses)
    limit: int | None
    page_size: int


@dataclass(frozen=True)
class _Invoke:
    op: Op[AsyncInvocation]
    function_name: str
    qualifier: str
    task_id: str
    body: bytes


class _FcBase:
    """Builds and reads every FC request; no I/O."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base = BaseUrl.parse(endpoint)
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry or RetryPolicy()

    @property
    def endpoint(self) -> str:
        return self.base.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.base.url!r}, access_key_id={self.credentials.access_key_id!r})"

    def _sign(self, op: Op[Any]) -> Call:
        query = op.query if isinstance(op.query, dict) else None
        headers = sign_fc_request(
            self.credentials,
            method=op.method,
            host=self.base.host,
            path=op.path,
            action=op.action,
            query=query,
            headers=op.headers,
            body=op.body,
        )
        qs = canonical_query(query)
        url = f"{self.base.url}{op.path}?{qs}" if qs else f"{self.base.url}{op.path}"
        return Call(op.method, url, headers, op.body, op.action, op.read_timeout)

    @staticmethod
    def _op(
        action: str,
        parse: Any,
        *,
        query: dict[str, str | None] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        recover: Any = None,
        idempotent: bool = True,
        **params: str,
    ) -> Op[Any]:
        ep = FC_ENDPOINTS[action]
        hdrs = {H.ACCEPT: _JSON} if headers is None else headers
        return Op(ep.action, ep.method, ep.path(**params), query, hdrs, body, parse, recover, idempotent)

    # -- invoke --------------------------------------------------------------------------------------------
    def _invoke_async_op(
        self, function_name: str, payload: Any, qualifier: str, task_id: str | None, delay_seconds: int | None
    ) -> _Invoke:
        fn = check_function_name(function_name)
        q = check_qualifier(qualifier)
        tid = check_task_id(task_id) if task_id is not None else new_task_id()
        body = encode_payload(payload)
        headers = {
            H.CONTENT_TYPE: "application/octet-stream",
            H.FC_INVOCATION_TYPE: "Async",
            H.FC_ASYNC_TASK_ID: tid,
            H.FC_LOG_TYPE: "None",
        }
        if delay_seconds is not None:
            headers[H.FC_ASYNC_DELAY] = str(check_delay(delay_seconds))

        def parse(reply: Reply) -> AsyncInvocation:
            return AsyncInvocation(task_id=tid, request_id=request_id_of(reply.headers))

        op = self._op(
            "InvokeFunction", parse, query={"qualifier": q}, body=body, headers=headers, function=fn
        )
        return _Invoke(op, fn, q, tid, body)

    @staticmethod
    def _first_conflict(inv: _Invoke, err: FcConflictError) -> FcConflictError:
        return FcConflictError(
            f"task id {inv.task_id!r} already used for {inv.function_name}: pick a new task id ({err.message})",
            status=err.status,
            code=err.code,
            request_id=err.request_id,
        )

    @staticmethod
    def _resolve_conflict(inv: _Invoke, err: FcConflictError, task: AsyncTask | None) -> AsyncInvocation:
        """After a 409 on a retry: our own earlier attempt (same payload) is a success, anything else is not."""
        if task is not None and _same_payload(task.payload, inv.body):
            log.info(
                "invoke of %s: task %s already accepted by an earlier attempt", inv.function_name, inv.task_id
            )
            return AsyncInvocation(task_id=inv.task_id, request_id=task.request_id)
        why = "no task record found" if task is None else "it holds another payload"
        raise FcConflictError(
            f"task id {inv.task_id!r} already used for {inv.function_name} and not by this request ({why})",
            status=err.status,
            code=err.code,
            request_id=err.request_id,
        )

    def _invoke_sync_op(self, function_name: str, payload: Any, qualifier: str) -> Op[bytes]:
        headers = {
            H.CONTENT_TYPE: "application/octet-stream",
            H.FC_INVOCATION_TYPE: "Sync",
            H.FC_LOG_TYPE: "None",
        }
        return self._op(
            "InvokeFunction",
            lambda r: r.body,
            query={"qualifier": check_qualifier(qualifier)},
            body=encode_payload(payload, limit=32 * 1024 * 1024),
            headers=headers,
            idempotent=False,
            function=check_function_name(function_name),
        )

    # -- tasks ---------------------------------------------------------------------------------------------
    def _get_task_op(self, function_name: str, task_id: str, qualifier: str) -> Op[AsyncTask]:
        return self._op(
            "GetAsyncTask",
            _parse_task,
            query={"qualifier": check_qualifier(qualifier)},
            function=check_function_name(function_name),
            task_id=check_task_id(task_id),
        )

    def _stop_task_op(self, function_name: str, task_id: str, qualifier: str) -> Op[None]:
        return self._op(
            "StopAsyncTask",
            lambda r: None,
            query={"qualifier": check_qualifier(qualifier)},
            function=check_function_name(function_name),
            task_id=check_task_id(task_id),
        )

    def _list_plan(
        self,
        function_name: str,
        *,
        qualifier: str | None,
        prefix: str | None,
        status: Any,
        started_after: datetime | None,
        started_before: datetime | None,
        include_payload: bool,
        newest_first: bool,
        limit: int | None,
        page_size: int,
    ) -> _ListPlan:
        fn = check_function_name(function_name)
        check_page_limit(page_size)
        if limit is not None:
            check_int_range("limit", limit, 1, 10**9)
        check_time_range(started_after, started_before)
        if prefix is not None and not isinstance(prefix, str):
            raise FcValidationError("prefix", f"must be a string, got {type(prefix).__name__}")
        statuses = check_statuses(status) if status is not None else None
        query: dict[str, str | None] = {
            "qualifier": check_qualifier(qualifier) if qualifier is not None else None,
            "prefix": prefix or None,
            "status": statuses[0].value if statuses and len(statuses) == 1 else None,
            "startedTimeBegin": str(to_epoch_ms(started_after)) if started_after else None,
            "startedTimeEnd": str(to_epoch_ms(started_before)) if started_before else None,
            "sortOrderByTime": "desc" if newest_first else "asc",
            "includePayload": "true" if include_payload else None,
        }
        local = frozenset(statuses) if statuses and len(statuses) > 1 else None
        return _ListPlan(fn, query, local, limit, page_size)

    def _list_page_op(
        self, plan: _ListPlan, token: str | None, taken: int
    ) -> Op[tuple[list[AsyncTask], str | None]]:
        size = plan.page_size
        if plan.limit is not None and plan.statuses is None:
            size = min(size, plan.limit - taken)
        query = {**plan.query, "limit": str(size), "nextToken": token}
        return self._op("ListAsyncTasks", _parse_task_page, query=query, function=plan.function_name)

    @staticmethod
    def _keep(plan: _ListPlan, task: AsyncTask) -> bool:
        return plan.statuses is None or task.status in plan.statuses

    # -- configs and functions -----------------------------------------------------------------------------
    def _put_config_op(
        self, function_name: str, config: AsyncInvokeConfig, qualifier: str
    ) -> Op[AsyncInvokeConfig]:
        check_async_invoke_config(config)
        body = json.dumps(config.to_json(), separators=(",", ":")).encode("utf-8")

        def parse(reply: Reply) -> AsyncInvokeConfig:
            data = parse_json(reply)
            return AsyncInvokeConfig.from_json(data) if data else config

        headers = {H.ACCEPT: _JSON, H.CONTENT_TYPE: "application/json; charset=utf-8"}
        return self._op(
            "PutAsyncInvokeConfig",
            parse,
            query={"qualifier": check_qualifier(qualifier)},
            body=body,
            headers=headers,
            function=check_function_name(function_name),
        )

    def _get_config_op(self, function_name: str, qualifier: str) -> Op[AsyncInvokeConfig | None]:
        def recover(err: FcApiError, reply: Reply) -> None:
            if isinstance(err, FcNotFoundError) and err.code not in _FUNCTION_MISSING:
                return None
            raise err

        return self._op(
            "GetAsyncInvokeConfig",
            lambda r: AsyncInvokeConfig.from_json(_json_object(r)),
            query={"qualifier": check_qualifier(qualifier)},
            recover=recover,
            function=check_function_name(function_name),
        )

    def _delete_config_op(self, function_name: str, qualifier: str) -> Op[None]:
        return self._op(
            "DeleteAsyncInvokeConfig",
            lambda r: None,
            query={"qualifier": check_qualifier(qualifier)},
            function=check_function_name(function_name),
        )

    def _list_configs_op(
        self, function_name: str | None, token: str | None
    ) -> Op[tuple[list[AsyncInvokeConfig], str | None]]:
        fn = check_function_name(function_name) if function_name is not None else None
        query = {"functionName": fn, "limit": "100", "nextToken": token}
        return self._op("ListAsyncInvokeConfigs", _parse_config_page, query=query)

    def _get_function_op(self, function_name: str, qualifier: str | None) -> Op[dict[str, Any]]:
        q = check_qualifier(qualifier) if qualifier is not None else None
        return self._op(
            "GetFunction", _json_object, query={"qualifier": q}, function=check_function_name(function_name)
        )


class FcClient(_FcBase):
    """Synchronous FC client over one pooled ``requests`` session. Thread-safe; :meth:`close` when done.

    ``proxies`` (e.g. ``{"https": "http://proxy:3128"}``) replaces the proxy environment variables, which are
    not read (``trust_env`` is off to keep per-call CPU low).
    """

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        proxies: dict[str, str] | None = None,
        verify: bool | str = True,
        pool_size: int = 10,
    ) -> None:
        super().__init__(
            endpoint, credentials, connect_timeout=connect_timeout, read_timeout=read_timeout, retry=retry
        )
        self._transport = SyncTransport(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            proxies=proxies,
            verify=verify,
            pool_size=pool_size,
        )

    def _run(self, op: Op[Any]) -> Any:
        return run_sync(op, self._sign, self._transport, self.retry)

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
                    if attempt.retry_state.attempt_number == 1:
                        raise self._first_conflict(inv, err) from None
                    try:
                        task: AsyncTask | None = self.get_async_task(
                            inv.function_name, inv.task_id, qualifier=inv.qualifier
                        )
                    except FcNotFoundError:
                        task = None
                    return self._resolve_conflict(inv, err, task)
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

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncFcClient(_FcBase):
    """The asyncio twin of :class:`FcClient` (same method names, awaited); :meth:`aclose` when done."""

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        proxies: dict[str, str] | None = None,
        verify: bool = True,
        pool_size: int = 10,
    ) -> None:
        super().__init__(
            endpoint, credentials, connect_timeout=connect_timeout, read_timeout=read_timeout, retry=retry
        )
        self._transport = AsyncTransport(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            proxies=proxies,
            verify=verify,
            pool_size=pool_size,
        )

    async def _run(self, op: Op[Any]) -> Any:
        return await run_async(op, self._sign, self._transport, self.retry)

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
                    if attempt.retry_state.attempt_number == 1:
                        raise self._first_conflict(inv, err) from None
                    try:
                        task: AsyncTask | None = await self.get_async_task(
                            inv.function_name, inv.task_id, qualifier=inv.qualifier
                        )
                    except FcNotFoundError:
                        task = None
                    return self._resolve_conflict(inv, err, task)
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

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


# -- reply readers (shared) ------------------------------------------------------------------------------------
def _json_object(reply: Reply) -> dict[str, Any]:
    data = parse_json(reply)
    if not isinstance(data, dict):
        raise FcResponseError(
            f"HTTP {reply.status}: expected a JSON object, got {type(data).__name__}",
            status=reply.status,
            request_id=request_id_of(reply.headers),
        )
    return data


def _parse_task(reply: Reply) -> AsyncTask:
    try:
        return AsyncTask.from_json(_json_object(reply))
    except (ValueError, TypeError) as exc:
        raise FcResponseError(
            f"HTTP {reply.status}: not an async task: {exc}",
            status=reply.status,
            request_id=request_id_of(reply.headers),
        ) from None


def _page(reply: Reply, key: str) -> tuple[list[dict[str, Any]], str | None]:
    data = _json_object(reply)
    items = data.get(key) or data.get(key[:1].upper() + key[1:]) or []
    if not isinstance(items, list):
        raise FcResponseError(
            f"HTTP {reply.status}: {key!r} is not a list",
            status=reply.status,
            request_id=request_id_of(reply.headers),
        )
    token = data.get("nextToken") or data.get("NextToken") or None
    return [i for i in items if isinstance(i, dict)], (str(token) if token else None)


def _parse_task_page(reply: Reply) -> tuple[list[AsyncTask], str | None]:
    items, token = _page(reply, "tasks")
    try:
        return [AsyncTask.from_json(i) for i in items], token
    except (ValueError, TypeError) as exc:
        raise FcResponseError(
            f"HTTP {reply.status}: bad task in page: {exc}",
            status=reply.status,
            request_id=request_id_of(reply.headers),
        ) from None


def _parse_config_page(reply: Reply) -> tuple[list[AsyncInvokeConfig], str | None]:
    items, token = _page(reply, "configs")
    return [AsyncInvokeConfig.from_json(i) for i in items], token


def _same_payload(recorded: str | None, sent: bytes) -> bool:
    """Whether a task's recorded payload is the body we sent (byte-equal, or equal as JSON)."""
    recorded = recorded or ""
    text = sent.decode("utf-8", "replace")
    if recorded == text:
        return True
    try:
        return bool(json.loads(recorded) == json.loads(text))
    except ValueError:
        return False
