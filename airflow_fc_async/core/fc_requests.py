"""Every FC 3.0 request and reply reading, without I/O: :class:`FcRequests` builds :class:`Op` values and signs
them; the sync and the async client (``fc.py``) hold one and send what it builds; the readers turn replies into
models. A 409 on InvokeFunction is decided here once (:meth:`PendingInvoke.resolve`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, TypedDict

from airflow_fc_async.core.endpoints import FC_ENDPOINTS, H
from airflow_fc_async.core.errors import (
    FUNCTION_MISSING_CODES,
    FcApiError,
    FcConflictError,
    FcNotFoundError,
    FcTaskIdInUseError,
)
from airflow_fc_async.core.http import (
    Call,
    Op,
    Reply,
    RequestBuilder,
    bad_reply,
    parse_json,
    request_id_of,
)
from airflow_fc_async.core.models import (
    AsyncInvocation,
    AsyncInvokeConfig,
    AsyncTask,
)
from airflow_fc_async.core.signing import canonical_query, sign_fc_request
from airflow_fc_async.core.task_query import AsyncTaskQuery, Pager
from airflow_fc_async.core.validation import (
    check_async_invoke_config,
    check_delay,
    check_function_name,
    check_qualifier,
    check_task_id,
    encode_payload,
    new_task_id,
)

__all__ = ["FcRequests", "InvokeOptions", "PendingInvoke"]

log = logging.getLogger(__name__)

_JSON = "application/json"


class InvokeOptions(TypedDict, total=False):
    """The keyword arguments of ``invoke_async``: ``qualifier`` (default ``LATEST``), ``task_id`` (generated when
    None: it makes a repeated invoke safe), ``delay_seconds`` (start no sooner than this)."""

    qualifier: str
    task_id: str | None
    delay_seconds: int | None


@dataclass(frozen=True)
class PendingInvoke:
    """An async InvokeFunction about to be sent: its ``op`` and what a 409 reply is judged against."""

    op: Op[AsyncInvocation]
    function_name: str
    qualifier: str
    task_id: str
    body: bytes

    def resolve(self, err: FcConflictError, task: AsyncTask | None, *, retry: bool) -> AsyncInvocation:
        """The one rule for a 409 on InvokeFunction (the id is taken): a task id is an idempotency key.

        ``task`` is the task read back under that id (None: none could be read). It is returned
        (``AsyncInvocation.existing``) when it holds this very payload; anything else raises
        :class:`FcTaskIdInUseError`. On a ``retry`` (an earlier attempt of this call may have reached FC) a
        payload that is not UTF-8 is compared as FC records it (invalid bytes replaced); on a first attempt it
        must match as is. Whether the task is also this caller's (an operator's generated id) is the caller's
        question: ``conflict`` tells it whose attempt the 409 answered.
        """
        if task is not None and _same_payload(task.payload, self.body, lossy=retry):
            log.info(
                "invoke of %s: task %s already exists with this payload (%s)",
                self.function_name,
                self.task_id,
                "an earlier attempt of this call" if retry else "the same id used before",
            )
            return AsyncInvocation(
                task_id=self.task_id,
                request_id=task.request_id,
                existing=task,
                conflict="retry" if retry else "same-id",
            )
        if task is None:
            why = "no task with that id could be read back"
        elif not _utf8(self.body):
            why = "this payload is not UTF-8, so FC's record of it cannot prove it is the same"
        else:
            why = "that task holds another payload"
        raise FcTaskIdInUseError(
            self.task_id, self.function_name, why, status=err.status, code=err.code, request_id=err.request_id
        )


_Invoke = PendingInvoke  # the name before issue 18


class FcRequests(RequestBuilder):
    """Builds and reads every FC request; no I/O."""

    endpoint_field = "fc_endpoint"

    def sign(self, op: Op[Any]) -> Call:
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
    def invoke_async_op(
        self,
        function_name: str,
        payload: Any,
        qualifier: str = "LATEST",
        task_id: str | None = None,
        delay_seconds: int | None = None,
    ) -> PendingInvoke:
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
        return PendingInvoke(op, fn, q, tid, body)

    def invoke_sync_op(self, function_name: str, payload: Any, qualifier: str) -> Op[bytes]:
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
    def get_task_op(self, function_name: str, task_id: str, qualifier: str) -> Op[AsyncTask]:
        return self._task_op("GetAsyncTask", _parse_task, function_name, task_id, qualifier)

    def stop_task_op(self, function_name: str, task_id: str, qualifier: str) -> Op[None]:
        return self._task_op("StopAsyncTask", lambda r: None, function_name, task_id, qualifier)

    def _task_op(self, action: str, parse: Any, function_name: str, task_id: str, qualifier: str) -> Op[Any]:
        """An operation on one task (``functions/{function}/async-tasks/{task_id}?qualifier=``), inputs checked."""
        return self._op(
            action,
            parse,
            query={"qualifier": check_qualifier(qualifier)},
            function=check_function_name(function_name),
            task_id=check_task_id(task_id),
        )

    def task_pager(self, query: AsyncTaskQuery) -> Pager[AsyncTask]:
        def request(token: str | None, taken: int) -> Op[tuple[list[AsyncTask], str | None]]:
            params = query.params(token, taken)
            return self._op("ListAsyncTasks", _parse_task_page, query=params, function=query.function_name)

        return Pager(request, keep=query.keep, limit=query.limit)

    # -- configs and functions -----------------------------------------------------------------------------
    def put_config_op(
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

    def get_config_op(self, function_name: str, qualifier: str) -> Op[AsyncInvokeConfig | None]:
        def recover(err: FcApiError, reply: Reply) -> None:
            if isinstance(err, FcNotFoundError) and err.code not in FUNCTION_MISSING_CODES:
                return None
            raise err

        return self._op(
            "GetAsyncInvokeConfig",
            lambda r: AsyncInvokeConfig.from_json(_json_object(r)),
            query={"qualifier": check_qualifier(qualifier)},
            recover=recover,
            function=check_function_name(function_name),
        )

    def delete_config_op(self, function_name: str, qualifier: str) -> Op[None]:
        return self._op(
            "DeleteAsyncInvokeConfig",
            lambda r: None,
            query={"qualifier": check_qualifier(qualifier)},
            function=check_function_name(function_name),
        )

    def config_pager(self, function_name: str | None) -> Pager[AsyncInvokeConfig]:
        fn = check_function_name(function_name) if function_name is not None else None

        def request(token: str | None, taken: int) -> Op[tuple[list[AsyncInvokeConfig], str | None]]:
            query = {"functionName": fn, "limit": "100", "nextToken": token}
            return self._op("ListAsyncInvokeConfigs", _parse_config_page, query=query)

        return Pager(request)

    def get_function_op(self, function_name: str, qualifier: str | None) -> Op[dict[str, Any]]:
        q = check_qualifier(qualifier) if qualifier is not None else None
        return self._op(
            "GetFunction", _json_object, query={"qualifier": q}, function=check_function_name(function_name)
        )


# -- reply readers (shared) ------------------------------------------------------------------------------------
def _json_object(reply: Reply) -> dict[str, Any]:
    data = parse_json(reply)
    if not isinstance(data, dict):
        raise bad_reply(reply, f"expected a JSON object, got {type(data).__name__}")
    return data


def _parse_task(reply: Reply) -> AsyncTask:
    try:
        return AsyncTask.from_json(_json_object(reply))
    except (ValueError, TypeError) as exc:
        raise bad_reply(reply, f"not an async task: {exc}") from None


def _page(reply: Reply, key: str) -> tuple[list[dict[str, Any]], str | None]:
    data = _json_object(reply)
    items = data.get(key) or data.get(key[:1].upper() + key[1:]) or []
    if not isinstance(items, list):
        raise bad_reply(reply, f"{key!r} is not a list")
    token = data.get("nextToken") or data.get("NextToken") or None
    return [i for i in items if isinstance(i, dict)], (str(token) if token else None)


def _parse_task_page(reply: Reply) -> tuple[list[AsyncTask], str | None]:
    items, token = _page(reply, "tasks")
    try:
        return [AsyncTask.from_json(i) for i in items], token
    except (ValueError, TypeError) as exc:
        raise bad_reply(reply, f"bad task in page: {exc}") from None


def _parse_config_page(reply: Reply) -> tuple[list[AsyncInvokeConfig], str | None]:
    items, token = _page(reply, "configs")
    return [AsyncInvokeConfig.from_json(i) for i in items], token


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _same_payload(recorded: str | None, sent: bytes, *, lossy: bool = False) -> bool:
    """Whether a task's recorded payload is the body we sent (equal text, or equal as JSON).

    FC records a payload as text: bytes that are not UTF-8 come back replaced (U+FFFD), so such a body can only
    be matched ``lossy`` (after the same replacement), which proves nothing about the replaced bytes.
    """
    recorded = recorded or ""
    if _utf8(sent):
        text = sent.decode("utf-8")
    elif lossy:
        text = sent.decode("utf-8", "replace")
    else:
        return False
    if recorded == text:
        return True
    try:
        return bool(json.loads(recorded) == json.loads(text))
    except ValueError:
        return False
