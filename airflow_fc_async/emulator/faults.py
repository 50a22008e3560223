"""Fault injection and request statistics: deterministic (seeded) so that a test can replay a failure."""

from __future__ import annotations

import math
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DESTINATION_ACTION", "Fault", "FaultRule", "Faults", "RequestStats"]

_KINDS = ("reset_before", "429", "500", "503", "reset_after", "drop")
DESTINATION_ACTION = "DestinationRecord"
"""The action of a destination send (no HTTP request: FC's own delivery of a record to its MNS queue); ``path`` is
matched against the destination ARN. Its kinds: ``drop`` (the record is lost on its way: FC reports the delivery
``Succeeded``, no message arrives), ``500``/``503`` (the delivery fails: ``destinationStatus`` ``Failed``);
``latency`` delays the message (a late record). Only rules naming this action apply to it."""
_DESTINATION_KINDS = ("drop", "500", "503")


@dataclass
class FaultRule:
    """Applies to requests whose action equals ``action`` and whose path matches ``path`` (regex), when set.

    ``rates`` maps "429", "500", "503", "reset_before" and "reset_after" to probabilities (their sum <= 1);
    ``latency`` (seconds) is added to every matching request; ``count`` caps the faults this rule injects.
    With ``action`` ``DestinationRecord`` (see :data:`DESTINATION_ACTION`) the kinds are "drop", "500", "503";
    only a rule naming that action applies to destination sends (a rule without an action covers every request).
    """

    action: str | None = None
    path: str | None = None
    rates: dict[str, float] = field(default_factory=dict)
    latency: float = 0.0
    count: int | None = None
    retry_after: float | None = None
    injected: int = 0

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FaultRule:
        rates = {str(k): float(v) for k, v in (raw.get("rates") or {}).items()}
        for key in ("reset_before", "reset_after"):
            if key in raw:
                rates[key] = float(raw[key])
        for code in ("429", "500", "503"):
            if f"rate_{code}" in raw:
                rates[code] = float(raw[f"rate_{code}"])
        unknown = set(rates) - set(_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {list(_KINDS)}")
        if raw.get("action") == DESTINATION_ACTION:
            wrong = set(rates) - set(_DESTINATION_KINDS)
            if wrong:
                raise ValueError(
                    f"fault kinds {sorted(wrong)} do not apply to {DESTINATION_ACTION}; known: {list(_DESTINATION_KINDS)}"
                )
        elif "drop" in rates:
            raise ValueError(f'fault kind "drop" applies to action {DESTINATION_ACTION} only')
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates add up to more than 1: {rates}")
        if raw.get("path"):
            re.compile(raw["path"])
        return cls(
            action=raw.get("action"),
            path=raw.get("path"),
            rates=rates,
            latency=float(raw.get("latency", 0.0)),
            count=raw.get("count"),
            retry_after=raw.get("retry_after"),
        )

    def matches(self, action: str, path: str) -> bool:
        if self.action != action and (self.action or action == DESTINATION_ACTION):
            return False  # a rule without an action covers HTTP requests only, not FC's destination sends
        return not (self.path and not re.search(self.path, path))

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "path": self.path,
            "rates": self.rates,
            "latency": self.latency,
            "count": self.count,
            "retry_after": self.retry_after,
            "injected": self.injected,
        }


@dataclass
class Fault:
    """What to do to one request: sleep ``latency``, then ``kind`` (None, reset_before, 429/500/503, reset_after)."""

    latency: float = 0.0
    kind: str | None = None
    retry_after: float | None = None


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._rng = random.Random(0)
        self.injected: Counter[str] = Counter()

    def set(self, rules: list[dict[str, Any]], seed: int = 0) -> None:
        parsed = [FaultRule.from_json(r) for r in rules]
        with self._lock:
            self._rules = parsed
            self._rng = random.Random(seed)

    def clear(self) -> None:
        self.set([])

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def decide(self, action: str, path: str) -> Fault:
        fault = Fault()
        with self._lock:
            for rule in self._rules:
                if not rule.matches(action, path):
                    continue
                fault.latency += rule.latency
                if fault.kind or (rule.count is not None and rule.injected >= rule.count) or not rule.rates:
                    continue
                draw = self._rng.random()
                edge = 0.0
                for kind in _KINDS:
                    edge += rule.rates.get(kind, 0.0)
                    if draw < edge:
                        fault.kind = kind
                        fault.retry_after = rule.retry_after
                        rule.injected += 1
                        self.injected[f"{action}:{kind}"] += 1
                        break
        return fault


_LATENCY_SAMPLES = 100_000  # per action: enough for a benchmark's percentiles, bounded memory


class RequestStats:
    """Requests per action and per path (admin requests are not counted), and the server's time per request
    (routing to the response built, in ms: ``latency_ms`` per action, p50/p99/max/mean)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_action: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.latency: dict[str, list[float]] = {}

    def count(self, action: str, method: str, path: str) -> None:
        with self._lock:
            self.by_action[action] += 1
            self.by_path[f"{method} {path}"] += 1

    def status(self, action: str, status: int) -> None:
        with self._lock:
            self.by_status[f"{action}:{status}"] += 1

    def timed(self, action: str, seconds: float) -> None:
        with self._lock:
            samples = self.latency.setdefault(action, [])
            if len(samples) < _LATENCY_SAMPLES:
                samples.append(seconds * 1000.0)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.by_action),
                "paths": dict(self.by_path),
                "statuses": dict(self.by_status),
                "latency_ms": {a: _summary(v) for a, v in self.latency.items() if v},
            }

    def reset(self) -> None:
        with self._lock:
            self.by_action.clear()
            self.by_path.clear()
            self.by_status.clear()
            self.latency.clear()


def _summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    n = len(ordered)
    return {
        "n": n,
        "p50": round(ordered[(n - 1) // 2], 3),
        "p99": round(ordered[min(n - 1, math.ceil(0.99 * n) - 1)], 3),
        "max": round(ordered[-1], 3),
        "mean": round(sum(ordered) / n, 3),
    }
