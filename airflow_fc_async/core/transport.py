"""The wire: one pooled ``requests`` adapter (sync) or one ``aiohttp`` session (async), and the retry loop.

CPU per call matters (a DAG may poll hundreds of tasks), so the sync sender skips what it does not need:
``trust_env`` is off (no proxy environment lookup per call; pass ``proxies`` explicitly instead), the
request is prepared by hand (the URL is already encoded exactly as signed, so nothing may re-encode it) and
handed to the adapter directly (no cookie jar, no redirects, no hooks). The async sender passes the URL as
``yarl.URL(..., encoded=True)`` for the same reason. aiohttp is imported only when an async client first sends,
and then in a worker thread: importing it on the event loop blocks every trigger of the triggerer for that long
(0.1-0.7 s here; more without cached bytecode or under load).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.util import Timeout

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcError, FcTransportError
from airflow_fc_async.core.http import (
    Call,
    FcConnectError,
    Op,
    Reply,
    RequestBuilder,
    RetryPolicy,
    handle_reply,
    request_id_of,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AsyncSender", "AsyncTransport", "SyncSender", "SyncTransport", "run_async", "run_sync"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class _LeanAdapter(HTTPAdapter):
    """``HTTPAdapter`` without the per-call work a signed API client does not need.

    ``send`` itself is the base one (so ``responses`` and other adapter-level mocks still see every call); the
    steps it delegates are trimmed: the pool of our one host is looked up once, the path is cut from the URL
    without re-parsing it, and the response is read at once into ``Response._content`` with no cookie jar
    (the APIs set no cookies) and no encoding sniffing.
    """

    def __init__(self, *, pool_maxsize: int) -> None:
        super().__init__(pool_connections=2, pool_maxsize=pool_maxsize, max_retries=0)
        self._pools: dict[tuple[str, object, object], Any] = {}

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
        url = request.url or ""
        key = (url[: _path_start(url)], verify, cert)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = super().get_connection_with_tls_context(request, verify, cert=cert)
        return pool

    def request_url(self, request: requests.PreparedRequest, proxies: Any) -> str:
        url = request.url or ""
        if proxies and not url.startswith("https"):
            return super().request_url(request, proxies)
        return url[_path_start(url) :] or "/"

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        # Response() would build a cookie jar and a header dict that are thrown away at once.
        response = requests.Response.__new__(requests.Response)
        response.__dict__.update(_RESPONSE_DEFAULTS)
        response.history = []
        response.status_code = resp.status
        response.headers = resp.headers  # urllib3's HTTPHeaderDict: case-insensitive already
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self
        response._content = resp.read(decode_content=True)  # the connection goes back to the pool here
        return response

    def close(self) -> None:
        self._pools.clear()
        super().close()


_RESPONSE_DEFAULTS: dict[str, Any] = {
    "_content_consumed": True,
    "_next": None,
    "encoding": None,
    "cookies": None,
    "elapsed": None,
}


def _path_start(url: str) -> int:
    """Index of the path in ``scheme://host[:port]/path?query``."""
    at = url.find("/", url.find("://") + 3)
    return at if at != -1 else len(url)


class SyncTransport:
    """Sends :class:`Call` objects over one pooled connection set (thread-safe, like ``requests`` adapters)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        proxies: Mapping[str, str] | None = None,
        verify: bool | str = True,
        pool_size: int = 10,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._proxies = dict(proxies) if proxies else None
        self._verify = verify
        self.session = requests.Session()
        self.session.trust_env = False  # no per-call proxy/netrc environment lookups; see ``proxies``
        self._adapter = _LeanAdapter(pool_maxsize=pool_size)
        self.session.mount("http://", self._adapter)
        self.session.mount("https://", self._adapter)
        self._timeouts: dict[float, Timeout] = {}

    def _timeout(self, read: float | None) -> Timeout:
        read = read or self.read_timeout
        timeout = self._timeouts.get(read)
        if timeout is None:
            timeout = self._timeouts[read] = Timeout(connect=self.connect_timeout, read=read)
        return timeout

    def send(self, call: Call) -> Reply:
        request = requests.PreparedRequest()
        request.method = call.method
        request.url = call.url
        headers: dict[str, str] = call.headers
        if call.body or call.method in ("POST", "PUT"):
            headers = {**headers, "Content-Length": str(len(call.body))}  # the spelling requests checks for
        request.headers = headers  # type: ignore[assignment]  # lowercase keys; urllib3 compares case-insensitively
        request.body = call.body or None
        request.hooks = {"response": []}
        try:
            resp = self._adapter.send(
                request,
                timeout=self._timeout(call.read_timeout),  # type: ignore[arg-type]  # a urllib3 Timeout is accepted
                verify=self._verify,
                proxies=self._proxies,
            )
        except requests.ConnectTimeout as exc:
            raise FcConnectError(f"{call.action}: connect timeout to {_where(call)}: {exc}") from None
        except requests.ConnectionError as exc:
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            cls = FcConnectError if isinstance(reason, NewConnectionError) else FcTransportError
            raise cls(f"{call.action}: connection error to {_where(call)}: {exc}") from None
        except (requests.RequestException, HTTPError) as exc:
            raise FcTransportError(
                f"{call.action}: {type(exc).__name__} from {_where(call)}: {exc}"
            ) from None
        return Reply(resp.status_code, resp.headers, resp.content)

    def close(self) -> None:
        self.session.close()


_IMPORT_LOCK = threading.Lock()
_IMPORTING: Future[Any] | None = None


async def _import_aiohttp() -> None:
    """Import aiohttp (and yarl) once per process, off the event loop; concurrent callers share the import."""
    global _IMPORTING
    if "aiohttp" in sys.modules and "yarl" in sys.modules:
        return
    with _IMPORT_LOCK:
        if _IMPORTING is None:
            _IMPORTING = Future()
            threading.Thread(target=_import_in_thread, args=(_IMPORTING,), daemon=True).start()
        importing = _IMPORTING
    await asyncio.wrap_future(importing)


def _import_in_thread(done: Future[Any]) -> None:
    try:
        importlib.import_module("aiohttp")
        importlib.import_module("yarl")
        done.set_result(None)
    except BaseException as exc:  # every waiter sees the ImportError
        done.set_exception(exc)


class _SharedSession:
    """One ``aiohttp.ClientSession`` per event loop and pool shape, shared by every async client of the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession) -> None:
        self.loop = loop
        self.session = session
        self.users = 0


_SESSIONS: dict[tuple[int, str, int, bool], _SharedSession] = {}


class AsyncTransport:
    """The async twin: one ``aiohttp.ClientSession``, created on first use inside the running event loop.

    With ``share`` (a name, e.g. the endpoint) the transports of one loop with the same ``share``, pool size
    and TLS check send through one session: a triggerer's thousand triggers (each with its own hook and client) then
    hold at most ``pool_size`` connections to FC instead of one each (a thousand first reads at once opened a
    thousand connections: on the emulator a thread each, 13 s per request under load; on FC a TLS handshake each,
    on the loop). The session closes when the last client of the loop using it closes.
    """

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        proxies: Mapping[str, str] | None = None,
        verify: bool = True,
        pool_size: int = 10,
        share: str | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._proxies = dict(proxies) if proxies else {}
        self._verify = verify
        self._pool_size = pool_size
        self._share = share
        self._shared: _SharedSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        shared = self._shared
        if shared is not None and not shared.session.closed:
            return shared.session
        if shared is not None:
            shared.users -= 1
        loop = asyncio.get_running_loop()
        key = (id(loop), self._share or "", self._pool_size, bool(self._verify))
        shared = _SESSIONS.get(key) if self._share is not None else None
        if shared is None or shared.loop is not loop or shared.session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ssl=bool(self._verify))
            session = aiohttp.ClientSession(  # no cookie jar: the APIs set none, and clients may share it
                connector=connector,
                trust_env=False,
                auto_decompress=True,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            shared = _SharedSession(loop, session)
            if self._share is not None:
                _SESSIONS[key] = shared
        shared.users += 1
        self._shared = shared
        return shared.session

    async def send(self, call: Call) -> Reply:
        await _import_aiohttp()
        import aiohttp
        from yarl import URL

        session = self._get_session()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.connect_timeout, sock_read=call.read_timeout or self.read_timeout
        )
        url = URL(call.url, encoded=True)
        try:
            async with session.request(
                call.method,
                url,
                headers=call.headers,
                data=call.body or None,
                # aiohttp adds "Content-Type: application/octet-stream" to a body-less PUT/POST: an unsigned
                # header that MNS (and the emulator) reject with SignatureDoesNotMatch.
                skip_auto_headers=() if call.body else ("Content-Type",),
                timeout=timeout,
                proxy=self._proxies.get(url.scheme),
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                return Reply(resp.status, resp.headers, body)
        except aiohttp.ClientConnectorError as exc:
            raise FcConnectError(f"{call.action}: cannot connect to {_where(call)}: {exc}") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise FcTransportError(
                f"{call.action}: {type(exc).__name__} from {_where(call)}: {exc or 'timeout'}"
            ) from None

    async def aclose(self) -> None:
        shared, self._shared = self._shared, None
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0 and not shared.session.closed:
            for key, found in list(_SESSIONS.items()):
                if found is shared:
                    del _SESSIONS[key]
            await shared.session.close()


def _where(call: Call) -> str:
    return call.url.split("?", 1)[0]


def _log_reply(call: Call, reply: Reply) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s %s %s -> %d (request id %s)",
            call.action,
            call.method,
            _where(call),
            reply.status,
            request_id_of(reply.headers),
        )


def run_sync(op: Op[T], sign: Callable[[Op[Any]], Call], transport: SyncTransport, policy: RetryPolicy) -> T:
    """Sign, send and read ``op``, retrying per ``policy``; each attempt is signed afresh (new date, nonce).

    The first attempt runs outside tenacity (it is the one that nearly always succeeds, and the retry machinery
    costs a few percent of a call's CPU); later attempts run under it.
    """
    try:
        return _once(op, sign, transport)
    except FcError as exc:
        if policy.max_attempts == 1 or not policy.should_retry(exc, idempotent=op.idempotent):
            raise
        delay = policy.delay(1, exc)
        policy.log_retry(op.action, 1, exc, delay)
        time.sleep(delay)
    for attempt in policy.retrying(idempotent=op.idempotent, action=op.action, done=1):
        with attempt:
            return _once(op, sign, transport)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def _once(op: Op[T], sign: Callable[[Op[Any]], Call], transport: SyncTransport) -> T:
    call = sign(op)
    reply = transport.send(call)
    _log_reply(call, reply)
    return handle_reply(op, reply)


async def run_async(
    op: Op[T], sign: Callable[[Op[Any]], Call], transport: AsyncTransport, policy: RetryPolicy
) -> T:
    try:
        return await _aonce(op, sign, transport)
    except FcError as exc:
        if policy.max_attempts == 1 or not policy.should_retry(exc, idempotent=op.idempotent):
            raise
        delay = policy.delay(1, exc)
        policy.log_retry(op.action, 1, exc, delay)
        await asyncio.sleep(delay)
    async for attempt in policy.async_retrying(idempotent=op.idempotent, action=op.action, done=1):
        with attempt:
            return await _aonce(op, sign, transport)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


async def _aonce(op: Op[T], sign: Callable[[Op[Any]], Call], transport: AsyncTransport) -> T:
    call = sign(op)
    reply = await transport.send(call)
    _log_reply(call, reply)
    return handle_reply(op, reply)


class SyncSender(RequestBuilder):
    """Sends a builder's requests over one pooled ``requests`` session (thread-safe); :meth:`close` when done.

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
        pool_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            endpoint,
            credentials,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=retry,
            **options,
        )
        self._transport = SyncTransport(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            proxies=proxies,
            verify=verify,
            pool_size=pool_size or self.default_pool_size,
        )

    def _run(self, op: Op[Any]) -> Any:
        return run_sync(op, self._sign, self._transport, self.retry)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSender(RequestBuilder):
    """The asyncio twin of :class:`SyncSender` (aiohttp, imported on first use); :meth:`aclose` when done.

    ``share_pool``: the clients of this class in one loop send through one session per endpoint (see
    :class:`AsyncTransport`); off for long polls, which would hold the shared connections.
    """

    share_pool = False

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
        pool_size: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            endpoint,
            credentials,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retry=retry,
            **options,
        )
        self._transport = AsyncTransport(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            proxies=proxies,
            verify=verify,
            pool_size=pool_size or self.default_pool_size,
            share=f"{type(self).__name__} {endpoint}" if self.share_pool else None,
        )

    async def _run(self, op: Op[Any]) -> Any:
        return await run_async(op, self._sign, self._transport, self.retry)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
