"""Log Service (SLS) GetLogs v1 for the functions' ``logConfig``: rows, query, signature, errors.

Every function with a ``logConfig`` ships its lines here as FC 3.0 does: one row per line under the topic
``FCLogs:{function}``, framed by ``FC Invoke Start/End RequestId: <id>`` lines, with ``functionName``,
``qualifier``, ``versionId``, ``instanceID``, ``__time__``, ``__source__`` and ``__topic__``. A running attempt's
lines are shipped when a GetLogs call comes (so they appear while the function runs), the rest when it ends.

The project is read from the Host header, ``{project}.{endpoint host}``: what the official SDKs send to an IP
endpoint and what ``core/sls.py`` sends to any endpoint that is not an Alibaba Cloud domain. The paths
(``/logstores/...``) collide with neither FC (``/2023-03-30/...``) nor MNS (``/queues/...``).

Query syntax served: ``*`` or empty (everything), terms joined by ``and`` / ``or`` (``and`` binds first),
``field: value`` or ``field: "value"`` (equality), and a bare word or ``"phrase"`` (found in ``message``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Iterable

from airflow_fc_async.core.endpoints import H
from airflow_fc_async.core.function_logs import function_topic
from airflow_fc_async.core.signing import parse_sls_authorization, sls_signature, sls_string_to_sign
from airflow_fc_async.emulator.auth import read_authorization, redact_credentials
from airflow_fc_async.emulator.config import FunctionSpec
from airflow_fc_async.emulator.settings import Settings
from airflow_fc_async.emulator.wire import ApiError, Request, Response

__all__ = ["LogStore", "SlsApi", "check_sls", "project_of", "sls_error"]

MAX_ROWS_PER_STORE = 200_000
_MAX_SKEW = 15 * 60


class LogStore:
    """Rows per ``(project, logstore)``, in arrival order (oldest dropped past ``MAX_ROWS_PER_STORE``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str], list[dict[str, str]]] = {}

    def append(self, spec: FunctionSpec, request_id: str, instance: str, line: str) -> None:
        """The scheduler's log sink: one line of ``spec``'s function as one row."""
        config = spec.log_config
        if not config:
            return
        row = {
            "message": line,
            "functionName": spec.name,
            "qualifier": "LATEST",
            "versionId": "",
            "instanceID": instance,
            "__time__": str(int(time.time())),
            "__source__": "fc-emulator",
            "__topic__": function_topic(spec.name),
        }
        key = (config["project"], config["logstore"])
        with self._lock:
            rows = self._rows.setdefault(key, [])
            rows.append(row)
            if len(rows) > MAX_ROWS_PER_STORE:
                del rows[: len(rows) - MAX_ROWS_PER_STORE]

    def rows(self, project: str, logstore: str) -> list[dict[str, str]]:
        with self._lock:
            return list(self._rows.get((project, logstore), ()))


def sls_error(err: ApiError, request_id: str) -> Response:
    """SLS's error body: ``{"errorCode", "errorMessage"}`` and ``x-log-requestid``."""
    body = json.dumps({"errorCode": err.code, "errorMessage": err.message}).encode("utf-8")
    headers = {H.LOG_REQUEST_ID: request_id, H.CONTENT_TYPE: "application/json", **err.headers}
    return Response(err.status, body, headers)


def project_of(host_header: str) -> str | None:
    """The project in ``{project}.{host}[:port]``; None when the Host names no project (a bare IP or name)."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [IPv6]:port names no project
        return None
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    project, dot, rest = host.partition(".")
    return project if dot and rest and project else None


def check_sls(request: Request, settings: Settings) -> None:
    """Verify a v1 ``LOG id:signature`` request over the decoded query (as ``core.signing`` signs it); raise SLS errors."""
    bad = ApiError(
        401, "Unauthorized", "The Authorization header is missing or not 'LOG AccessKeyId:Signature'"
    )
    key_id, signature = read_authorization(
        request,
        settings,
        parse_sls_authorization,
        missing=bad,
        malformed=bad,
        unknown_key=(401, "InvalidAccessKeyId", "AccessKeyId {key_id} does not exist"),
    )
    token = request.headers.get(H.ACS_SECURITY_TOKEN)
    needs_token = key_id.startswith("STS.") or bool(settings.security_token)
    if token is None and needs_token:
        raise ApiError(401, "Unauthorized", "The security token is required for STS credentials")
    if token is not None and not (
        settings.security_token and hmac.compare_digest(token, settings.security_token)
    ):
        raise ApiError(401, "Unauthorized", "The security token you provided is invalid or expired")
    date = request.headers.get(H.DATE)
    if not date:
        raise ApiError(400, "MissingDate", "The Date header is missing")
    if settings.check_date_skew:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            raise ApiError(400, "InvalidDateFormat", f"Date {date!r} is not an RFC 1123 date") from None
        if abs(when.timestamp() - time.time()) > _MAX_SKEW:
            raise ApiError(
                400, "RequestTimeExpired", "The Date header is more than 15 minutes from server time"
            )
    string_to_sign = sls_string_to_sign(request.method, request.path, request.query, request.headers)
    expected = sls_signature(settings.access_key_secret, string_to_sign)
    if "x-log-date" in request.headers and not hmac.compare_digest(expected, signature):
        # older official SDKs add x-log-date (a copy of Date, for proxies) after signing: accept both forms
        unsigned = {k: v for k, v in request.headers.items() if k != "x-log-date"}
        alternative = sls_string_to_sign(request.method, request.path, request.query, unsigned)
        if hmac.compare_digest(sls_signature(settings.access_key_secret, alternative), signature):
            return
    if not hmac.compare_digest(expected, signature):
        raise ApiError(
            401,
            "SignatureNotMatch",
            f"signature {signature} not match; the server's string to sign (credential values masked) is "
            f"{sls_string_to_sign(request.method, request.path, request.query, redact_credentials(request.headers))!r}",
        )


class SlsApi:
    """GetLogs v1 over the :class:`LogStore`.

    :param known: the ``(project, logstore)`` pairs the deployed functions name (others are 404).
    :param ship: called before every read, so that running attempts' lines are in the store.
    """

    def __init__(
        self,
        store: LogStore,
        known: Callable[[], Iterable[tuple[str, str]]],
        ship: Callable[[], None],
    ) -> None:
        self.store = store
        self._known = known
        self._ship = ship

    def handle(self, request: Request) -> Response:
        return getattr(self, request.action)(request)  # type: ignore[no-any-return]

    def GetLogs(self, request: Request) -> Response:
        project = project_of(request.headers.get(H.HOST, ""))
        logstore = request.params["logstore"]
        pairs = set(self._known())
        if project is None or project not in {p for p, _ in pairs}:
            raise ApiError(
                404, "ProjectNotExist", f"Project {project or '(none in the Host header)'} does not exist"
            )
        if (project, logstore) not in pairs:
            raise ApiError(404, "LogStoreNotExist", f"logstore {logstore} does not exist")
        q = request.query
        if q.get("type", "log") != "log":
            raise ApiError(400, "ParameterInvalid", f"type must be log, got {q.get('type')!r}")
        start = _int(q, "from", "InvalidTimeRange")
        end = _int(q, "to", "InvalidTimeRange")
        if start >= end:
            raise ApiError(400, "InvalidTimeRange", f"from ({start}) must be less than to ({end})")
        line = _int(q, "line", "InvalidLine", 100)
        if not 0 <= line <= 100:
            raise ApiError(400, "InvalidLine", f"line must be between 0 and 100, got {line}")
        offset = _int(q, "offset", "InvalidOffset", 0)
        if offset < 0:
            raise ApiError(400, "InvalidOffset", f"offset must be >= 0, got {offset}")
        reverse = (q.get("reverse") or "false").lower() == "true"
        match = _compile(q.get("query") or "")
        topic = q.get("topic")
        self._ship()
        rows = [
            r
            for r in self.store.rows(project, logstore)
            if start <= int(r["__time__"]) < end and (not topic or r["__topic__"] == topic) and match(r)
        ]
        if reverse:
            rows.reverse()
        page = rows[offset : offset + line]
        body = json.dumps(page, separators=(",", ":")).encode("utf-8")
        return Response(
            200,
            body,
            {
                H.CONTENT_TYPE: "application/json",
                H.LOG_REQUEST_ID: request.request_id,
                H.LOG_PROGRESS: "Complete",
                H.LOG_COUNT: str(len(page)),
                H.LOG_PROCESSED_ROWS: str(len(rows)),
            },
        )


def _int(query: dict[str, str], name: str, code: str, default: int | None = None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ApiError(400, code, f"{name} is required")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, code, f"{name} must be an integer, got {raw!r}") from None


_TERM = re.compile(r'^(?:(?P<field>[\w:.-]+?)\s*:\s*)?(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<word>\S+))$')
_SPLIT_OR = re.compile(r'\s+or\s+(?=(?:[^"]*"[^"]*")*[^"]*$)', re.IGNORECASE)
_SPLIT_AND = re.compile(r'\s+and\s+(?=(?:[^"]*"[^"]*")*[^"]*$)', re.IGNORECASE)

Row = dict[str, str]


def _compile(query: str) -> Callable[[Row], bool]:
    """A row predicate for the query subset this emulator serves; 400 ParameterInvalid for anything else."""
    text = query.strip()
    if text in ("", "*"):
        return lambda row: True
    if "|" in text:
        raise ApiError(
            400, "ParameterInvalid", "analytic statements (| SELECT ...) are not served by the emulator"
        )
    clauses = [[_term(t) for t in _SPLIT_AND.split(c.strip())] for c in _SPLIT_OR.split(text)]
    return lambda row: any(all(t(row) for t in clause) for clause in clauses)


def _term(text: str) -> Callable[[Row], bool]:
    m = _TERM.match(text.strip())
    if not m:
        raise ApiError(400, "ParameterInvalid", f"query term {text!r} is not understood by the emulator")
    value = m["quoted"].replace('\\"', '"').replace("\\\\", "\\") if m["quoted"] is not None else m["word"]
    field = m["field"]
    if field:
        return lambda row: row.get(field) == value
    needle = value.lower()
    return lambda row: needle in row.get("message", "").lower()
