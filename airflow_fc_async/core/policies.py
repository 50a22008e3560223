"""Every back-off formula and every pause, hold and margin constant of the package, each written once.

The policy objects stay beside what they govern and compute with these: :class:`~airflow_fc_async.core.http.RetryPolicy`
(HTTP retries of one call), :class:`~airflow_fc_async.core.waiting.WaitPolicy` (status reads),
:class:`~airflow_fc_async.core.status_board.FleetPolicy` (shared scans, derived from a WaitPolicy) and
:class:`~airflow_fc_async.core.destinations.SharePolicy` (holds of shared-queue messages, receive back-off). The
long-running loops (the MNS receivers, the status poller, the destination-event trigger) pause after an error by
:func:`error_pause`. To change a back-off, change it here (or the policy's default), and its unit test.

Pure and cheap to import (stdlib only): adapters import it at DAG-parse time. Nothing here imports Airflow.
"""

from __future__ import annotations

__all__ = [
    "DEFER_MARGIN",
    "ERROR_PAUSE_CAP",
    "HANDOFF_SECONDS",
    "LONG_POLL_READ_TIMEOUT",
    "MAX_HOLD_SECONDS",
    "PERMANENT_ERROR_PAUSE",
    "SYNC_HOLD_SECONDS",
    "TRIGGER_HOLD_SECONDS",
    "capped_doubling",
    "error_pause",
    "result_reread_delay",
]

DEFER_MARGIN = 60.0
"""Seconds between a trigger's own deadline and the deferral timeout: the trigger's deadline fires first, so the
task resumes with the trigger's event rather than Airflow's timeout."""

SYNC_HOLD_SECONDS = 60
"""How long a claimed destination record's message stays invisible for a blocking caller (it stores the record at
once, then deletes the message)."""

TRIGGER_HOLD_SECONDS = 900
"""How long a claimed record's message stays invisible when a trigger claims it: the worker that resumes the task
stores the record and deletes the message, which may take the triggerer-to-worker hand-over (minutes)."""

MAX_HOLD_SECONDS = 900
"""The longest a receiver keeps a foreign message of a shared queue invisible (``SharePolicy.max_hold``)."""

HANDOFF_SECONDS = 30.0
"""How long a timed-out waiter still waits for a record a receiver already took off the queue for it (its hold)."""

LONG_POLL_READ_TIMEOUT = 35.0
"""The least read timeout of a long-running loop's own client: above MNS's longest long poll (30 s)."""

ERROR_PAUSE_CAP = 30.0
"""The longest pause of a long-running loop between retries of a failing request."""

PERMANENT_ERROR_PAUSE = 300.0
"""The status poller's pause after an error retrying cannot fix (each trigger reads its own task meanwhile)."""


def capped_doubling(base: float, doublings: int, cap: float) -> float:
    """``base * 2**doublings``, at most ``cap``: the one exponential back-off (``doublings`` below 0 count as 0)."""
    return min(cap, base * 2.0 ** max(0, doublings))


def error_pause(errors: int, *, cap: float = ERROR_PAUSE_CAP) -> float:
    """Seconds a long-running loop pauses after ``errors`` (>= 1) failures in a row: 2, 4, 8 ... ``cap``."""
    return capped_doubling(1.0, errors, cap)


def result_reread_delay(attempt: int) -> float:
    """Seconds before re-reading a succeeded task's result after failed read ``attempt`` (1-based): 1, 2, 3 ..."""
    return float(attempt)
