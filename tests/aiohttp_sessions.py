"""Count aiohttp sessions a block of test code opens, and the ones it leaves unclosed.

Two witnesses: every ``ClientSession`` created is tracked (weakly) and must be closed at the end, and the
``Unclosed client session`` ResourceWarning that aiohttp emits when an open session is collected must not appear.
"""

from __future__ import annotations

import gc
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest


@dataclass
class SessionAudit:
    sessions: list[weakref.ref[aiohttp.ClientSession]] = field(default_factory=list)
    unclosed_warnings: list[str] = field(default_factory=list)

    @property
    def opened(self) -> int:
        return len(self.sessions)

    @property
    def left_open(self) -> int:
        return sum(1 for ref in self.sessions if (s := ref()) is not None and not s.closed)


@contextmanager
def audit_sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[SessionAudit]:
    audit = SessionAudit()
    real_init = aiohttp.ClientSession.__init__

    def tracking_init(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        audit.sessions.append(weakref.ref(self))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientSession, "__init__", tracking_init)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield audit
        gc.collect()  # an unreferenced open session warns now
        audit.unclosed_warnings = [
            str(w.message) for w in caught if "Unclosed client session" in str(w.message)
        ]
