"""SharePolicy: how a destination receiver shares an MNS queue with other consumers (holds of foreign messages,
receive back-off, memory sizes); :mod:`~airflow_fc_async.core.destinations` applies it.

Apart from :mod:`~airflow_fc_async.core.policies`, whose constants a DAG parse needs (argument defaults), so that a
parse builds no dataclass (P3); ``policies.SharePolicy`` still names it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from airflow_fc_async.core.policies import MAX_HOLD_SECONDS, bounded, capped_doubling, check_bounds

__all__ = ["SharePolicy"]


@dataclass(frozen=True)
class SharePolicy:
    """How a receiver shares a queue: holds of foreign messages, receive back-off, memory sizes."""

    hand_back: int = bounded(1, low=1)
    sweep_hold: int = 30
    max_hold: int = bounded(MAX_HOLD_SECONDS, high=43200)
    batch_size: int = bounded(16, low=1, high=16)
    long_poll: int = bounded(20, low=0, high=30)
    max_backoff: float = 10.0
    memory_size: int = 200_000
    pending_seconds: float = 300.0
    record_touches: int = 200
    function_memory: float = 900.0

    def __post_init__(self) -> None:
        check_bounds(self)
        if not self.hand_back <= self.sweep_hold <= self.max_hold:
            raise ValueError("need 1 <= hand_back <= sweep_hold <= max_hold <= 43200")

    def foreign_hold(self, touches: int, *, full_batch: bool) -> int:
        """Seconds a foreign message stays invisible after this process received it for the ``touches``-th time."""
        if touches <= 1:
            return self.sweep_hold if full_batch else self.hand_back
        return int(capped_doubling(self.sweep_hold, min(touches - 2, 30), self.max_hold))

    def backoff(self, idle_batches: int) -> float:
        """The pause before the next receive after ``idle_batches`` batches in a row brought nothing new."""
        if idle_batches <= 0:
            return 0.0
        return capped_doubling(1.0, idle_batches - 1, self.max_backoff)

    def max_touches(self, seconds: float) -> int:
        """At most this many receives of one foreign message by one process within ``seconds`` (the bound the
        schedule promises; the shortest holds are assumed: hand back at once on the first receive)."""
        touches, t = 1, 0.0
        while True:
            t += self.foreign_hold(touches, full_batch=False)
            if t > seconds:
                return touches
            touches += 1
            if self.foreign_hold(touches, full_batch=False) >= self.max_hold:
                return touches + math.floor((seconds - t) / self.max_hold)

    @property
    def memory_seconds(self) -> float:
        """How long a message's receive count is remembered: longer than any hold, so the schedule holds."""
        return 2.0 * self.max_hold
