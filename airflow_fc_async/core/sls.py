"""Log Service (SLS) GetLogs v1 clients: :class:`SlsClient` (requests) and :class:`AsyncSlsClient` (aiohttp).

Both hold an :class:`SlsRequests` (request building, signing and reply reading; no I/O) and send through
``core/transport.py``, like the FC and MNS clients: one retry policy, one error hierarchy. A reply marked
``x-log-progress: Incomplete`` is asked again (a few times, with a short pause); :meth:`SlsClient.iter_logs`
follows pages (``offset`` += rows) until a page is shorter than ``line``.

The project is addressed by the Host header ``{project}.{endpoint host}`` (``endpoints.sls_project_address``),
so an endpoint override (the emulator) needs no DNS entry per project.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.endpoints import SLS_ENDPOINTS, H, sls_project_address
from airflow_fc_async.core.errors import FcResponseError, FcValidationError
from airflow_fc_async.core.http import Call, Op, Reply, RequestBuilder, parse_json, request_id_of
from airflow_fc_async.core.signing import canonical_query, sign_sls_request
from airflow_fc_async.core.transport import AsyncSender, SyncSender

__all__ = ["AsyncSlsClient", "LogOptions", "LogPage", "RowOptions", "SlsClient", "SlsRequests"]

MAX_LINE = 100
_INCOMPLETE_ATTEMPTS = 5
_INCOMPLETE_PAUSE = 0.5


@dataclass(frozen=True)
class LogPage:
    """One GetLogs reply: the rows (maps of strings), whether SLS says the result is complete, its request id."""

    rows: list[dict[str, str]]
    complete: bool
    count: int
    processed_rows: int | None = None
    request_id: str | None = None


class LogOptions(TypedDict, total=False):
    """The keyword arguments of ``get_logs``: the SLS ``query`` (default: all rows), ``topic``, ``line`` (rows
    per page, at most 100), ``offset`` (rows to skip), ``reverse`` (newest first)."""

    query: str
    topic: str | None
    line: int
    offset: int
    reverse: bool


class RowOptions(TypedDict, total=False):
    """The keyword arguments of ``iter_logs``: ``query``, ``topic``, ``offset`` as for ``get_logs``, and
    ``max_rows`` (None: every row)."""

    query: str
    topic: str | None
    offset: int
    max_rows: int | None


class _RowWalk:
    """The row walk of ``iter_logs`` without I/O: full pages from ``offset`` on, until a page is short or
    ``max_rows`` rows came."""

    def __init__(self, options: RowOptions) -> None:
        self.query = options.get("query", "")
        self.topic = options.get("topic")
        self.offset = options.get("offset", 0)
        self.max_rows = options.get("max_rows")
        self.taken = 0
        self.done = False

    def next_offset(self) -> int | None:
        if self.done or (self.max_rows is not None and self.taken >= self.max_rows):
            return None
        return self.offset + self.taken

    def page(self, offset: int) -> LogOptions:
        return {"query": self.query, "topic": self.topic, "offset": offset}

    def take(self, rows: list[dict[str, str]]) -> list[dict[str, str]]:
        self.done = len(rows) < MAX_LINE
        if self.max_rows is not None:
            rows = rows[: self.max_rows - self.taken]
        self.taken += len(rows)
        return rows


@dataclass(frozen=True)
class _GetLogs:
    """A GetLogs request and its signer (SLS signs for the project's Host, so per request)."""

    op: Op[LogPage]
    sign: Callable[[Op[Any]], Call]


class SlsRequests(RequestBuilder):
    """Builds, signs and reads GetLogs requests; no I/O. A request is signed for its project's Host, so
    :meth:`get_logs_op` hands out its signer with it (:meth:`signer`) and :meth:`sign` is not used.

    :param endpoint: ``scheme://host[:port]`` of the region's endpoint (``https://{region}.log.aliyuncs.com``)
        or an override.
    :param incomplete_attempts: how often a page SLS marks ``Incomplete`` is asked for (at least once);
        ``incomplete_pause``: the pause before the n-th repeat is n times this (seconds).
    """

    endpoint_field = "sls_endpoint"
    default_pool_size = 4

    def __init__(
        self,
        endpoint: str,
        credentials: Credentials,
        *,
        incomplete_attempts: int = _INCOMPLETE_ATTEMPTS,
        incomplete_pause: float = _INCOMPLETE_PAUSE,
        **kwargs: Any,
    ) -> None:
        super().__init__(endpoint, credentials, **kwargs)
        self.incomplete_attempts = max(1, incomplete_attempts)
        self.incomplete_pause = incomplete_pause

    def get_logs_op(
        self, project: str, logstore: str, from_time: int, to_time: int, **options: Unpack[LogOptions]
    ) -> _GetLogs:
        for name, value in (("project", project), ("logstore", logstore)):
            if not isinstance(value, str) or not value.strip() or "/" in value:
                raise FcValidationError(name, f"must be a non-empty name without '/', got {value!r}")
        if int(from_time) >= int(to_time):
            raise FcValidationError("from_time", f"must be before to_time ({from_time} >= {to_time})")
        line, offset = int(options.get("line", MAX_LINE)), int(options.get("offset", 0))
        if not 0 <= line <= MAX_LINE:
            raise FcValidationError("line", f"must be between 0 and {MAX_LINE}, got {line}")
        if offset < 0:
            raise FcValidationError("offset", f"must be >= 0, got {offset}")
        params: dict[str, str] = {
            "type": "log",
            "from": str(int(from_time)),
            "to": str(int(to_time)),
            "line": str(line),
            "offset": str(offset),
            "reverse": "true" if options.get("reverse", False) else "false",
            "query": options.get("query", ""),
        }
        topic = options.get("topic")
        if topic is not None:
            params["topic"] = topic
        endpoint = SLS_ENDPOINTS["GetLogs"]
        op: Op[LogPage] = Op(
            action=endpoint.action,
            method=endpoint.method,
            path=endpoint.path(logstore=logstore),
            query=params,
            headers={},
            body=b"",
            parse=_parse_page,
        )
        return _GetLogs(op, self.signer(project))

    def signer(self, project: str) -> Callable[[Op[Any]], Call]:
        """Signs GetLogs requests of ``project`` (addressed by the Host ``{project}.{endpoint host}``)."""
        url_base, host = sls_project_address(self.base.scheme, self.base.host, project)

        def sign(op: Op[Any]) -> Call:
            params = dict(op.query) if isinstance(op.query, Mapping) else {}
            clean = {k: v for k, v in params.items() if v is not None}
            headers = sign_sls_request(
                self.credentials, method=op.method, host=host, path=op.path, params=clean
            )
            qs = canonical_query(clean)
            return Call(op.method, f"{url_base}{op.path}?{qs}", headers, op.body, op.action, op.read_timeout)

        return sign


def _parse_page(reply: Reply) -> LogPage:
    data = parse_json(reply)
    request_id = request_id_of(reply.headers)
    if not isinstance(data, list) or not all(isinstance(row, Mapping) for row in data):
        raise FcResponseError(
            f"GetLogs: expected a JSON array of rows, got {type(data).__name__}",
            status=reply.status,
            request_id=request_id,
        )
    rows = [{str(k): "" if v is None else str(v) for k, v in row.items()} for row in data]
    progress = (reply.headers.get(H.LOG_PROGRESS) or "Complete").strip()
    processed = reply.headers.get(H.LOG_PROCESSED_ROWS)
    return LogPage(
        rows=rows,
        complete=progress.lower() != "incomplete",
        count=_int(reply.headers.get(H.LOG_COUNT), len(rows)),
        processed_rows=_int(processed, 0) if processed is not None else None,
        request_id=request_id,
    )


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class SlsClient(SyncSender):
    """Synchronous GetLogs client over one pooled ``requests`` session; :meth:`close` when done. Options of
    :class:`SlsRequests` (``incomplete_attempts``, ``incomplete_pause``) are keyword arguments here too."""

    requests_class = SlsRequests
    _requests: SlsRequests

    def get_logs(
        self, project: str, logstore: str, from_time: int, to_time: int, **options: Unpack[LogOptions]
    ) -> LogPage:
        """One page; an ``Incomplete`` answer is asked again (up to ``incomplete_attempts`` times)."""
        req = self._requests.get_logs_op(project, logstore, from_time, to_time, **options)
        tries = self._requests.incomplete_attempts
        for attempt in range(1, tries + 1):
            page: LogPage = self._run(req.op, req.sign)
            if page.complete or attempt == tries:
                return page
            time.sleep(self._requests.incomplete_pause * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def iter_logs(
        self, project: str, logstore: str, from_time: int, to_time: int, **options: Unpack[RowOptions]
    ) -> Iterator[dict[str, str]]:
        """Rows oldest first, page after page until a page is short (or ``max_rows`` rows came)."""
        walk = _RowWalk(options)
        while (at := walk.next_offset()) is not None:
            yield from walk.take(self.get_logs(project, logstore, from_time, to_time, **walk.page(at)).rows)


class AsyncSlsClient(AsyncSender):
    """The asyncio twin of :class:`SlsClient` (same method names, awaited); :meth:`aclose` when done."""

    requests_class = SlsRequests
    _requests: SlsRequests

    async def get_logs(
        self, project: str, logstore: str, from_time: int, to_time: int, **options: Unpack[LogOptions]
    ) -> LogPage:
        req = self._requests.get_logs_op(project, logstore, from_time, to_time, **options)
        tries = self._requests.incomplete_attempts
        for attempt in range(1, tries + 1):
            page: LogPage = await self._run(req.op, req.sign)
            if page.complete or attempt == tries:
                return page
            await asyncio.sleep(self._requests.incomplete_pause * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    async def iter_logs(
        self, project: str, logstore: str, from_time: int, to_time: int, **options: Unpack[RowOptions]
    ) -> AsyncIterator[dict[str, str]]:
        walk = _RowWalk(options)
        while (at := walk.next_offset()) is not None:
            page = await self.get_logs(project, logstore, from_time, to_time, **walk.page(at))
            for row in walk.take(page.rows):
                yield row
