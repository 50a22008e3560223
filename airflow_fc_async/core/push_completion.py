"""Completion by push: a task's destination record ends its wait; the status poll stays as a slow fallback.

FC sends a record to the function's destination when an async task ends (``onSuccess`` / ``onFailure`` of the
async invoke config). When both are MNS queues every end produces one, and the process's shared receiver of the
queue (:mod:`~airflow_fc_async.core.destination_receiver`, one per process and queue) sees it within one long poll.
A waiter then reads its task once (GetAsyncTask) to confirm the terminal status; until then it polls on
:meth:`WaitPolicy.behind_push <airflow_fc_async.core.waiting.WaitPolicy.behind_push>` (a record may be lost, late,
or taken first by another consumer of the queue). The record is only looked at, never taken: its message is handed
back at once for whoever consumes the queue (the trigger's own ``destination_queue`` claim, a dead-letter job).

The route (which queues) comes from GetAsyncInvokeConfig, read once per (endpoint, access key, function, qualifier)
per process and kept for ``ROUTE_TTL`` seconds (``ERROR_TTL`` after a failed read); the waiters of one loop that
miss the cache together share one request. Nothing here imports Airflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_fc_async.core.destination_receiver import (
    ClaimedRecord,
    aclaim_destination_record,
    give_back_claim,
    watch_destination_record,
)
from airflow_fc_async.core.endpoints import parse_mns_queue_arn
from airflow_fc_async.core.errors import FcError

if TYPE_CHECKING:
    from airflow_fc_async.core.fc import AsyncFcClient, FcClient
    from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient
    from airflow_fc_async.core.models import AsyncInvokeConfig, DestinationRecord

__all__ = [
    "AsyncRecordSignal",
    "PushRoute",
    "RecordSignal",
    "apush_route",
    "push_route",
    "reset_routes",
    "route_reads",
]

log = logging.getLogger(__name__)

ROUTE_TTL = 600.0
ERROR_TTL = 60.0
LONGEST_WAIT = 30 * 86400.0  # a record waiter without a deadline still needs a finite timeout

T = TypeVar("T")
Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class PushRoute:
    """The MNS queues a function's records go to: one or two names (``onSuccess``, ``onFailure``)."""

    queues: tuple[str, ...]

    @classmethod
    def from_config(cls, config: AsyncInvokeConfig | None) -> PushRoute | None:
        """The route when both destinations are MNS queues (then every end sends a record), else None."""
        if config is None or not config.on_success or not config.on_failure:
            return None
        parsed = [parse_mns_queue_arn(arn) for arn in (config.on_success, config.on_failure)]
        names = [p[2] for p in parsed if p is not None]
        if len(names) != 2:
            return None
        return cls(tuple(dict.fromkeys(names)))


class _Routes:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cache: dict[Key, tuple[float, PushRoute | None]] = {}
        self.pending: dict[tuple[int, Key], asyncio.Future[PushRoute | None]] = {}
        self.reads = 0

    def get(self, key: Key) -> tuple[bool, PushRoute | None]:
        with self.lock:
            found = self.cache.get(key)
            if found is None or found[0] < time.monotonic():
                return False, None
            return True, found[1]

    def put(self, key: Key, route: PushRoute | None, ttl: float) -> None:
        with self.lock:
            self.cache[key] = (time.monotonic() + ttl, route)


_ROUTES = _Routes()


def reset_routes() -> None:
    """Forget every cached route (tests; a changed async invoke config is otherwise seen after ``ROUTE_TTL``)."""
    with _ROUTES.lock:
        _ROUTES.cache.clear()
        _ROUTES.reads = 0


def route_reads() -> int:
    """GetAsyncInvokeConfig requests this process sent for routes (tests: read once per function)."""
    with _ROUTES.lock:
        return _ROUTES.reads


def _key(client: AsyncFcClient | FcClient, function_name: str, qualifier: str) -> Key:
    return (client.endpoint, client.credentials.access_key_id, function_name, qualifier)


def _settle(key: Key, config: AsyncInvokeConfig | FcError | None) -> PushRoute | None:
    if isinstance(config, FcError):
        log.info("reading the async invoke config of %s failed (%s): status polling only", key[2], config)
        _ROUTES.put(key, None, ERROR_TTL)
        return None
    route = PushRoute.from_config(config)
    _ROUTES.put(key, route, ROUTE_TTL)
    return route


async def apush_route(
    client: AsyncFcClient, function_name: str, qualifier: str = "LATEST"
) -> PushRoute | None:
    """The function's push route (cached; see the module docstring), or None: then only the poll ends a wait."""
    key = _key(client, function_name, qualifier)
    hit, route = _ROUTES.get(key)
    if hit:
        return route
    loop = asyncio.get_running_loop()
    with _ROUTES.lock:
        pending = _ROUTES.pending.get((id(loop), key))
        if pending is None:
            pending = _ROUTES.pending[(id(loop), key)] = loop.create_future()
            owner = True
            _ROUTES.reads += 1
        else:
            owner = False
    if not owner:
        return await asyncio.shield(pending)
    try:
        try:
            config: AsyncInvokeConfig | FcError | None = await client.get_async_invoke_config(
                function_name, qualifier=qualifier
            )
        except FcError as exc:
            config = exc
        route = _settle(key, config)
        pending.set_result(route)
        return route
    except BaseException:
        pending.set_result(None)
        raise
    finally:
        with _ROUTES.lock:
            _ROUTES.pending.pop((id(loop), key), None)


def push_route(client: FcClient, function_name: str, qualifier: str = "LATEST") -> PushRoute | None:
    """The blocking twin of :func:`apush_route`."""
    key = _key(client, function_name, qualifier)
    hit, route = _ROUTES.get(key)
    if hit:
        return route
    with _ROUTES.lock:
        _ROUTES.reads += 1
    try:
        config: AsyncInvokeConfig | FcError | None = client.get_async_invoke_config(
            function_name, qualifier=qualifier
        )
    except FcError as exc:
        config = exc
    return _settle(key, config)


class AsyncRecordSignal:
    """Set when the record of ``request_id`` arrives on any queue of ``route`` (this loop's shared receivers)."""

    def __init__(
        self,
        client: AsyncMnsClient,
        route: PushRoute,
        request_id: str,
        *,
        function_name: str,
        timeout: float | None = None,
        claim_queue: str | None = None,
        hold_seconds: int = 120,
    ) -> None:
        self.request_id = request_id
        self.record: DestinationRecord | None = None
        self.claim: ClaimedRecord | None = None
        """The record taken from ``claim_queue`` (held for ``hold_seconds``): the caller takes it
        (:meth:`take_claim`), stores it, then acks; one not taken goes back to the dispatch at :meth:`aclose`."""
        self._client = client
        self._event = asyncio.Event()
        wait = min(LONGEST_WAIT, timeout) if timeout is not None else LONGEST_WAIT
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(
                self._watch(client, queue, function_name, wait, queue == claim_queue, hold_seconds),
                name=f"fc-record-{request_id}",
            )
            for queue in route.queues
        ]

    async def _watch(
        self, client: AsyncMnsClient, queue: str, function_name: str, timeout: float, take: bool, hold: int
    ) -> None:
        try:
            claim = await aclaim_destination_record(
                client,
                queue,
                self.request_id,
                timeout=timeout,
                delete_on_read=take,
                hold_seconds=hold,
                function_name=function_name,
            )
        except FcError as exc:
            log.warning(
                "waiting for the record of %s on %s failed (%s): polling only", self.request_id, queue, exc
            )
            return
        if claim is not None:
            self.record = claim.record
            if take:
                self.claim = claim
            self._event.set()

    @property
    def arrived(self) -> bool:
        return self._event.is_set()

    async def wait(self, timeout: float) -> bool:
        """Whether the record arrived, waiting at most ``timeout`` seconds for it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout=max(0.0, timeout))
        return self.arrived

    async def first(self, awaitable: Awaitable[T]) -> tuple[T | None, bool]:
        """``awaitable``'s result unless the record arrives first (then it is cancelled): (result, arrived)."""
        job: asyncio.Future[T] = asyncio.ensure_future(awaitable)
        if not self.arrived:
            signal: asyncio.Future[Any] = asyncio.ensure_future(self._event.wait())
            both: set[asyncio.Future[Any]] = {job, signal}
            try:
                await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            except BaseException:  # the waiter was cancelled: so is what it waited for
                job.cancel()
                raise
            finally:
                signal.cancel()
        if job.done():
            return job.result(), self.arrived
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        return None, True

    def take_claim(self) -> ClaimedRecord | None:
        """The claim, now the caller's to store and ack (None: none was taken from ``claim_queue``)."""
        claim, self.claim = self.claim, None
        return claim

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.claim is not None:  # never taken: a later claim of this request id gets the live handle
            give_back_claim(self._client, self.claim)
            self.claim = None


class RecordSignal:
    """The blocking twin of :class:`AsyncRecordSignal` (the process's receiver threads): sets ``wake`` as well
    when the record arrives, so a waiter sleeping on that event wakes."""

    def __init__(
        self,
        client: MnsClient,
        route: PushRoute,
        request_id: str,
        *,
        function_name: str,
        wake: threading.Event | None = None,
    ) -> None:
        self.request_id = request_id
        self.record: DestinationRecord | None = None
        self._arrived = threading.Event()
        self._wake = wake
        self._leaves = [
            watch_destination_record(client, queue, request_id, self._on_record, function_name=function_name)
            for queue in route.queues
        ]

    def _on_record(self, result: ClaimedRecord | BaseException) -> None:
        if isinstance(result, BaseException):
            log.warning("waiting for the record of %s failed (%s): polling only", self.request_id, result)
            return
        self.record = result.record
        self._arrived.set()
        if self._wake is not None:
            self._wake.set()

    @property
    def arrived(self) -> bool:
        return self._arrived.is_set()

    def close(self) -> None:
        for leave in self._leaves:
            leave()
        self._leaves = []
