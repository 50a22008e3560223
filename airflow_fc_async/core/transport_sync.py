"""The sync wire: one pooled ``requests`` adapter, trimmed of the per-call work a signed API client does not need.

CPU per call matters (a DAG may poll hundreds of tasks), so the sender skips what it does not need: ``trust_env``
is off (no proxy environment lookup per call; pass ``proxies`` explicitly instead), the request is prepared by hand
(the URL is already encoded exactly as signed, so nothing may re-encode it) and handed to the adapter directly (no
cookie jar, no redirects, no hooks). The retry loop and the senders are in :mod:`~airflow_fc_async.core.transport`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.util import Timeout

from airflow_fc_async.core.errors import FcTransportError
from airflow_fc_async.core.http import Call, FcConnectError, Reply

__all__ = ["SyncTransport"]


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
            raise FcConnectError(f"{call.action}: connect timeout to {call.where}: {exc}") from None
        except requests.ConnectionError as exc:
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            cls = FcConnectError if isinstance(reason, NewConnectionError) else FcTransportError
            raise cls(f"{call.action}: connection error to {call.where}: {exc}") from None
        except (requests.RequestException, HTTPError) as exc:
            raise FcTransportError(f"{call.action}: {type(exc).__name__} from {call.where}: {exc}") from None
        return Reply(resp.status_code, resp.headers, resp.content)

    def close(self) -> None:
        self.session.close()
