"""The one wait policy: the blocking operator loop, the sensor and the trigger all ask it when to look next.

A read soon after the start catches short tasks; then the gap grows in proportion to the time already waited (so
the detection lag stays a small fraction of the task's duration), never below ``min_interval`` nor above
``max_interval``; ``max_wait`` is the deadline.

Status reads for a task that ends after ``T`` seconds (first read at ``f``, gap ``g(t) = clamp(growth * t, lo, hi)``)::

    reads(T) <= 1 + (t1 - f) / lo + ln(t2 / t1) / ln(1 + growth) + (T - t2) / hi + 1
    where t1 = lo / growth (the gap starts to grow) and t2 = hi / growth (the gap reaches the cap).

With the defaults (f=1, lo=1, growth=0.1, hi=15) a 10 s task costs about 10 reads and is seen at most 1 s late;
a 60 s task about 29 reads (bound 31), at most 6 s late; a 1 h task about 269 reads, at most 15 s late.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from airflow_fc_async.core.policies import bounded, check_bounds

__all__ = ["PUSH_FIRST_DELAY", "PUSH_GROWTH", "PUSH_MIN_INTERVAL", "Deadline", "WaitPolicy"]

PUSH_MIN_INTERVAL = 1.5
PUSH_GROWTH = 0.35
"""Behind a push, a fleet's shared scan ticks at ``growth / 8`` of the youngest task's age (4.4%): the tick plus the
scan itself stays within P1's lag goal of 5% (a tick of the whole 5% left the scan no room; figures in
docs/performance.md, P1-push)."""
PUSH_FIRST_DELAY = 4.0
"""The fallback's first own read: a fleet's first shared scans (10 pages for 1000 tasks) can take seconds under
load, and an own read before them costs a request per task; a task that ends sooner is seen by its record."""


@dataclass(frozen=True)
class WaitPolicy:
    """When to read a task's status next. Pure: it never sleeps and never reads a clock."""

    first_delay: float = bounded(1.0, low=0)
    min_interval: float = bounded(1.0, above=0)
    growth: float = bounded(0.1, low=0)
    max_interval: float = 15.0
    max_wait: float | None = bounded(None, above=0)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.max_interval < self.min_interval:
            raise ValueError(
                f"poll interval (max_interval={self.max_interval}) must be >= min_interval={self.min_interval}"
            )

    @classmethod
    def for_poll_interval(cls, poll_interval: float, max_wait: float | None = None) -> WaitPolicy:
        """The policy behind an operator's ``poll_interval``: back off from about 1 s up to it."""
        lo = min(1.0, poll_interval)
        return cls(first_delay=lo, min_interval=lo, max_interval=poll_interval, max_wait=max_wait)

    def behind_push(self) -> WaitPolicy:
        """This policy as the fallback behind a push signal (the destination record ends the wait, see
        ``core.push_completion``): it only has to catch a lost or late record, so it starts later and grows 3.5
        times as fast (first read at ``PUSH_FIRST_DELAY``, then from ``PUSH_MIN_INTERVAL``, growth ``PUSH_GROWTH``;
        same cap and deadline). A shared scan's tick (``growth / 8`` of the age, from half the minimum) plus the
        scan then stays within P1's lag goal, ``max(1 s, 5% of the duration)``; a lone waiter's own reads lag up to
        35% of the age (capped as before)."""
        lo = min(max(self.min_interval, PUSH_MIN_INTERVAL), self.max_interval)
        first = min(max(self.first_delay, PUSH_FIRST_DELAY), self.max_interval)
        return replace(self, first_delay=first, min_interval=lo, growth=max(self.growth, PUSH_GROWTH))

    def delay(self, elapsed: float, reads: int = 0) -> float:
        """Seconds to wait before the next read, ``elapsed`` seconds after the start, after ``reads`` reads."""
        if reads == 0:
            return self.first_delay
        return min(self.max_interval, max(self.min_interval, self.growth * elapsed))

    def max_reads(self, duration: float) -> int:
        """Upper bound of status reads for a task that ends after ``duration`` seconds (the formula above)."""
        lo, hi, f = self.min_interval, self.max_interval, self.first_delay
        if self.growth == 0:
            return 2 + math.ceil(max(0.0, duration - f) / lo)
        t1, t2 = lo / self.growth, hi / self.growth
        reads = 1.0
        reads += max(0.0, min(duration, t1) - f) / lo
        if duration > t1:
            reads += math.log(min(duration, t2) / max(t1, f)) / math.log1p(self.growth) + 1
        if duration > t2:
            reads += (duration - t2) / hi
        return math.ceil(reads) + 1

    def deadline(self, start: float | None = None) -> Deadline:
        return Deadline(self.max_wait, time.monotonic() if start is None else start)


@dataclass(frozen=True)
class Deadline:
    """The end of a wait that started at ``start`` (monotonic seconds); no limit when ``seconds`` is None."""

    seconds: float | None
    start: float

    def elapsed(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.start

    def remaining(self, now: float | None = None) -> float:
        if self.seconds is None:
            return math.inf
        return max(0.0, self.seconds - self.elapsed(now))

    def expired(self, now: float | None = None) -> bool:
        return self.remaining(now) <= 0

    def sleep_for(self, policy: WaitPolicy, reads: int, now: float | None = None) -> float:
        """The next sleep: the policy's delay, cut short by the deadline."""
        return min(policy.delay(self.elapsed(now), reads), self.remaining(now))
