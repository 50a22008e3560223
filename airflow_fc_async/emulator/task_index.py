"""The queryable tasks of one function, ordered for ListAsyncTasks: by (startedTime, taskId), per status, by id.

A page costs ``O(log n + page)``: bisect to the window (``startedTimeBegin``/``End``, the ``nextToken`` cursor),
then walk the key list that already holds only the wanted statuses, or the ids that share the ``prefix`` when they
are fewer. Records (the JSON of a task) are built for the page only, by the caller. Mutated only under the
scheduler's lock: :meth:`add` at submit, :meth:`moved` on each status change.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator

from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.emulator.tasks import Task

__all__ = ["Key", "TaskIndex"]

Key = tuple[int, str]
"""(startedTime in epoch ms, taskId): the list order and the ``nextToken`` cursor."""


class TaskIndex:
    def __init__(self) -> None:
        self._by_time: list[Key] = []
        self._by_status: dict[TaskStatus, list[Key]] = {}
        self._ids: list[str] = []
        self._tasks: dict[str, Task] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: Task) -> None:
        key = (task.created_ms, task.task_id)
        _insert(self._by_time, key)
        _insert(self._by_status.setdefault(task.status, []), key)
        bisect.insort(self._ids, task.task_id)
        self._tasks[task.task_id] = task

    def moved(self, task: Task, old: TaskStatus) -> None:
        """``task`` changed from status ``old`` to its current one."""
        key = (task.created_ms, task.task_id)
        keys = self._by_status.get(old, [])
        at = bisect.bisect_left(keys, key)
        if at < len(keys) and keys[at] == key:
            del keys[at]
        _insert(self._by_status.setdefault(task.status, []), key)

    def select(
        self,
        *,
        newest_first: bool,
        begin: int | None = None,
        end: int | None = None,
        after: Key | None = None,
        statuses: Iterable[TaskStatus] = (),
        prefix: str = "",
        keep: Callable[[Task], bool] | None = None,
    ) -> Iterator[Task]:
        """The matching tasks in list order, lazily: ``after`` is the last key of the previous page."""
        lo: Key = (begin, "") if begin is not None else (-1, "")
        hi: Key | None = (end + 1, "") if end is not None else None
        if after is not None:
            if newest_first:
                hi = after if hi is None or after < hi else hi
            else:
                lo = max(lo, (after[0], after[1] + "\0"))  # strictly after the cursor
        wanted = set(statuses)
        sources = [self._by_status.get(s, []) for s in wanted] if wanted else [self._by_time]
        if prefix:
            start = bisect.bisect_left(self._ids, prefix)
            stop = bisect.bisect_left(self._ids, prefix + "\U0010ffff", start)
            if stop - start < sum(len(s) for s in sources):  # fewer ids share the prefix than a walk visits
                tasks = self._tasks
                sources = [sorted((tasks[i].created_ms, i) for i in itertools.islice(self._ids, start, stop))]
        walks = [_window(keys, lo, hi, newest_first) for keys in sources]
        keys = walks[0] if len(walks) == 1 else heapq.merge(*walks, reverse=newest_first)
        for _, task_id in keys:
            task = self._tasks[task_id]
            if prefix and not task_id.startswith(prefix):
                continue
            if wanted and task.status not in wanted:
                continue
            if keep is not None and not keep(task):
                continue
            yield task


def _insert(keys: list[Key], key: Key) -> None:
    """Append in the usual case (tasks arrive in started order), bisect otherwise."""
    if not keys or keys[-1] <= key:
        keys.append(key)
    else:
        bisect.insort(keys, key)


def _window(keys: list[Key], lo: Key, hi: Key | None, newest_first: bool) -> Iterator[Key]:
    start = bisect.bisect_left(keys, lo)
    stop = len(keys) if hi is None else bisect.bisect_left(keys, hi)
    if newest_first:
        return (keys[i] for i in range(stop - 1, start - 1, -1))
    return (keys[i] for i in range(start, stop))
