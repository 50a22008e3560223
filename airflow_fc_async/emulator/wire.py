"""Request and response values shared by the HTTP layer and the API handlers (no I/O here)."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from airflow_fc_async.core.endpoints import H

__all__ = [
    "ApiError",
    "Request",
    "Response",
    "fc_error",
    "json_response",
    "new_request_id",
    "now_ms",
    "parse_query",
]


def now_ms() -> int:
    """Now in epoch milliseconds: the time stamps of FC task records and events, and of MNS messages."""
    return int(time.time() * 1000)


def new_request_id() -> str:
    """An id shaped like FC's ``1-64e70cf1-15197d0b-d07710222f9d``."""
    h = uuid.uuid4().hex
    return f"1-{h[:8]}-{h[8:16]}-{h[16:28]}"


def parse_query(raw: str) -> dict[str, str]:
    """The raw query string as sent, values percent-decoded (``+`` stays ``+``: both clients send ``%20``)."""
    out: dict[str, str] = {}
    for part in raw.split("&") if raw else ():
        if not part:
            continue
        key, _, value = part.partition("=")
        out[unquote(key)] = unquote(value)
    return out


@dataclass
class Request:
    """One HTTP request as received: ``path`` and ``raw_query`` exactly as on the wire."""

    method: str
    path: str
    raw_query: str
    headers: dict[str, str]
    """Lowercased names, values as received."""
    body: bytes
    query: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    """Path parameters (decoded) from the route."""
    request_id: str = field(default_factory=new_request_id)
    action: str = ""

    @property
    def target(self) -> str:
        return self.path + ("?" + self.raw_query if self.raw_query else "")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An error answer; the server renders it as FC JSON or MNS XML depending on the API."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def json_response(
    status: int, value: Any, request_id: str, headers: dict[str, str] | None = None
) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode("utf-8") if value is not None else b""
    out = {H.FC_REQUEST_ID: request_id, **(headers or {})}
    if value is not None:
        out[H.CONTENT_TYPE] = "application/json; charset=utf-8"
    return Response(status, body, out)


def fc_error(err: ApiError, request_id: str) -> Response:
    return json_response(
        err.status,
        {"Code": err.code, "Message": err.message, "RequestId": request_id},
        request_id,
        err.headers,
    )
