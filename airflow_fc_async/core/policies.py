"""Every back-off formula and every pause, hold and margin constant of the package, each written once.

The policy objects compute with these. :class:`SharePolicy` (holds of shared-queue messages, receive back-off) lives
here; the others stay beside what they govern: :class:`~airflow_fc_async.core.http.RetryPolicy` (HTTP retries of one
call), :class:`~airflow_fc_async.core.waiting.WaitPolicy` (status reads) and
:class:`~airflow_fc_async.core.status_board.FleetPolicy` (shared scans, derived from a WaitPolicy). The long-running
loops (the MNS receivers, the status poller, the destination-event trigger) pause after an error by
:func:`error_pause`. To change a back-off, change it here (or the policy's default), and its unit test.

A policy's numbers validate themselves: each field that has a range declares it where it is declared
(:func:`bounded`), and the policy's ``__post_init__`` calls :func:`check_bounds`, which names the field.

Pure and cheap to import (stdlib only): adapters import it at DAG-parse time. Nothing here imports Airflow.
"""

from __future__ import annotations

from dataclasses import field, fields
from typing import Any, TypeVar

__all__ = [
    "DEFER_MARGIN",
    "ERROR_PAUSE_CAP",
    "HANDOFF_SECONDS",
    "LONG_POLL_READ_TIMEOUT",
    "MAX_HOLD_SECONDS",
    "PERMANENT_ERROR_PAUSE",
    "SYNC_HOLD_SECONDS",
    "TRIGGER_HOLD_SECONDS",
    "bounded",
    "capped_doubling",
    "check_bounds",
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


_N = TypeVar("_N")


def bounded(
    default: _N, *, low: float | None = None, high: float | None = None, above: float | None = None
) -> _N:
    """A dataclass field's ``default`` and its range: ``low <= value`` (or ``above < value``), ``value <= high``;
    None, where the field allows it, is not checked. :func:`check_bounds` enforces it."""
    bounds = {"low": low, "high": high, "above": above}
    return field(default=default, metadata={"bounds": bounds})


def check_bounds(policy: Any) -> None:
    """Raise ``ValueError`` naming the first field of ``policy`` (a dataclass) outside its :func:`bounded` range."""
    for f in fields(policy):
        bounds = f.metadata.get("bounds")
        value = getattr(policy, f.name)
        if bounds is None or value is None:
            continue
        low, high, above = bounds["low"], bounds["high"], bounds["above"]
        if (
            (low is not None and value < low)
            or (above is not None and value <= above)
            or (high is not None and value > high)
        ):
            raise ValueError(f"{f.name} must be {_range_text(low, high, above)}, got {value}")


def _range_text(low: float | None, high: float | None, above: float | None) -> str:
    if high is None:
        return f">= {low}" if above is None else f"> {above}"
    if above is not None:
        return f"in ({above}, {high}]"
    return f"between {low} and {high}" if low is not None else f"<= {high}"


def __getattr__(name: str) -> object:
    # SharePolicy (a receiver's queue-sharing schedule) has a module of its own, so a DAG parse, which needs only
    # the constants above, builds no dataclass (P3); it stays importable from here.
    if name == "SharePolicy":
        from airflow_fc_async.core.share_policy import SharePolicy

        return SharePolicy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
