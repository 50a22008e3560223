"""Deterministic FC async task ids for Airflow task instances, and the choice of an earlier try to re-attach to.

An id is ``<prefix>-t<try_number>``. The prefix names the task instance (dag, task, run, map index) and ends in a
hash of those exact values, so:

- a repeat of the same try computes the same id (FC answers 409 to a second invoke; the client resolves it),
- each try has its own id (a failed task is never mistaken for the new try's task),
- ``ListAsyncTasks(prefix=<prefix>-t)`` finds every try of this task instance and nothing else: two task
  instances whose readable parts sanitize to the same text still differ in the hash, and a candidate id is
  accepted only when it is exactly ``<prefix>-t<digits>``.

FC's rules: starts with a letter or ``_``, only ``[A-Za-z0-9_-]``, at most 128 characters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from airflow_fc_async.core.models import AsyncTask, TaskStatus
from airflow_fc_async.core.validation import check_task_id

__all__ = [
    "MAX_TASK_ID_LENGTH",
    "explicit_try_task_id",
    "pick_earlier_task",
    "rerun_prefix",
    "task_id_prefix",
    "try_number_of",
    "try_task_id",
    "validate_task_id",
]

MAX_TASK_ID_LENGTH = 128
_HASH_LEN = 10
_SUFFIX_RESERVE = 12  # "-t" + up to 10 digits
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_-]+")


def _sanitize(text: str) -> str:
    return _INVALID_RUN.sub("_", text)


def task_id_prefix(
    dag_id: str, task_id: str, run_id: str, map_index: int | None = -1, run_marker: str | None = None
) -> str:
    """The try-independent part of the id: readable, ending in a hash of the exact inputs.

    ``run_marker`` (folded into the hash only) tells this DAG run from an earlier one deleted and created again
    under the same run id (see ``compat.dag_run_marker``).
    """
    mi = -1 if map_index is None else int(map_index)
    exact = f"{dag_id}\x00{task_id}\x00{run_id}\x00{mi}" + (f"\x00{run_marker}" if run_marker else "")
    digest = hashlib.sha256(exact.encode()).hexdigest()[:_HASH_LEN]
    readable = f"{dag_id}-{task_id}-{run_id}" + (f"-m{mi}" if mi >= 0 else "")
    readable = _sanitize(readable).strip("-") or "task"
    if not (readable[0].isascii() and readable[0].isalpha()):
        readable = "t" + readable
    room = MAX_TASK_ID_LENGTH - _SUFFIX_RESERVE - _HASH_LEN - 1
    return f"{readable[:room].rstrip('-')}-{digest}"


def rerun_prefix(source_task_id: str, instance_prefix: str) -> str:
    """The prefix of the FC tasks that re-run ``source_task_id`` from one Airflow task instance.

    Readable (the source id, then ``-rerun-``) and ending in a hash of the source id and the task instance's own
    prefix, so each DAG run re-runs a task under fresh ids, and every try of one run shares the prefix.
    """
    digest = hashlib.sha256(f"{source_task_id}\x00{instance_prefix}".encode()).hexdigest()[:_HASH_LEN]
    room = MAX_TASK_ID_LENGTH - _SUFFIX_RESERVE - _HASH_LEN - len("-rerun-")
    return f"{source_task_id[:room].rstrip('-')}-rerun-{digest}"


def try_task_id(prefix: str, try_number: int) -> str:
    """The id of one try: ``<prefix>-t<try_number>``."""
    if try_number < 0:
        raise ValueError(f"try_number must be >= 0, got {try_number}")
    value = f"{prefix}-t{try_number}"
    validate_task_id("async_task_id", value)
    return value


def explicit_try_task_id(async_task_id: str, try_number: int) -> str:
    """A user-given id: used as is on the first try; later tries get ``-t<n>`` (FC refuses a reused id)."""
    if try_number <= 1:
        return async_task_id
    value = f"{async_task_id}-t{try_number}"
    if len(value) > MAX_TASK_ID_LENGTH:  # keep within the limit while staying deterministic
        digest = hashlib.sha256(async_task_id.encode()).hexdigest()[:_HASH_LEN]
        head = async_task_id[: MAX_TASK_ID_LENGTH - _SUFFIX_RESERVE - _HASH_LEN - 1]
        value = f"{head}-{digest}-t{try_number}"
    return value


def try_number_of(prefix: str, task_id: str, *, explicit: bool = False) -> int | None:
    """The try number encoded in ``task_id`` when it is a try of ``prefix``; None when it belongs elsewhere.

    With ``explicit`` (a user-given id as prefix), the bare id itself is try 1.
    """
    if explicit and task_id == prefix:
        return 1
    head = f"{prefix}-t"
    if not task_id.startswith(head):
        return None
    rest = task_id[len(head) :]
    return int(rest) if rest.isdigit() else None


def validate_task_id(field: str, value: str) -> str:
    """Check an async task id against FC's rules, naming the argument when it is wrong."""
    return check_task_id(value, field)


def pick_earlier_task(
    prefix: str, tasks: Iterable[AsyncTask], current_try: int, *, explicit: bool = False
) -> AsyncTask | None:
    """The earlier try's task to re-attach to: an active one first, else a Succeeded one; None otherwise.

    Only exact tries of ``prefix`` count (never another task instance's task); a Failed, Stopped, Expired or
    Invalid task is never picked, so a failure is never replayed as success. Among several, the latest try wins.
    """
    active: list[tuple[int, AsyncTask]] = []
    succeeded: list[tuple[int, AsyncTask]] = []
    for task in tasks:
        n = try_number_of(prefix, task.task_id, explicit=explicit)
        if n is None or n > current_try:
            continue
        if not task.is_terminal:
            active.append((n, task))
        elif task.status is TaskStatus.SUCCEEDED:
            succeeded.append((n, task))
    for group in (active, succeeded):
        if group:
            return max(group, key=lambda pair: pair[0])[1]
    return None
