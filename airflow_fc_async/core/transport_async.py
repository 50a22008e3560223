"""The async wire: one ``aiohttp`` session per event loop and pool shape, shared by the clients of the loop.

The URL is passed as ``yarl.URL(..., encoded=True)``: it is already encoded exactly as signed, so nothing may
re-encode it. aiohttp is imported only when an async client first sends, and then in a worker thread: importing it
on the event loop blocks every trigger of the triggerer for that long (0.1-0.7 s here; more without cached bytecode
or under load). The retry loop and the senders are in :mod:`~airflow_fc_async.core.transport`.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from airflow_fc_async.core.errors import FcTransportError
from airflow_fc_async.core.http import Call, FcConnectError, Reply

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AsyncTransport"]


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
            raise FcConnectError(f"{call.action}: cannot connect to {call.where}: {exc}") from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise FcTransportError(
                f"{call.action}: {type(exc).__name__} from {call.where}: {exc or 'timeout'}"
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
