"""The wire: one pooled ``requests`` adapter (sync) or one ``aiohttp`` session (async), and the retry loop.

CPU per call matters (a DAG may poll hundreds of tasks), so the sync sender skips what it does not need:
``trust_env`` is off (no proxy environment lookup per call; pass ``proxies`` explicitly instead), the
request is prepared by hand (the URL is already encoded exactly as signed, so nothing may re-encode it) and
handed to the adapter directly (no cookie jar, no redirects, no hooks). The async sender passes the URL as
``yarl.URL(..., encoded=True)`` for the same reason. aiohttp is imported only when an async client first sends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import NewConnectionError

from airflow_fc_async.core.errors import FcTransportError
from airflow_fc_async.core.http import (
    Call,
    FcConnectError,
    Op,
    Reply,
    RetryPolicy,
    handle_reply,
    request_id_of,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AsyncTransport", "SyncTransport", "run_async", "run_sync"]

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        self._adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", self._adapter)
        self.session.mount("https://", self._adapter)

    def send(self, call: Call) -> Reply:
        request = requests.PreparedRequest()
        request.method = call.method
        request.url = call.url
        headers = CaseInsensitiveDict(call.headers)
        if call.body or call.method in ("POST", "PUT"):
            headers["content-length"] = str(len(call.body))
        request.headers = headers
        request.body = call.body or None
        request.hooks = {"response": []}
        timeout = (self.connect_timeout, call.read_timeout or self.read_timeout)
        try:
            resp = self._adapter.send(request, timeout=timeout, verify=self._verify, proxies=self._proxies)
            body = resp.content
        except requests.ConnectTimeout as exc:
            raise FcConnectError(f"{call.action}: connect timeout to {_where(call)}: {exc}") from None
        except requests.ConnectionError as exc:
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            cls = FcConnectError if isinstance(reason, NewConnectionError) else FcTransportError
            raise cls(f"{call.action}: connection error to {_where(call)}: {exc}") from None
        except requests.RequestException as exc:
            raise FcTransportError(
                f"{call.action}: {type(exc).__name__} from {_where(call)}: {exc}"
            ) from None
        return Reply(resp.status_code, resp.headers, body)

    def close(self) -> None:
        self.session.close()


class AsyncTransport:
    """The async twin: one ``aiohttp.ClientSession``, created on first use inside the running event loop."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        proxies: Mapping[str, str] | None = None,
        verify: bool = True,
        pool_size: int = 10,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._proxies = dict(proxies) if proxies else {}
        self._verify = verify
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, ssl=bool(self._verify))
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True)
        return self._session

    async def send(self, call: Call) -> Reply:
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
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


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
    """Sign, send and read ``op``, retrying per ``policy``; each attempt is signed afresh (new date, nonce)."""
    for attempt in policy.retrying(idempotent=op.idempotent, action=op.action):
        with attempt:
            call = sign(op)
            reply = transport.send(call)
            _log_reply(call, reply)
            return handle_reply(op, reply)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


async def run_async(
    op: Op[T], sign: Callable[[Op[Any]], Call], transport: AsyncTransport, policy: RetryPolicy
) -> T:
    async for attempt in policy.async_retrying(idempotent=op.idempotent, action=op.action):
        with attempt:
            call = sign(op)
            reply = await transport.send(call)
            _log_reply(call, reply)
            return handle_reply(op, reply)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
