"""The retry loop and the two client shells: :class:`SyncSender` (``requests``) and :class:`AsyncSender` (``aiohttp``).

A client *holds* a request builder and a transport, as httpx's ``Client`` holds its ``_transport``: the
builder (:class:`~airflow_fc_async.core.http.RequestBuilder`: ``FcRequests``, ``MnsRequests``, ``SlsRequests``)
builds and signs, no I/O; the transport is
:class:`~airflow_fc_async.core.transport_sync.SyncTransport` (one pooled, trimmed ``requests`` adapter) or
:class:`~airflow_fc_async.core.transport_async.AsyncTransport` (one ``aiohttp`` session per loop, imported on first
send, off the loop). Each call goes down once: the client asks its builder for an ``Op``, and :func:`run` /
:func:`arun` sign it (the builder's ``sign``), send it (the transport) and read the reply under the client's
:class:`~airflow_fc_async.core.http.RetryPolicy`; nothing below calls back up. :meth:`SyncSender.clone` gives a
long-running loop (an MNS receiver, the status poller) its own client like the caller's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.http import (
    Call,
    Op,
    Reply,
    RequestBuilder,
    RetryPolicy,
    handle_reply,
    request_id_of,
)
from airflow_fc_async.core.transport_async import AsyncTransport
from airflow_fc_async.core.transport_sync import SyncTransport

__all__ = [
    "AsyncSender",
    "AsyncTransport",
    "CountingSigner",
    "SyncSender",
    "SyncTransport",
    "arun",
    "run",
    "run_async",
    "run_sync",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
S = TypeVar("S", bound="_Client")


def _log_reply(call: Call, reply: Reply) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s %s %s -> %d (request id %s)",
            call.action,
            call.method,
            call.where,
            reply.status,
            request_id_of(reply.headers),
        )


def run(op: Op[T], sign: Callable[[Op[Any]], Call], transport: SyncTransport, policy: RetryPolicy) -> T:
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


async def arun(
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
    async for attempt in policy.aretrying(idempotent=op.idempotent, action=op.action, done=1):
        with attempt:
            return await _aonce(op, sign, transport)
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


async def _aonce(op: Op[T], sign: Callable[[Op[Any]], Call], transport: AsyncTransport) -> T:
    call = sign(op)
    reply = await transport.send(call)
    _log_reply(call, reply)
    return handle_reply(op, reply)


# The names before issue 18 ("async" means asyncio only as the prefix a/Async: docs/architecture.md, Names).
run_sync = run
run_async = arun


class CountingSigner:
    """A ``sign`` for :func:`run` / :func:`arun` that counts the attempts (each is signed afresh), for a
    caller whose reading of an error depends on whether an earlier attempt may have reached the server."""

    def __init__(self, sign: Callable[[Op[Any]], Call]) -> None:
        self._sign = sign
        self.attempts = 0

    def __call__(self, op: Op[Any]) -> Call:
        self.attempts += 1
        return self._sign(op)


class _Client:
    """What both client shells share: the builder they hold, the constructor's options and :meth:`clone`;
    subclasses make the transport. ``requests_class`` is the builder; ``**options`` go to it."""

    requests_class: type[RequestBuilder] = RequestBuilder

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
        self._requests = self.requests_class(endpoint, credentials, read_timeout=read_timeout, **options)
        self.endpoint = self._requests.endpoint
        """``scheme://host[:port]``, normalised."""
        self.credentials = credentials
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry = retry or RetryPolicy()
        self._proxies = dict(proxies) if proxies else None
        self._verify = verify
        self._transport = self._new_transport(endpoint, pool_size or self.requests_class.default_pool_size)

    def _new_transport(self, endpoint: str, pool_size: int) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r}, access_key_id={self.credentials.access_key_id!r})"

    @overload
    def clone(self, cls: None = None, *, min_read_timeout: float = 0.0) -> Self: ...
    @overload
    def clone(self, cls: type[S], *, min_read_timeout: float = 0.0) -> S: ...
    def clone(self, cls: type[_Client] | None = None, *, min_read_timeout: float = 0.0) -> _Client:
        """A new client with its own connections, of ``cls`` (else this class; a sync client may come from an
        async one): same endpoint, credentials, connect timeout, retry policy, proxies and TLS verification; the read
        timeout at least ``min_read_timeout`` (a long poll's). For a loop that outlives the caller's client."""
        extra: dict[str, Any] = {}
        if self._proxies:
            extra["proxies"] = self._proxies
        if self._verify is not True:
            extra["verify"] = self._verify
        return (cls or type(self))(
            self.endpoint,
            self.credentials,
            connect_timeout=self.connect_timeout,
            read_timeout=max(self.read_timeout, min_read_timeout),
            retry=self.retry,
            **extra,
        )


class SyncSender(_Client):
    """Sends its builder's requests over one pooled ``requests`` session (thread-safe); :meth:`close` when done.

    ``proxies`` (e.g. ``{"https": "http://proxy:3128"}``) replaces the proxy environment variables, which are
    not read (``trust_env`` is off to keep per-call CPU low).
    """

    _transport: SyncTransport

    def _new_transport(self, endpoint: str, pool_size: int) -> SyncTransport:
        return SyncTransport(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            proxies=self._proxies,
            verify=self._verify,
            pool_size=pool_size,
        )

    def _run(self, op: Op[Any], sign: Callable[[Op[Any]], Call] | None = None) -> Any:
        """``op``'s value, signed by the builder (or ``sign``), sent and read under the retry policy."""
        return run(op, sign or self._requests.sign, self._transport, self.retry)

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSender(_Client):
    """The asyncio twin of :class:`SyncSender` (aiohttp, imported on first use); :meth:`aclose` when done.

    ``share_pool``: the clients of this class in one loop send through one session per endpoint (see
    :class:`AsyncTransport`); off for long polls, which would hold the shared connections.
    """

    share_pool = False
    _transport: AsyncTransport

    def _new_transport(self, endpoint: str, pool_size: int) -> AsyncTransport:
        return AsyncTransport(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            proxies=self._proxies,
            verify=bool(self._verify),
            pool_size=pool_size,
            share=f"{type(self).__name__} {endpoint}" if self.share_pool else None,
        )

    async def _run(self, op: Op[Any], sign: Callable[[Op[Any]], Call] | None = None) -> Any:
        return await arun(op, sign or self._requests.sign, self._transport, self.retry)

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
