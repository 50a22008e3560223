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

Behind a push (every watcher's end comes with its destination record, ``core.push_completion``) the scan is only the
fallback for a lost record, so three things change:

- it lists only ``Running`` tasks (FC's ``status`` filter): a fleet's ended tasks drop out of the pages, so a scan
  costs ``ceil(running / 100)`` requests, not ``ceil(started / 100)``; a watched task last known Running that a scan
  passed without seeing has left Running, and its trigger reads it (:meth:`Scan.gone`);
- the cap counts the watchers' reads at the tick's own pace, not their slow behind-push gaps (at most one request
  per watcher per tick), so a fleet's tail keeps the fleet's lag goal;
- a last watcher that a scan already saw keeps being listed alone (the fleet's tail; a task watched alone from the
  start still reads its own task on its behind-push gaps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from airflow_fc_async.core.models import AsyncTask
from airflow_fc_async.core.policies import bounded, check_bounds
from airflow_fc_async.core.waiting import WaitPolicy

__all__ = ["FleetPolicy", "Pass", "Scan", "StatusBoard"]


@dataclass(frozen=True)
class FleetPolicy:
    """How a shared poller lists: threshold, page size and budget, window margin, tick derived from a WaitPolicy."""

    min_watchers: int = bounded(2, low=1)
    page_size: int = bounded(100, low=1, high=100)
    max_pages: int = bounded(10, low=1)
    margin: float = bounded(1.0, low=0)
    tick_scale: float = bounded(0.5, above=0, high=1)
    growth_scale: float = bounded(0.125, low=0, high=1)

    def __post_init__(self) -> None:
        check_bounds(self)

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
    push: bool = False
    refs: int = 1
    seen_at: float | None = None


RUNNING, ENQUEUED = "Running", "Enqueued"
"""The statuses a scan behind a push lists (FC's ListAsyncTasks ``status`` filter)."""


def _state(task: AsyncTask) -> tuple[str, int]:
    return task.status.value, len(task.events)


@dataclass
class Pass:
    """One ListAsyncTasks walk of a scan: the tasks in ``status`` (None: every status) started from ``begin_ms``."""

    status: str | None
    begin_ms: int
    want: set[str]
    listed: int = 0
    passed_ms: float = 0.0  # every listed task started before this was passed (inf: the list ended)


@dataclass
class Scan:
    """One tick's walks through the list: for each of :attr:`passes`, :meth:`enter` it, feed each listed task to
    :meth:`offer` until :meth:`done`, then :meth:`leave` it."""

    board: StatusBoard
    now: float
    unseen: set[str]
    budget: int
    passes: list[Pass] = field(default_factory=list)
    listed: int = 0
    requests: int = 0
    _pass: Pass | None = None

    def enter(self, walk: Pass) -> None:
        walk.want &= self.unseen
        self._pass = walk

    def offer(self, task: AsyncTask) -> bool:
        """Record a listed task; True when it is watched and changed since the last known state (dispatch it)."""
        self.listed += 1
        walk = self._pass
        if walk is not None:
            walk.listed += 1
            if task.started_time is not None:
                walk.passed_ms = task.started_time.timestamp() * 1000
            walk.want.discard(task.task_id)
        watched = self.board._watched.get(task.task_id)
        if watched is None:
            return False
        self.unseen.discard(task.task_id)
        watched.seen_at = self.now
        return self.board._advance(watched, task)

    def done(self) -> bool:
        """The walk saw every task it looks for, or spent the page budget."""
        walk = self._pass
        if walk is None:
            return not self.unseen or self.listed >= self.budget
        return not walk.want or walk.listed >= self.budget

    def leave(self, complete: bool) -> None:
        """The walk ended; ``complete``: the list ended (not :meth:`done`)."""
        walk = self._pass
        if walk is not None:
            self.requests += max(1, math.ceil(walk.listed / self.board.policy.page_size))
            if complete:
                walk.passed_ms = math.inf
        self._pass = None

    @property
    def pages(self) -> int:
        """Requests this scan needed so far (a last partial page counts as one)."""
        if self.requests:
            return self.requests
        return max(1, math.ceil(self.listed / self.board.policy.page_size))

    def gone(self) -> list[str]:
        """Behind a push, the watched tasks last known in a listed status (Enqueued, Running) that every walk
        covering their start passed without seeing: they left those statuses (ended, or FC retries them), so
        their triggers read them. Their last known status is forgotten, so that read is taken as news."""
        filtered = {walk.status for walk in self.passes if walk.status is not None}
        left = []
        for task_id in self.unseen:
            watched = self.board._watched.get(task_id)
            if watched is None or watched.status not in filtered:
                continue
            covering = [walk for walk in self.passes if walk.begin_ms <= watched.started_ms]
            if covering and all(watched.started_ms < walk.passed_ms for walk in covering):
                watched.status = None
                left.append(task_id)
        return left


@dataclass
class StatusBoard:
    """The watched tasks of one (endpoint, access key, function, qualifier) in one loop, and what was seen."""

    policy: FleetPolicy = field(default_factory=FleetPolicy)
    _watched: dict[str, _Watched] = field(default_factory=dict)

    def add(self, task: AsyncTask, wait: WaitPolicy, now: float, wall: float, *, push: bool = False) -> bool:
        """Watch ``task`` (as its trigger last read it) with its trigger's ``wait`` policy; ``wall`` is epoch
        seconds; ``push``: its record ends the wait, the scan is its fallback. False when the task carries no
        ``startedTime`` (the list window cannot be placed: not watched)."""
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
            push=push,
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
        """Whether a shared scan is worth it: at least ``min_watchers`` tasks watched, or a fleet's last task
        behind a push (seen by a scan before)."""
        if len(self._watched) >= self.policy.min_watchers:
            return True
        return len(self._watched) == 1 and all(
            w.push and w.seen_at is not None for w in self._watched.values()
        )

    def window_ms(self, status: str | None = None) -> int | None:
        """``startedTimeBegin`` of the next scan (epoch ms): the oldest watched start minus the margin; with
        ``status`` Enqueued, the oldest of the tasks last known Enqueued."""
        starts = [w.started_ms for w in self._watched.values() if status != ENQUEUED or w.status == ENQUEUED]
        if not starts:
            return None
        return max(0, min(starts) - int(self.policy.margin * 1000))

    def next_tick(self, now: float, pages: int = 1) -> float:
        """Seconds from one scan's start to the next (the docstring's formula): the smallest gap any watcher's
        tick policy asks for, but no more than ``pages`` requests per the watchers' own reads."""
        if not self._watched:
            return math.inf
        fast, rate = math.inf, 0.0
        for w in self._watched.values():
            age = w.age0 + max(0.0, now - w.registered)
            tick = w.tick.delay(age, 1)
            fast = min(fast, tick)
            rate += 1.0 / (tick if w.push else w.own.delay(age, 1))
        return max(fast, pages / rate)

    def scan(self, now: float) -> Scan:
        """The next tick's scan. Behind a push (every watcher's record ends its wait) it lists only the statuses
        the watchers were last seen in: Enqueued (when any was) and Running; else every status."""
        watched = self._watched.values()
        statuses: list[str | None] = [None]
        if watched and all(w.push for w in watched):
            statuses = [ENQUEUED, RUNNING] if any(w.status == ENQUEUED for w in watched) else [RUNNING]
        passes = []
        for status in statuses:
            begin = self.window_ms(status)
            if begin is not None:
                want = {k for k, w in self._watched.items() if status != ENQUEUED or w.status == ENQUEUED}
                passes.append(Pass(status, begin, want))
        return Scan(self, now, set(self._watched), self.policy.max_pages * self.policy.page_size, passes)

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
