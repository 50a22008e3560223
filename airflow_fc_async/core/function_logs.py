"""Which function log lines are new, in what order, of which attempt: pure, no I/O.

FC 3.0 ships a function's stdout and stderr to the SLS logstore of its ``logConfig``, one row per line, under the
topic ``FCLogs:{function}``. Rows carry the ``instanceID`` but no request id; the runtime frames every invocation
with ``FC Invoke Start RequestId: <id>`` and ``FC Invoke End RequestId: <id>`` lines, and a retry of an async task
reuses the request id. So one task's lines are read as: the rows of the instances it ran on, from
the task's start on, kept between the Start and End lines of its request id; each Start opens a new attempt.

A :class:`LogCursor` turns successive GetLogs pages into lines to print, each exactly once and in order, prefixed
by the attempt (``[attempt 2] ...``). It asks for rows from ``offset`` on (a fixed ``from``, a growing ``to``:
rows sorted by time only ever grow at the end), so a long log costs one read per new page, not a re-read of
everything. When a new instance joins the query (a retry on another instance) the result set changes: the cursor
starts over from offset 0 and replays, and the per-attempt counts of lines already printed keep it from printing
any line twice. Its state is a small JSON dict (:meth:`LogCursor.to_dict`), handed from the worker to the trigger.

Known limits: lines another request printed on the same instance between our Start and End lines (an
``instanceConcurrency`` above 1) cannot be told apart unless they carry their request id (``context.getLogger()``
lines do, and are dropped); an attempt that ran entirely between two status reads on an instance never seen is
missed, and later attempts are then numbered one lower.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_fc_async.core.models import AsyncTask
from airflow_fc_async.core.progress import truncate

__all__ = [
    "END_PREFIX",
    "START_PREFIX",
    "LogCursor",
    "LogRequest",
    "function_topic",
    "log_config_of",
]

START_PREFIX = "FC Invoke Start RequestId: "
END_PREFIX = "FC Invoke End RequestId: "
PAGE_LINES = 100
"""GetLogs v1 answers at most 100 rows per call."""
_WINDOW_PAD = 60
_MAX_LINE = 4000
# "<utc time> <requestId> [LEVEL] msg": a context.getLogger() line, which names its request.
_LOGGER_LINE = re.compile(r"^\S+ (?P<rid>\S+) \[(?:DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL|TRACE)\] ")


def function_topic(function_name: str) -> str:
    """The SLS topic of a function's log rows."""
    return f"FCLogs:{function_name}"


def log_config_of(function: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(project, logstore)`` of a GetFunction reply, or None when it has no usable ``logConfig``."""
    config = function.get("logConfig")
    if not isinstance(config, Mapping):
        return None
    project, store = config.get("project"), config.get("logstore")
    if isinstance(project, str) and project and isinstance(store, str) and store:
        return project, store
    return None


@dataclass(frozen=True)
class LogRequest:
    """The next GetLogs call: ``from`` inclusive, ``to`` exclusive (epoch seconds), rows from ``offset`` on."""

    from_time: int
    to_time: int
    query: str
    topic: str
    offset: int
    line: int = PAGE_LINES


@dataclass
class LogCursor:
    """Follows one async task's function log lines across GetLogs pages and attempts. Pure.

    :param project: the SLS project of the function's ``logConfig``.
    :param logstore: its logstore.
    :param function_name: the function (the rows' topic is ``FCLogs:{function_name}``).
    :param request_id: the task's request id (every attempt's Start and End lines carry it).
    """

    project: str
    logstore: str
    function_name: str
    request_id: str
    started_s: int | None = None
    """Epoch seconds of the task's start (the window's anchor); None until a task read gives it."""
    instances: list[str] = field(default_factory=list)
    rows_seen: int = 0
    emitted: list[int] = field(default_factory=list)
    """Lines printed per attempt (index 0 is attempt 1)."""
    ended: list[bool] = field(default_factory=list)
    # replay state: which attempt is open on each instance, attempts met and lines met per attempt so far
    fulltext: bool = True
    """Also ask for the request id as a full-text term: finds the Start/End lines of attempts on instances not
    seen in a status read (a retry that ran between two reads); off when the logstore has no full-text index."""
    more: bool = False
    """After :meth:`update`: read again at once (the page was full, or a new instance restarted the replay)."""
    _open: dict[str, int] = field(default_factory=dict)
    _attempts: int = 0
    _position: list[int] = field(default_factory=list)

    # -- inputs --------------------------------------------------------------------------------------------
    def observe(self, task: AsyncTask) -> None:
        """Learn the task's start and the instance it runs on (a new instance restarts the replay)."""
        if self.started_s is None and task.started_time is not None:
            self.started_s = int(task.started_time.timestamp())
        if task.request_id and not self.request_id:
            self.request_id = task.request_id
        instance = task.instance_id
        if instance and instance not in self.instances:
            self.instances.append(instance)
            self._restart()

    @property
    def ready(self) -> bool:
        """True once there is something to ask for (a request id, a start time and an instance)."""
        return bool(self.request_id and self.started_s is not None and self.instances)

    def next_request(self, now: float) -> LogRequest:
        """The GetLogs call that reads the rows after those already seen (``now`` in epoch seconds)."""
        if self.started_s is None:
            raise ValueError("the cursor has not observed the task's start yet")
        start = (self.started_s - _WINDOW_PAD) // 60 * 60
        end = max(start + 60, math.ceil((now + _WINDOW_PAD) / 60) * 60)
        terms = [f'instanceID: "{_quote(i)}"' for i in self.instances]
        if self.fulltext:
            terms.append(f'"{_quote(self.request_id)}"')
        query = " or ".join(terms)
        return LogRequest(start, end, query, function_topic(self.function_name), self.rows_seen)

    def update(self, rows: Sequence[Mapping[str, Any]], page_size: int = PAGE_LINES) -> list[str]:
        """The lines to print for one page of rows (the rows from :meth:`next_request`'s offset, in order)."""
        out: list[str] = []
        start, end = START_PREFIX + self.request_id, END_PREFIX + self.request_id
        self.more = len(rows) >= page_size
        for row in rows:
            message = str(row.get("message") if row.get("message") is not None else row.get("content", ""))
            message = message.rstrip("\r\n")
            instance = str(row.get("instanceID") or row.get("instanceId") or "")
            bare = message.strip()
            if instance and instance not in self.instances and (_frames(bare, start) or _frames(bare, end)):
                self.instances.append(instance)  # an attempt on an instance no status read showed
                self._restart()
                self.more = True
                return out
            self.rows_seen += 1
            if _frames(bare, start):
                self._attempts += 1
                self._open[instance] = self._attempts
                while len(self.emitted) < self._attempts:
                    self.emitted.append(0)
                    self.ended.append(False)
                    self._position.append(0)
                self._position[self._attempts - 1] = 0
            attempt = self._open.get(instance)
            if attempt is None or self._foreign(bare):
                continue
            index = attempt - 1
            self._position[index] += 1
            if self._position[index] > self.emitted[index]:
                self.emitted[index] = self._position[index]
                out.append(f"[attempt {attempt}] {truncate(message, _MAX_LINE)}")
            if _frames(bare, end):
                self.ended[index] = True
                del self._open[instance]
        return out

    def _foreign(self, bare: str) -> bool:
        """A line that names another request: its Start/End, or a getLogger line with another id."""
        if bare.startswith((START_PREFIX, END_PREFIX)):
            return not (
                _frames(bare, START_PREFIX + self.request_id) or _frames(bare, END_PREFIX + self.request_id)
            )
        m = _LOGGER_LINE.match(bare)
        return bool(m and _looks_like_request_id(m["rid"]) and m["rid"] != self.request_id)

    def disable_fulltext(self) -> None:
        """The logstore refused the full-text term: ask by instance only, from the start."""
        self.fulltext = False
        self._restart()

    def _restart(self) -> None:
        self.rows_seen = 0
        self._open = {}
        self._attempts = 0
        self._position = [0] * len(self.emitted)

    # -- outputs -------------------------------------------------------------------------------------------
    @property
    def attempts(self) -> int:
        return len(self.emitted)

    def complete(self, task: AsyncTask) -> bool:
        """True when the End line of the task's last attempt was printed (``alreadyRetriedTimes + 1``)."""
        expected = task.retried_times + 1
        return self.attempts >= expected and all(self.ended)

    def to_dict(self) -> dict[str, Any]:
        """JSON state (trigger kwargs): the replay state is kept too, so the next read carries on."""
        return {
            "project": self.project,
            "logstore": self.logstore,
            "function_name": self.function_name,
            "request_id": self.request_id,
            "started_s": self.started_s,
            "fulltext": self.fulltext,
            "instances": list(self.instances),
            "rows_seen": self.rows_seen,
            "emitted": list(self.emitted),
            "ended": list(self.ended),
            "open": dict(self._open),
            "attempts_met": self._attempts,
            "position": list(self._position),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> LogCursor:
        cursor = cls(
            project=str(raw["project"]),
            logstore=str(raw["logstore"]),
            function_name=str(raw["function_name"]),
            request_id=str(raw.get("request_id") or ""),
            started_s=None if raw.get("started_s") is None else int(raw["started_s"]),
            instances=[str(i) for i in raw.get("instances") or ()],
            rows_seen=int(raw.get("rows_seen", 0)),
            emitted=[int(n) for n in raw.get("emitted") or ()],
            ended=[bool(e) for e in raw.get("ended") or ()],
            fulltext=bool(raw.get("fulltext", True)),
        )
        cursor._open = {str(k): int(v) for k, v in (raw.get("open") or {}).items()}
        cursor._attempts = int(raw.get("attempts_met", len(cursor.emitted)))
        position = [int(n) for n in raw.get("position") or ()]
        cursor._position = position if len(position) == len(cursor.emitted) else list(cursor.emitted)
        return cursor


def _frames(bare: str, marker: str) -> bool:
    """``bare`` is the marker line, alone or followed by ``, ...`` (an End line may add ``, Error: ...``)."""
    return bare == marker or bare.startswith(marker + ",") or bare.startswith(marker + " ")


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


_REQUEST_ID = re.compile(r"^[0-9A-Za-z]+(?:-[0-9A-Za-z]+){2,}$")


def _looks_like_request_id(token: str) -> bool:
    return bool(_REQUEST_ID.match(token))
