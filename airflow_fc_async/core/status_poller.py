"""One shared status poller per (endpoint, access key id, function, qualifier) per event loop.

Triggers that follow FC async tasks register the task they read once (:func:`watch_task`) and then wait on
their :class:`TaskWatch`: ``await watch.wait(gap)`` returns a newer snapshot of the task as soon as a shared
ListAsyncTasks scan shows one; else, after ``gap`` seconds, :data:`Sighting.UNCHANGED` when a scan showed the task
as last known since the trigger last heard of it, or :data:`Sighting.DUE` when none did (the trigger then reads the
task itself, GetAsyncTask, on its WaitPolicy schedule, so a task the list misses is still followed); and at once
:data:`Sighting.GONE` when a scan of running tasks (behind a push) passed it: it left Running, read it.

The poller is an asyncio task on the triggers' loop, started when the registry holds at least
``FleetPolicy.min_watchers`` (2) watched tasks for its key and stopped when fewer remain. What it lists, when, and the
requests it costs are in :mod:`airflow_fc_async.core.status_board` (per tick: ``ceil(k / 100)`` ListAsyncTasks,
``k`` = tasks started since the oldest watched one, at most ``max_pages``; plus the fallback reads). It owns a
copy of the first caller's client (triggers close theirs). Nothing here imports Airflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.models import AsyncTask
from airflow_fc_async.core.policies import LONG_POLL_READ_TIMEOUT, PERMANENT_ERROR_PAUSE, error_pause
from airflow_fc_async.core.status_board import FleetPolicy, StatusBoard
from airflow_fc_async.core.waiting import WaitPolicy

if TYPE_CHECKING:
    from airflow_fc_async.core.fc import AsyncFcClient

__all__ = ["Sighting", "TaskWatch", "poller_stats", "reset_pollers", "watch_task"]

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str]


@dataclass
class _Fleet:
    loop: asyncio.AbstractEventLoop
    key: Key
    board: StatusBoard
    watches: dict[str, list[TaskWatch]] = field(default_factory=dict)
    poller: _Poller | None = None


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fleets: dict[tuple[int, Key], _Fleet] = {}
        self.stats: dict[str, int] = {}

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n


_REGISTRY = _Registry()


def poller_stats() -> dict[str, int]:
    """What the pollers of this process did: ``scans``, ``list_requests``, ``listed``, ``dispatched``, ``errors``,
    ``scan_ms`` (total) and ``scan_ms_max`` (wall time of the scans)."""
    with _REGISTRY.lock:
        return dict(_REGISTRY.stats)


def reset_pollers() -> None:
    """Zero the counters (tests). Live pollers stop when their watchers are gone."""
    with _REGISTRY.lock:
        _REGISTRY.stats.clear()


class Sighting(enum.Enum):
    """What :meth:`TaskWatch.wait` learnt when it has no newer snapshot to hand over."""

    UNCHANGED = (
        "unchanged"  # a scan since the trigger last heard of the task showed it as last known: no read
    )
    DUE = "due"  # no scan showed it within the gap: the trigger reads it itself
    GONE = "gone"  # a scan of running tasks passed it: it left Running, the trigger reads it


class TaskWatch:
    """One trigger's registration of one task; :meth:`close` it when the trigger ends."""

    def __init__(self, fleet: _Fleet, task_id: str) -> None:
        self._fleet = fleet
        self.task_id = task_id
        self._latest: AsyncTask | Sighting | None = None
        self._future: asyncio.Future[AsyncTask | Sighting | None] | None = None
        self._since = time.monotonic()  # when the trigger last heard of its task (a scan or its own read)
        self.closed = False

    def _deliver(self, task: AsyncTask | Sighting) -> None:
        if self._future is not None and not self._future.done():
            self._future.set_result(task)
        elif not (task is Sighting.GONE and isinstance(self._latest, AsyncTask)):
            self._latest = task  # a newer snapshot supersedes an unread one (it holds all the events)

    async def wait(self, gap: float) -> AsyncTask | Sighting:
        """A newer snapshot from a shared scan, or what the scans said of the task within ``gap`` seconds."""
        got = await self.next(gap)
        if got is None:
            got = Sighting.UNCHANGED if self.seen_since(self._since) else Sighting.DUE
        if got is not Sighting.DUE:
            self._since = time.monotonic()
        return got

    async def next(self, timeout: float) -> AsyncTask | Sighting | None:
        """A newer snapshot from a shared scan (or :data:`Sighting.GONE`), or None after ``timeout`` seconds."""
        if self._latest is not None:
            task, self._latest = self._latest, None
            return task
        loop = self._fleet.loop
        future: asyncio.Future[AsyncTask | Sighting | None] = loop.create_future()
        self._future = future

        def expire() -> None:
            if not future.done():
                future.set_result(None)

        handle = loop.call_later(max(0.0, timeout), expire)
        try:
            return await future
        finally:
            handle.cancel()
            self._future = None

    def seen_since(self, since: float) -> bool:
        """Whether a scan started at or after ``since`` (monotonic) showed the task."""
        return self._fleet.board.seen_since(self.task_id, since)

    def observed(self, task: AsyncTask) -> None:
        """The trigger read the task itself: scans dispatch only newer states."""
        self._since = time.monotonic()
        self._fleet.board.observed(task)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        fleet = self._fleet
        with _REGISTRY.lock:
            fleet.board.remove(self.task_id)
            peers = fleet.watches.get(self.task_id, [])
            if self in peers:
                peers.remove(self)
            if not peers:
                fleet.watches.pop(self.task_id, None)
            if not fleet.watches and fleet.poller is None:
                _REGISTRY.fleets.pop((id(fleet.loop), fleet.key), None)
        if fleet.poller is not None and not fleet.board.listing:
            fleet.poller.wake.set()


def poller_key(client: AsyncFcClient, function_name: str, qualifier: str) -> Key:
    return (client.endpoint, client.credentials.access_key_id, function_name, qualifier)


async def watch_task(
    client: AsyncFcClient,
    function_name: str,
    task: AsyncTask,
    wait: WaitPolicy,
    *,
    qualifier: str = "LATEST",
    policy: FleetPolicy | None = None,
    push: bool = False,
) -> TaskWatch | None:
    """Register ``task`` (as last read) with this loop's shared poller for its function; None when it cannot be
    watched (no ``startedTime``). ``policy`` applies when this call creates the key's board; ``push``: the task's
    destination record ends its wait (the scan is the fallback, see ``status_board``)."""
    loop = asyncio.get_running_loop()
    key = poller_key(client, function_name, qualifier)
    with _REGISTRY.lock:
        fleet = _REGISTRY.fleets.get((id(loop), key))
        if fleet is None or fleet.loop is not loop:
            fleet = _REGISTRY.fleets[(id(loop), key)] = _Fleet(
                loop, key, StatusBoard(policy or FleetPolicy())
            )
        if not fleet.board.add(task, wait, time.monotonic(), time.time(), push=push):
            if not fleet.watches and fleet.poller is None:
                _REGISTRY.fleets.pop((id(loop), key), None)
            return None
        watch = TaskWatch(fleet, task.task_id)
        fleet.watches.setdefault(task.task_id, []).append(watch)
        if fleet.board.listing and fleet.poller is None:
            fleet.poller = _Poller(fleet, client)
    return watch


class _Poller:
    def __init__(self, fleet: _Fleet, template: AsyncFcClient) -> None:
        self.fleet = fleet
        self.client: AsyncFcClient = template.clone(min_read_timeout=LONG_POLL_READ_TIMEOUT)
        self.wake = asyncio.Event()
        self.task = fleet.loop.create_task(self._run(), name=f"fc-status-poller-{fleet.key[2]}")

    def _stop_if_idle(self) -> bool:
        fleet = self.fleet
        with _REGISTRY.lock:
            if fleet.board.listing:
                return False
            fleet.poller = None
            if not fleet.watches:
                _REGISTRY.fleets.pop((id(fleet.loop), fleet.key), None)
            return True

    async def _run(self) -> None:
        errors = 0
        try:
            while not self._stop_if_idle():
                start = time.monotonic()
                self.wake.clear()  # here, not in the pause: a watcher that leaves during the scan must wake it
                try:
                    pages = await self._scan(start)
                    errors = 0
                    pause = self.fleet.board.next_tick(time.monotonic(), pages) - (time.monotonic() - start)
                except FcError as exc:
                    errors += 1
                    with _REGISTRY.lock:
                        _REGISTRY.count("errors")
                    if exc.retryable:
                        pause = error_pause(errors)
                        log.warning("listing FC tasks of %s failed (%s); retrying", self.fleet.key[2], exc)
                    else:
                        pause = PERMANENT_ERROR_PAUSE
                        log.warning(
                            "listing FC tasks of %s failed (%s): each trigger reads its own task for %.0f s",
                            self.fleet.key[2],
                            exc,
                            pause,
                        )
                # an empty board has no tick: look again soon (a watcher may join without waking the poller)
                await self._pause(pause if math.isfinite(pause) else 1.0)
        finally:
            with _REGISTRY.lock:
                if self.fleet.poller is self:
                    self.fleet.poller = None
            await self.client.aclose()

    async def _pause(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    async def _scan(self, start: float) -> int:
        """One walk through the list; the requests it took."""
        fleet = self.fleet
        scan = fleet.board.scan(start)
        if not scan.passes:
            return 0
        changed: list[AsyncTask] = []
        for walk in scan.passes:
            scan.enter(walk)
            tasks: Any = self.client.list_async_tasks(
                fleet.key[2],
                qualifier=fleet.key[3],
                status=walk.status,
                started_after=datetime.fromtimestamp(walk.begin_ms / 1000.0, tz=UTC),
                newest_first=False,
                page_size=fleet.board.policy.page_size,
            )
            complete = True
            async with contextlib.aclosing(tasks):
                async for task in tasks:
                    if scan.offer(task):
                        changed.append(task)
                    if scan.done():  # every task it looks for seen, or the budget spent
                        complete = False
                        break
            scan.leave(complete)
        gone = scan.gone()
        took = round((time.monotonic() - start) * 1000)
        with _REGISTRY.lock:
            _REGISTRY.count("scans")
            _REGISTRY.count("scan_ms", took)
            _REGISTRY.stats["scan_ms_max"] = max(_REGISTRY.stats.get("scan_ms_max", 0), took)
            _REGISTRY.count("list_requests", scan.pages)
            _REGISTRY.count("listed", scan.listed)
            _REGISTRY.count("dispatched", len(changed))
            _REGISTRY.count("gone", len(gone))
        for task in changed:
            for watch in list(fleet.watches.get(task.task_id, ())):
                watch._deliver(task)
        for task_id in gone:
            for watch in list(fleet.watches.get(task_id, ())):
                watch._deliver(Sighting.GONE)
        return scan.pages
