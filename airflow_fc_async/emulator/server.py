"""HTTP: a stdlib ThreadingHTTPServer speaking HTTP/1.1 keep-alive, routing by core/endpoints.py.

Why this server: no dependency, a thread per connection suits long polls (a waiting receive costs a sleeping
thread, no CPU), and it is fast enough once two classic traps are avoided: every response is built in memory and
written with one send, and TCP_NODELAY is set (headers and body in separate small sends meet Nagle + delayed ACK,
~40 ms per keep-alive request on loopback).
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from airflow_fc_async.core.endpoints import FC_API_VERSION, FC_ENDPOINTS, MNS_ENDPOINTS, SLS_ENDPOINTS
from airflow_fc_async.core.signing import http_date
from airflow_fc_async.emulator.auth import check_fc, check_mns
from airflow_fc_async.emulator.console import is_console_path
from airflow_fc_async.emulator.faults import Faults, RequestStats
from airflow_fc_async.emulator.fc_api import FcApi
from airflow_fc_async.emulator.guard import browser_refusal
from airflow_fc_async.emulator.mns_api import MnsApi, mns_action, mns_error
from airflow_fc_async.emulator.settings import ADMIN_PREFIX, Settings
from airflow_fc_async.emulator.sls_api import SlsApi, check_sls, sls_error
from airflow_fc_async.emulator.wire import ApiError, Request, Response, fc_error, parse_query

__all__ = ["RESET", "HttpServer", "Router"]

log = logging.getLogger(__name__)

RESET = Response(-1)
"""Sentinel: drop the connection with a TCP reset instead of answering."""

_FC_ROUTES = [(e, e.pattern()) for e in FC_ENDPOINTS.values()]
_MNS_ROUTES = [(e, e.pattern()) for e in MNS_ENDPOINTS.values()]
_SLS_ROUTES = [(e, e.pattern()) for e in SLS_ENDPOINTS.values()]
_FC_PREFIX = f"/{FC_API_VERSION}/"
_SLS_PREFIX = "/logstores/"
_SLS_ERROR_CODES = {429: "ReadQuotaExceed", 500: "InternalServerError", 503: "ServiceUnavailable"}
_ERROR_CODES = {429: "ResourceExhausted", 500: "InternalServerError", 503: "ResourceThrottled"}
_MNS_ERROR_CODES = {429: "QpsLimitExceeded", 500: "InternalError", 503: "ServiceUnavailable"}


class Router:
    """Request -> Response: admin, then route, stats, faults, signature, the API handler."""

    def __init__(
        self,
        settings: Settings,
        fc: FcApi,
        mns: MnsApi,
        admin: Callable[[Request], Response],
        host_id: Callable[[], str],
    ) -> None:
        self.settings = settings
        self.fc = fc
        self.mns = mns
        self.admin = admin
        self.faults = Faults()
        self.stats = RequestStats()
        self._host_id = host_id
        self.sls: SlsApi | None = None  # set by the Emulator: GetLogs for the functions' logConfig
        self.console: Callable[[Request], Response] | None = None  # set by the Emulator: read-only pages

    def render(self, request: Request, err: ApiError) -> Response:
        """An error in the format of the API the path belongs to (admin: JSON ``{"error": ...}``)."""
        if _is_admin(request.path):
            return Response(
                err.status,
                json.dumps({"error": err.message}).encode("utf-8"),
                {"content-type": "application/json", **err.headers},
            )
        if request.path.startswith(_FC_PREFIX):
            return fc_error(err, request.request_id)
        if request.path.startswith(_SLS_PREFIX):
            return sls_error(err, request.request_id)
        return mns_error(err, request, self._host_id())

    def handle(self, request: Request) -> Response:
        refusal = browser_refusal(request.headers, self.settings)
        if refusal is not None:
            return self.render(request, ApiError(403, "AccessDenied", refusal))
        if _is_admin(request.path):
            return self.admin(request)
        if self.console is not None and is_console_path(request.path):
            return self.console(request)
        is_fc = request.path.startswith(_FC_PREFIX)
        is_sls = not is_fc and request.path.startswith(_SLS_PREFIX)

        def render(err: ApiError) -> Response:
            return self.render(request, err)

        try:
            request.query = parse_query(request.raw_query)
            if is_sls:
                self._route_sls(request)
            else:
                self._route(request, is_fc)
        except ApiError as err:
            self.stats.count("Unknown", request.method, request.path)
            return render(err)
        self.stats.count(request.action, request.method, request.path)
        started = time.perf_counter()
        try:
            return self._serve(request, is_fc, is_sls, render)
        finally:  # long polls (ReceiveMessage waitseconds) count their wait too
            self.stats.timed(request.action, time.perf_counter() - started)

    def _serve(
        self, request: Request, is_fc: bool, is_sls: bool, render: Callable[[ApiError], Response]
    ) -> Response:
        fault = self.faults.decide(request.action, request.path)
        if fault.latency:
            time.sleep(fault.latency)
        if fault.kind == "reset_before":
            return RESET
        if fault.kind in ("429", "500", "503"):
            status = int(fault.kind)
            codes = _SLS_ERROR_CODES if is_sls else _ERROR_CODES if is_fc else _MNS_ERROR_CODES
            headers = {"x-acs-retry-after": str(int(fault.retry_after * 1000))} if fault.retry_after else {}
            response = render(ApiError(status, codes[status], "injected fault", headers))
            self.stats.status(request.action, status)
            return response
        try:
            if is_sls and self.sls is not None:
                check_sls(request, self.settings)
                response = self.sls.handle(request)
            else:
                (check_fc if is_fc else check_mns)(request, self.settings)
                response = (self.fc if is_fc else self.mns).handle(request)
        except ApiError as err:
            response = render(err)
        except Exception as exc:  # a bug: answer 500 and keep serving
            log.exception("emulator: %s failed", request.action)
            response = render(
                ApiError(500, "InternalServerError" if is_fc else "InternalError", f"emulator error: {exc!r}")
            )
        self.stats.status(request.action, response.status)
        return RESET if fault.kind == "reset_after" else response

    def _route_sls(self, request: Request) -> None:
        for endpoint, pattern in _SLS_ROUTES:
            m = pattern.match(request.path)
            if m and endpoint.method == request.method and self.sls is not None:
                request.action = endpoint.action
                request.params = {k: unquote(v) for k, v in m.groupdict().items()}
                return
        raise ApiError(
            404, "ParameterInvalid", f"{request.method} {request.path} is not served (GetLogs v1 only)"
        )

    def _route(self, request: Request, is_fc: bool) -> None:
        if is_fc:
            allowed = []
            for endpoint, pattern in _FC_ROUTES:
                m = pattern.match(request.path)
                if m:
                    allowed.append(endpoint.method)
                    if endpoint.method == request.method:
                        request.action = endpoint.action
                        request.params = {k: unquote(v) for k, v in m.groupdict().items()}
                        return
            raise ApiError(
                400,
                "PathNotSupported",
                f"{request.method} {request.path} is not supported (allowed: {allowed})",
            )
        if request.path.rstrip("/") == "/queues" and request.method == "GET":
            request.action = "ListQueue"
            return
        for _, pattern in _MNS_ROUTES:
            m = pattern.match(request.path)
            if m:
                request.params = {k: unquote(v) for k, v in m.groupdict().items()}
                request.action = mns_action(request)
                if request.action != "Unknown":
                    return
        raise ApiError(
            404,
            "InvalidArgument" if request.path.startswith("/queues") else "PathNotSupported",
            f"{request.method} {request.path} is not supported",
        )


def _is_admin(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


class _TooLarge(Exception):
    """The body is over the cap: answered 413 and the connection closed, the rest never read."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fc-emulator"
    server: HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.router.settings.request_timeout)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _body(self) -> bytes:
        """The body, read only up to the cap: an announced Content-Length is checked before a byte is read, a
        chunked body is refused as soon as its chunks add up past the cap."""
        limit = self.server.router.settings.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise ValueError("a malformed chunk size") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > limit:
                    raise _TooLarge(total)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ValueError("Content-Length is not a number") from None
        if length > limit:
            raise _TooLarge(length)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        target = self.path
        if "://" in target:  # absolute-form request target
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        path, _, raw_query = target.partition("?")
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        request = Request(self.command, path, raw_query, headers, b"")
        router = self.server.router
        try:
            request.body = self._body()
        except _TooLarge as exc:
            self.close_connection = True  # the unread rest of the body must not be taken for a request
            limit = router.settings.max_body_bytes
            message = (
                f"the request body ({exc.args[0]} bytes or more) exceeds the emulator's cap of {limit} bytes"
            )
            self._write(router.render(request, ApiError(413, "EntityTooLarge", message)))
            self._linger()
            return
        except ValueError as exc:
            self.close_connection = True
            self._write(router.render(request, ApiError(400, "InvalidArgument", str(exc))))
            return
        response = router.handle(request)
        if response is RESET:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self._write(response)

    def _linger(self) -> None:
        """Close after a refused body without a reset that would destroy the answer: stop sending, then discard
        (never keep) what the client is still sending, for at most a second and a few MB."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(1.0)
            deadline = time.monotonic() + 1.0
            for _ in range(64):
                if time.monotonic() > deadline or not self.connection.recv(65536):
                    break
        except OSError:
            pass

    def _write(self, response: Response) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {http_date()}",
        ]
        lines += [f"{k}: {v}" for k, v in response.headers.items()]
        lines.append(f"Content-Length: {len(response.body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + (response.body if self.command != "HEAD" else b""))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch


class HttpServer(ThreadingHTTPServer):
    """One thread per connection, at most ``settings.max_connections`` of them: a connection past the cap gets a
    503 at once (the clients retry it), so that half-sent or idle connections cannot take every thread; each of
    those is closed after ``settings.request_timeout`` seconds of silence."""

    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], router: Router) -> None:
        self.router = router
        self._slots = threading.BoundedSemaphore(router.settings.max_connections)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse(self, sock: socket.socket) -> None:
        body = b'{"Code":"ServiceUnavailable","Message":"the emulator serves its maximum of connections"}'
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        try:
            sock.settimeout(1.0)
            sock.sendall(head.encode("ascii") + body)
        except OSError:
            pass
        self.shutdown_request(sock)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # a client went away, a fault reset the connection, or a read timed out
            return
        log.exception("emulator: error serving %s", client_address)
