"""The FC 3.0 async-task operations (``core.endpoints.FC_ENDPOINTS``): JSON in and out, FC's status codes and error
bodies."""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

from airflow_fc_async.core.endpoints import H
from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.emulator.config import ConfigError, async_invoke_config_from_json
from airflow_fc_async.emulator.scheduler import Scheduler
from airflow_fc_async.emulator.wire import ApiError, Request, Response, json_response

__all__ = ["ASYNC_PAYLOAD_LIMIT", "FcApi"]

ASYNC_PAYLOAD_LIMIT = 128 * 1024
SYNC_PAYLOAD_LIMIT = 32 * 1024 * 1024
_TASK_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
_QUALIFIER = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _bad(message: str) -> ApiError:
    return ApiError(400, "InvalidArgument", message)


def _int_arg(query: dict[str, str], name: str, default: int | None = None) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise _bad(f"{name} must be an integer, got {raw!r}") from None


class FcApi:
    """One method per operation, named as the action."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def handle(self, request: Request) -> Response:
        return getattr(self, request.action)(request)  # type: ignore[no-any-return]

    def _qualifier(self, request: Request, default: str | None = "LATEST") -> str | None:
        q = request.query.get("qualifier") or default
        if q is not None and not _QUALIFIER.match(q):
            raise _bad(f"qualifier {q!r} is not valid")
        if q not in (None, "LATEST"):
            self.scheduler.function(request.params["function"])
            raise ApiError(
                404, "AliasNotFound", f"alias '{q}' does not exist (the emulator serves LATEST only)"
            )
        return q

    # -- invoke ---------------------------------------------------------------------------------------------
    def InvokeFunction(self, request: Request) -> Response:
        name = request.params["function"]
        qualifier = self._qualifier(request) or "LATEST"
        self.scheduler.function(name)
        kind = request.headers.get(H.FC_INVOCATION_TYPE, "Sync")
        if kind.lower() == "async":
            return self._invoke_async(request, name, qualifier)
        if kind.lower() != "sync":
            raise _bad(f"x-fc-invocation-type must be Sync or Async, got {kind!r}")
        if len(request.body) > SYNC_PAYLOAD_LIMIT:
            raise ApiError(
                400,
                "EntityTooLarge",
                f"payload size exceeds maximum allowed size ({SYNC_PAYLOAD_LIMIT} bytes)",
            )
        result = self.scheduler.invoke_sync(name, request.body, request.request_id)
        headers = {H.FC_REQUEST_ID: request.request_id, H.CONTENT_TYPE: "application/octet-stream"}
        if request.headers.get(H.FC_LOG_TYPE, "").lower() == "tail":
            tail = self.scheduler.logs(request.request_id).encode("utf-8")[-4096:]
            headers["x-fc-log-result"] = base64.b64encode(tail).decode("ascii")
        if result.ok:
            return Response(200, result.payload, headers)
        headers["x-fc-error-type"] = "UnhandledInvocationError"
        return Response(200, result.error_payload(), headers)

    def _invoke_async(self, request: Request, name: str, qualifier: str) -> Response:
        if len(request.body) > ASYNC_PAYLOAD_LIMIT:
            raise ApiError(
                400,
                "EntityTooLarge",
                f"payload size {len(request.body)} exceeds maximum allowed size ({ASYNC_PAYLOAD_LIMIT} bytes)",
            )
        # GUESS: FC's own id shape for a task invoked without x-fc-async-task-id is undocumented
        task_id = request.headers.get(H.FC_ASYNC_TASK_ID) or f"task-{uuid.uuid4()}"
        if not _TASK_ID.match(task_id):
            raise _bad(
                f"x-fc-async-task-id {task_id!r} is not valid: a letter or _ first, then [A-Za-z0-9_-], at most 128"
            )
        delay = _int_arg(dict(request.headers), H.FC_ASYNC_DELAY, 0) or 0
        if not 0 <= delay <= 3600:
            raise _bad(f"x-fc-async-delay must be between 0 and 3600, got {delay}")
        self.scheduler.submit(
            name, task_id, request.body, request.request_id, qualifier=qualifier, delay=delay
        )
        return json_response(202, None, request.request_id, {H.FC_ASYNC_TASK_ID: task_id})

    # -- tasks ----------------------------------------------------------------------------------------------
    def GetAsyncTask(self, request: Request) -> Response:
        self._qualifier(request)
        task = self.scheduler.task(request.params["function"], request.params["task_id"])
        return json_response(200, self.scheduler.snapshot(task), request.request_id)

    def StopAsyncTask(self, request: Request) -> Response:
        self._qualifier(request)
        self.scheduler.stop(request.params["function"], request.params["task_id"])
        return json_response(200, None, request.request_id)

    def ListAsyncTasks(self, request: Request) -> Response:
        q = request.query
        qualifier = self._qualifier(request, None)
        limit = _int_arg(q, "limit", 20) or 20
        if not 1 <= limit <= 100:
            raise _bad(f"limit must be between 1 and 100, got {limit}")
        order = (q.get("sortOrderByTime") or "desc").lower()
        if order not in ("asc", "desc"):
            raise _bad(f"sortOrderByTime must be asc or desc, got {q.get('sortOrderByTime')!r}")
        statuses = {s.strip().lower() for s in (q.get("status") or "").split(",") if s.strip()}
        for s in statuses:
            if TaskStatus(s).is_unknown:
                raise _bad(f"status {s!r} is not valid")
        begin = _int_arg(q, "startedTimeBegin")
        end = _int_arg(q, "startedTimeEnd")
        prefix = q.get("prefix") or ""
        include = (q.get("includePayload") or "").lower() == "true"
        cursor = _decode_token(q.get("nextToken"))
        if cursor is not None and not (
            len(cursor) == 2 and isinstance(cursor[0], int) and isinstance(cursor[1], str)
        ):
            raise _bad(f"nextToken {q.get('nextToken')!r} is not valid")
        records, after = self.scheduler.list_page(
            request.params["function"],
            limit,
            newest_first=order == "desc",
            after=None if cursor is None else (cursor[0], cursor[1]),
            begin=begin,
            end=end,
            statuses={TaskStatus(s) for s in statuses},
            prefix=prefix,
            qualifier=qualifier,
            include_payload=include,
        )
        body: dict[str, Any] = {"tasks": records}
        if after is not None:
            body["nextToken"] = _encode_token(after)
        return json_response(200, body, request.request_id)

    # -- async invoke configs -------------------------------------------------------------------------------
    def PutAsyncInvokeConfig(self, request: Request) -> Response:
        name = request.params["function"]
        qualifier = self._qualifier(request) or "LATEST"
        try:
            raw = json.loads(request.body or b"{}")
            config = async_invoke_config_from_json(raw, "request body", "")
        except ValueError as exc:
            text = str(exc).replace("request body: .", "").replace("request body: ", "")
            raise _bad(text if isinstance(exc, ConfigError) else f"the body is not JSON: {exc}") from None
        config = self.scheduler.put_config(name, qualifier, config)
        return json_response(200, config.to_json(self.scheduler.function(name).arn), request.request_id)

    def GetAsyncInvokeConfig(self, request: Request) -> Response:
        name = request.params["function"]
        config = self.scheduler.get_config(name, self._qualifier(request) or "LATEST")
        return json_response(200, config.to_json(self.scheduler.function(name).arn), request.request_id)

    def DeleteAsyncInvokeConfig(self, request: Request) -> Response:
        self.scheduler.delete_config(request.params["function"], self._qualifier(request) or "LATEST")
        return json_response(204, None, request.request_id)

    def ListAsyncInvokeConfigs(self, request: Request) -> Response:
        q = request.query
        limit = _int_arg(q, "limit", 20) or 20
        if not 1 <= limit <= 100:
            raise _bad(f"limit must be between 1 and 100, got {limit}")
        wanted = q.get("functionName")
        rows = [
            ((n, qual), c.to_json(self.scheduler.function(n).arn))
            for n, qual, c in self.scheduler.all_configs()
            if not wanted or n == wanted
        ]
        start = _decode_token(q.get("nextToken"))
        if start is not None:
            rows = [r for r in rows if r[0] > start]
        page = rows[:limit]
        body: dict[str, Any] = {"configs": [c for _, c in page]}
        if len(rows) > limit:
            body["nextToken"] = _encode_token(page[-1][0])
        return json_response(200, body, request.request_id)

    # -- functions ------------------------------------------------------------------------------------------
    def GetFunction(self, request: Request) -> Response:
        self._qualifier(request, None)
        fn = self.scheduler.function(request.params["function"])
        spec = fn.spec
        body = {
            "functionName": spec.name,
            "functionArn": fn.arn,
            "functionId": f"emu-{spec.name}",
            "description": spec.description,
            "handler": spec.handler,
            "runtime": spec.runtime,
            "timeout": int(spec.timeout),
            "memorySize": spec.memory_size,
            "cpu": round(spec.memory_size / 1024, 2),
            "diskSize": 512,
            "instanceConcurrency": spec.instance_concurrency,
            "environmentVariables": spec.environment,
            "internetAccess": True,
            "state": "Active",
            "stateReason": "",
            "lastUpdateStatus": "Successful",
            "codeSize": 0,
            "codeChecksum": "",
            "createdTime": fn.created,
            "lastModifiedTime": fn.created,
        }
        if spec.log_config:
            body["logConfig"] = dict(spec.log_config)
        return json_response(200, body, request.request_id)


def _encode_token(key: tuple[Any, ...]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode("utf-8")).decode("ascii")


def _decode_token(token: str | None) -> tuple[Any, ...] | None:
    if not token:
        return None
    try:
        return tuple(json.loads(base64.urlsafe_b64decode(token.encode("ascii"))))
    except (ValueError, TypeError):
        raise _bad(f"nextToken {token!r} is not valid") from None
