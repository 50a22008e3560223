"""Fault injection and request statistics: deterministic (seeded) so that a test can replay a failure."""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fault", "FaultRule", "Faults", "RequestStats"]

_KINDS = ("reset_before", "429", "500", "503", "reset_after")


@dataclass
class FaultRule:
    """Applies to requests whose action equals ``action`` and whose path matches ``path`` (regex), when set.

    ``rates`` maps "429", "500", "503", "reset_before" and "reset_after" to probabilities (their sum <= 1);
    ``latency`` (seconds) is added to every matching request; ``count`` caps the faults this rule injects.
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
        if self.action and self.action != action:
            return False
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


class RequestStats:
    """Requests per action and per path (admin requests are not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_action: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()

    def count(self, action: str, method: str, path: str) -> None:
        with self._lock:
            self.by_action[action] += 1
            self.by_path[f"{method} {path}"] += 1

    def status(self, action: str, status: int) -> None:
        with self._lock:
            self.by_status[f"{action}:{status}"] += 1

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.by_action),
                "paths": dict(self.by_path),
                "statuses": dict(self.by_status),
            }

    def reset(self) -> None:
        with self._lock:
            self.by_action.clear()
            self.by_path.clear()
            self.by_status.clear()
