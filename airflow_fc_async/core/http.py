"""The I/O-free half of every request: what to send (:class:`Op`, :class:`Call`), how to read the reply
(:func:`handle_reply`, :func:`error_from_reply`) and when to try again (:class:`RetryPolicy`).

The sync and the async senders (``transport.py``) share all of this and differ only in the wire, so an error
body, a retry decision or a header name is interpreted in one place.
"""

from __future__ import annotations

import json
import logging
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.endpoints import H
from airflow_fc_async.core.errors import (
    FcApiError,
    FcConnectError,
    FcError,
    FcResponseError,
    FcThrottledError,
    FcValidationError,
    api_error,
)
from airflow_fc_async.core.policies import bounded, capped_doubling, check_bounds

__all__ = [  # FcConnectError: defined in errors.py, importable here as before
    "BaseUrl",
    "Call",
    "FcConnectError",
    "Op",
    "Reply",
    "RequestBuilder",
    "RetryPolicy",
    "bad_reply",
    "error_from_reply",
    "handle_reply",
    "parse_json",
    "parse_xml",
    "request_id_of",
    "xml_fields",
    "xml_local",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_REQUEST_ID_HEADERS = (H.FC_REQUEST_ID, H.MNS_REQUEST_ID, H.LOG_REQUEST_ID, "x-acs-request-id")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class BaseUrl:
    """``scheme://host[:port]`` of an endpoint; ``host`` is the Host header (with the port only when not default)."""

    scheme: str
    host: str

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @classmethod
    def parse(cls, endpoint: str, field_name: str = "endpoint") -> BaseUrl:
        text = (endpoint or "").strip()
        if "://" not in text:
            text = "https://" + text
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FcValidationError(field_name, f"{endpoint!r} is not an http(s)://host[:port] endpoint")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise FcValidationError(
                field_name, f"{endpoint!r}: give scheme://host:port only (no path or query)"
            )
        try:
            port = parts.port
        except ValueError:
            raise FcValidationError(field_name, f"{endpoint!r} has an invalid port") from None
        host = parts.hostname
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        default = 443 if parts.scheme == "https" else 80
        return cls(parts.scheme, host if port in (None, default) else f"{host}:{port}")


class RequestBuilder:
    """What every service's request builder shares, I/O-free: the endpoint, the credentials and :meth:`sign`.

    Subclasses (``FcRequests``, ``MnsRequests``, ``SlsRequests``) build one :class:`Op` per operation and sign it;
    a client (``SyncSender`` / ``AsyncSender`` in ``transport``) holds one and sends what it builds, so calls go
    one way: client, builder, transport. ``read_timeout`` is the client's (a long poll asks for more).
    """

    endpoint_field = "endpoint"
    """The connection field named in the error when the endpoint does not parse."""
    default_pool_size = 10
    """Connections a client keeps per host."""

    def __init__(self, endpoint: str, credentials: Credentials, *, read_timeout: float = 60.0) -> None:
        self.base = BaseUrl.parse(endpoint, self.endpoint_field)
        self.credentials = credentials
        self.read_timeout = read_timeout

    @property
    def endpoint(self) -> str:
        return self.base.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.base.url!r}, access_key_id={self.credentials.access_key_id!r})"

    def sign(self, op: Op[Any]) -> Call:
        """``op`` as a signed :class:`Call` (a new date and nonce each time: every attempt is signed afresh)."""
        raise NotImplementedError(f"{type(self).__name__} signs per request; see its docstring")


@dataclass(frozen=True)
class Op(Generic[T]):
    """One operation to perform, before signing: the same Op is signed afresh for every attempt (new nonce)."""

    action: str
    method: str
    path: str
    #: FC: the query as a mapping (sent canonically encoded); MNS: the query string exactly as signed and sent.
    query: Mapping[str, str | None] | str | None
    headers: Mapping[str, str]
    body: bytes
    parse: Callable[[Reply], T]
    #: Turns an error reply that is an answer (404 "no config", "no message") into a value, or raises the error.
    recover: Callable[[FcApiError, Reply], T] | None = None
    #: False when a repeat could run something twice: then only errors proving nothing ran are retried.
    idempotent: bool = True
    #: Read timeout for this call (a long poll needs more than the default).
    read_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Call:
    """A signed request, ready for the wire. Headers are left out of ``repr``: they carry the STS token."""

    method: str
    url: str
    headers: dict[str, str] = field(repr=False)
    body: bytes
    action: str
    read_timeout: float | None = None

    @property
    def where(self) -> str:
        """The URL without its query, for messages (the query may carry a signature)."""
        return self.url.split("?", 1)[0]


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back. ``headers`` is a case-insensitive mapping (or has lowercase keys)."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def request_id_of(headers: Mapping[str, str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get(H.ACS_RETRY_AFTER) or headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def xml_local(tag: str) -> str:
    """An element's name without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def xml_fields(element: ET.Element) -> dict[str, str]:
    """Child name -> text of the direct children (namespace dropped, unknown children kept, nothing required)."""
    return {xml_local(child.tag): (child.text or "") for child in element}


def _snippet(text: str, size: int = 200) -> str:
    text = _SPACE.sub(" ", _TAG.sub(" ", text)).strip()
    return text[:size] + ("..." if len(text) > size else "")


def error_from_reply(reply: Reply) -> FcApiError:
    """The error an unsuccessful reply means: FC JSON (3.0 and 2.0 names), MNS XML, or anything else."""
    request_id = request_id_of(reply.headers)
    retry_after = _retry_after(reply.headers)
    code: str | None = None
    message: str | None = None
    text = reply.body.decode("utf-8", "replace").strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            code = _first_str(data, "Code", "code", "errorCode", "ErrorCode")
            message = _first_str(data, "Message", "message", "errorMessage", "ErrorMessage")
            request_id = _first_str(data, "RequestId", "requestId") or request_id
    elif text.startswith("<") and not text[:200].lower().lstrip("<!").startswith(("html", "doctype")):
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            root = None
        if root is not None:
            fields = xml_fields(root)
            code = fields.get("Code") or fields.get("ErrorCode") or None
            message = fields.get("Message") or fields.get("ErrorMessage") or None
            request_id = fields.get("RequestId") or request_id
    if message is None:
        message = _snippet(text) if text else "(empty body)"
        if code is None and text:
            message = f"unparsed error body: {message}"
    return api_error(reply.status, code, message, request_id, retry_after)


def _first_str(data: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = data.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def handle_reply(op: Op[T], reply: Reply) -> T:
    """The value of a reply, or the error it means (after ``op.recover`` had its say)."""
    if reply.ok:
        return op.parse(reply)
    error = error_from_reply(reply)
    if op.recover is not None:
        return op.recover(error, reply)
    raise error


def bad_reply(reply: Reply, problem: str) -> FcResponseError:
    """The error of a 2xx reply that is not what the API documents: ``HTTP <status>: <problem>``, with the
    reply's status and request id (raise it)."""
    return FcResponseError(
        f"HTTP {reply.status}: {problem}", status=reply.status, request_id=request_id_of(reply.headers)
    )


def parse_json(reply: Reply) -> Any:
    """The JSON of a 2xx reply ({} when empty); a body that is not JSON is an :class:`FcResponseError`."""
    if not reply.body.strip():
        return {}
    try:
        return json.loads(reply.body)
    except ValueError as exc:
        raise bad_reply(
            reply, f"the body is not JSON ({exc}): {_snippet(reply.body.decode('utf-8', 'replace'))}"
        ) from None


def parse_xml(reply: Reply, expected: str | tuple[str, ...] | None = None) -> ET.Element:
    """The XML root of a 2xx reply; an unparseable body or an unexpected root is an :class:`FcResponseError`."""
    try:
        root = ET.fromstring(reply.body)
    except ET.ParseError as exc:
        raise bad_reply(
            reply, f"the body is not XML ({exc}): {_snippet(reply.body.decode('utf-8', 'replace'))}"
        ) from None
    wanted = (expected,) if isinstance(expected, str) else expected
    if wanted and xml_local(root.tag) not in wanted:
        raise bad_reply(reply, f"expected <{'|'.join(wanted)}>, got <{xml_local(root.tag)}>")
    return root


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter for 429, 5xx, connection errors and garbled replies.

    Never retries another 4xx. ``x-acs-retry-after`` (or ``Retry-After``) overrides the backoff, up to
    ``max_retry_after``. A non-idempotent call (a sync invoke) is only repeated when the error proves that
    nothing ran: a refused connection or a 429.
    """

    max_attempts: int = bounded(4, low=1)
    base_delay: float = 0.25
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError(f"need 0 <= base_delay <= max_delay, got {self.base_delay}, {self.max_delay}")

    @classmethod
    def never(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def should_retry(self, exc: BaseException, *, idempotent: bool = True) -> bool:
        if not isinstance(exc, FcError):
            return False
        if not idempotent:
            return isinstance(exc, FcConnectError | FcThrottledError)
        return bool(exc.retryable)

    def delay(self, attempt_number: int, exc: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt_number`` (1-based)."""
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > 0:
            return min(float(retry_after), self.max_retry_after)
        backoff = capped_doubling(self.base_delay, attempt_number - 1, self.max_delay)
        return random.uniform(backoff / 2, backoff) if self.jitter else backoff

    def log_retry(self, action: str, attempt_number: int, exc: BaseException | None, sleep: float) -> None:
        log.warning(
            "%s failed (%s); attempt %d of %d, retrying in %.2f s",
            action,
            exc,
            attempt_number,
            self.max_attempts,
            sleep,
        )

    def _kwargs(self, idempotent: bool, action: str, done: int) -> dict[str, Any]:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.delay(state.attempt_number + done, exc)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self.log_retry(action, state.attempt_number + done, exc, state.upcoming_sleep)

        return {
            "stop": stop_after_attempt(self.max_attempts - done),
            "wait": wait,
            "retry": retry_if_exception(lambda e: self.should_retry(e, idempotent=idempotent)),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def retrying(self, *, idempotent: bool = True, action: str = "request", done: int = 0) -> Retrying:
        """Attempts after the ``done`` already made (and waited for) by the caller."""
        return Retrying(**self._kwargs(idempotent, action, done))

    def aretrying(self, *, idempotent: bool = True, action: str = "request", done: int = 0) -> AsyncRetrying:
        """The asyncio twin of :meth:`retrying`."""
        return AsyncRetrying(**self._kwargs(idempotent, action, done))

    async_retrying = aretrying  # the name before issue 18
