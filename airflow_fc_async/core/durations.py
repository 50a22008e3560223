"""Durations given to operators as seconds or a timedelta, checked in ``__init__`` (at DAG-parse time: stdlib only,
so that a DAG file does not load the wait policy it needs only when a task runs)."""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["coerce_seconds"]


def coerce_seconds(
    name: str, value: float | int | timedelta | None, *, allow_none: bool = True
) -> float | None:
    """Seconds from a number or a timedelta; names the argument when the value is wrong."""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} is required")
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValueError(f"{name} must be a number of seconds or a timedelta, got {value!r}")
    if seconds <= 0 or math.isnan(seconds):
        raise ValueError(f"{name} must be positive, got {value!r}")
    return seconds
