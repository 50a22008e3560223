"""The shared status poller's pure part: which FC async tasks one loop watches, when to list, what a page changes.

No I/O and no clock (callers pass ``now``, monotonic seconds). :mod:`~airflow_fc_async.core.status_poller` runs
it on an event loop.

Many triggers in one triggerer loop waiting on tasks of the same (endpoint, access key, function, qualifier)
share one ListAsyncTasks scan per tick instead of each reading its own task with GetAsyncTask. A scan lists the
tasks started since the oldest watched task (minus ``margin``), oldest first, in pages of ``page_size``; it stops
as soon as every watched task was seen, or after ``max_pages``. Each watched task whose status or events changed
is handed to its waiters. The list is an optimisation only: a trigger whose task no scan showed within its own
WaitPolicy gap reads it with GetAsyncTask, so correctness never depends on the list (list lag, a page budget too
small, a permission missing, another qualifier stored).

The tick follows the triggers' :class:`~airflow_fc_async.core.waiting.WaitPolicy` (``FleetPolicy.tick_policy``)
and never costs more requests than the triggers' own reads would::

    tick = max(clamp(growth / 8 * age, min_interval / 2, max_interval),  pages / sum_i(1 / gap_i))

``age`` is the youngest watched task's age (from its ``startedTime``), ``gap_i = WaitPolicy.delay(age_i)`` the gap
trigger ``i`` would wait before its own next GetAsyncTask, ``pages`` the requests of the last scan. With the
defaults and a fleet: every 0.5 s until the youngest task is 40 s old, then 1.25% of its age (0.75 s at 60 s,
15 s from 20 min on), so a task is seen at most one tick late, half a tick on average (the goal: p50 <= 0.5 s,
p99 <= max(1 s, 5% of the duration), with room for a start delay as long as the run). With few watchers the second
term rules: the scans then send as many requests per second as the watchers' own reads would, and each watcher
sees its task n times sooner than alone.

Requests per tick: ``ceil(k / page_size)`` ListAsyncTasks, at most ``max_pages``, where ``k`` is the number of
tasks of the function (and qualifier) started between the oldest watched task's start (minus ``margin``) and the
newest watched task's start (a scan stops once it saw every watched task); plus the fallback GetAsyncTask reads of
watched tasks no scan reached within their own gap. Per trigger: one GetAsyncTask at ``first_delay`` (it gives the
``startedTime``) and, when the list shows a failed end without an error message, one more.

Threshold: scans run while at least ``min_watchers`` (2) tasks are watched. One watcher reads its own task: a scan
would cost it the same number of requests, each a page of up to 100 tasks to send and parse instead of one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from airflow_fc_async.core.models import AsyncTask
from airflow_fc_async.core.waiting import WaitPolicy

__all__ = ["FleetPolicy", "Scan", "StatusBoard"]


@dataclass(frozen=True)
class FleetPolicy:
    """How a shared poller lists: threshold, page size and budget, window margin, tick derived from a WaitPolicy."""

    min_watchers: int = 2
    page_size: int = 100
    max_pages: int = 10
    margin: float = 1.0
    tick_scale: float = 0.5
    growth_scale: float = 0.125

    def __post_init__(self) -> None:
        if self.min_watchers < 1:
            raise ValueError(f"min_watchers must be >= 1, got {self.min_watchers}")
        if not 1 <= self.page_size <= 100:
            raise ValueError(f"page_size must be between 1 and 100, got {self.page_size}")
        if self.max_pages < 1:
            raise ValueError(f"max_pages must be >= 1, got {self.max_pages}")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if not (0 < self.tick_scale <= 1 and 0 <= self.growth_scale <= 1):
            raise ValueError("tick_scale must be in (0, 1] and growth_scale in [0, 1]")

    def tick_policy(self, wait: WaitPolicy) -> WaitPolicy:
        """The scan's schedule for watchers on ``wait``: never slower than ``wait`` itself."""
        lo = wait.min_interval * self.tick_scale
        return WaitPolicy(
            first_delay=0.0,
            min_interval=lo,
            growth=wait.growth * self.growth_scale,
            max_interval=max(lo, wait.max_interval),
        )

    def max_requests(self, tasks_in_window: int) -> int:
        """ListAsyncTasks requests of one scan over ``tasks_in_window`` tasks (the docstring's formula)."""
        return min(self.max_pages, max(1, math.ceil(tasks_in_window / self.page_size)))


@dataclass
class _Watched:
    started_ms: int
    registered: float
    age0: float
    tick: WaitPolicy
    own: WaitPolicy
    status: str | None
    events: int
    refs: int = 1
    seen_at: float | None = None


def _state(task: AsyncTask) -> tuple[str, int]:
    return task.status.value, len(task.events)


@dataclass
class Scan:
    """One tick's walk through the list: feed each listed task to :meth:`offer`, stop when :meth:`done`."""

    board: StatusBoard
    now: float
    unseen: set[str]
    budget: int
    listed: int = 0

    def offer(self, task: AsyncTask) -> bool:
        """Record a listed task; True when it is watched and changed since the last known state (dispatch it)."""
        self.listed += 1
        watched = self.board._watched.get(task.task_id)
        if watched is None:
            return False
        self.unseen.discard(task.task_id)
        watched.seen_at = self.now
        return self.board._advance(watched, task)

    def done(self) -> bool:
        """Every watched task seen, or the page budget spent."""
        return not self.unseen or self.listed >= self.budget

    @property
    def pages(self) -> int:
        """Requests this scan needed so far (a last partial page counts as one)."""
        return max(1, math.ceil(self.listed / self.board.policy.page_size))


@dataclass
class StatusBoard:
    """The watched tasks of one (endpoint, access key, function, qualifier) in one loop, and what was seen."""

    policy: FleetPolicy = field(default_factory=FleetPolicy)
    _watched: dict[str, _Watched] = field(default_factory=dict)

    def add(self, task: AsyncTask, wait: WaitPolicy, now: float, wall: float) -> bool:
        """Watch ``task`` (as its trigger last read it) with its trigger's ``wait`` policy; ``wall`` is epoch
        seconds. False when the task carries no ``startedTime`` (the list window cannot be placed: not watched)."""
        if task.started_time is None:
            return False
        found = self._watched.get(task.task_id)
        if found is not None:
            found.refs += 1
            self._advance(found, task)
            return True
        started_ms = int(task.started_time.timestamp() * 1000)
        status, events = _state(task)
        self._watched[task.task_id] = _Watched(
            started_ms=started_ms,
            registered=now,
            age0=max(0.0, wall - started_ms / 1000.0),
            tick=self.policy.tick_policy(wait),
            own=wait,
            status=status,
            events=events,
        )
        return True

    def remove(self, task_id: str) -> None:
        found = self._watched.get(task_id)
        if found is None:
            return
        found.refs -= 1
        if found.refs <= 0:
            del self._watched[task_id]

    def __len__(self) -> int:
        return len(self._watched)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._watched

    @property
    def listing(self) -> bool:
        """Whether a shared scan is worth it: at least ``min_watchers`` tasks watched."""
        return len(self._watched) >= self.policy.min_watchers

    def window_ms(self) -> int | None:
        """``startedTimeBegin`` of the next scan (epoch ms): the oldest watched start minus the margin."""
        if not self._watched:
            return None
        oldest = min(w.started_ms for w in self._watched.values())
        return max(0, oldest - int(self.policy.margin * 1000))

    def next_tick(self, now: float, pages: int = 1) -> float:
        """Seconds from one scan's start to the next (the docstring's formula): the smallest gap any watcher's
        tick policy asks for, but no more than ``pages`` requests per the watchers' own reads."""
        if not self._watched:
            return math.inf
        fast, rate = math.inf, 0.0
        for w in self._watched.values():
            age = w.age0 + max(0.0, now - w.registered)
            fast = min(fast, w.tick.delay(age, 1))
            rate += 1.0 / w.own.delay(age, 1)
        return max(fast, pages / rate)

    def scan(self, now: float) -> Scan:
        return Scan(self, now, set(self._watched), self.policy.max_pages * self.policy.page_size)

    def observed(self, task: AsyncTask) -> None:
        """A trigger read its task itself (GetAsyncTask): later scans dispatch only what is newer."""
        found = self._watched.get(task.task_id)
        if found is not None:
            self._advance(found, task)

    def seen_since(self, task_id: str, since: float) -> bool:
        """Whether a scan that started at or after ``since`` showed the task (unchanged unless dispatched)."""
        found = self._watched.get(task_id)
        return found is not None and found.seen_at is not None and found.seen_at >= since

    def _advance(self, watched: _Watched, task: AsyncTask) -> bool:
        """Take ``task``'s state when it is newer (more events, or a new status at the same count)."""
        status, events = _state(task)
        newer = events > watched.events or (events == watched.events and status != watched.status)
        if newer:
            watched.status, watched.events = status, events
        return newer
