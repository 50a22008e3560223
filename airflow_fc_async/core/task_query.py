"""What ``list_async_tasks`` asks for, written once: :class:`TaskFilters` (its keyword arguments) and
:class:`AsyncTaskQuery` (those arguments checked, and turned into ListAsyncTasks parameters); plus :class:`Pager`,
the ``nextToken`` walk both FC clients drive (the sync one with ``for``, the async one with ``async for``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypedDict, TypeVar

from airflow_fc_async.core.errors import FcValidationError
from airflow_fc_async.core.models import AsyncTask, TaskStatus, to_epoch_ms
from airflow_fc_async.core.validation import (
    check_function_name,
    check_int_range,
    check_page_limit,
    check_qualifier,
    check_statuses,
    check_time_range,
)

__all__ = ["AsyncTaskQuery", "Pager", "TaskFilters"]

T = TypeVar("T")


class TaskFilters(TypedDict, total=False):
    """The keyword arguments of every ``list_async_tasks`` (clients and hooks); see :class:`AsyncTaskQuery`."""

    qualifier: str | None
    prefix: str | None
    status: str | TaskStatus | Iterable[str | TaskStatus] | None
    started_after: datetime | None
    started_before: datetime | None
    include_payload: bool
    newest_first: bool
    limit: int | None
    page_size: int


@dataclass(frozen=True)
class AsyncTaskQuery:
    """A ListAsyncTasks query, checked when built (so a bad argument fails at the call, not on first ``next``).

    ``status``: one status or several; FC filters by one, so several are filtered here (:meth:`keep`).
    ``limit``: at most this many tasks in all; ``page_size``: tasks per request (1-100).
    """

    function_name: str
    qualifier: str | None = None
    prefix: str | None = None
    status: str | TaskStatus | Iterable[str | TaskStatus] | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    include_payload: bool = False
    newest_first: bool = True
    limit: int | None = None
    page_size: int = 100
    statuses: tuple[TaskStatus, ...] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "function_name", check_function_name(self.function_name))
        check_page_limit(self.page_size)
        if self.limit is not None:
            check_int_range("limit", self.limit, 1, 10**9)
        check_time_range(self.started_after, self.started_before)
        if self.prefix is not None and not isinstance(self.prefix, str):
            raise FcValidationError("prefix", f"must be a string, got {type(self.prefix).__name__}")
        statuses = tuple(check_statuses(self.status)) if self.status is not None else None
        object.__setattr__(self, "statuses", statuses)
        if self.qualifier is not None:
            object.__setattr__(self, "qualifier", check_qualifier(self.qualifier))

    @classmethod
    def of(cls, function_name: str | AsyncTaskQuery, filters: TaskFilters) -> AsyncTaskQuery:
        """``function_name`` and the filters, or a query already built (then no filters)."""
        if isinstance(function_name, AsyncTaskQuery):
            if filters:
                raise TypeError("list_async_tasks: pass an AsyncTaskQuery or filters, not both")
            return function_name
        return cls(function_name, **filters)

    @property
    def local_statuses(self) -> frozenset[TaskStatus] | None:
        """The statuses filtered here, not by FC (when there are several)."""
        return frozenset(self.statuses) if self.statuses and len(self.statuses) > 1 else None

    def params(self, token: str | None, taken: int) -> dict[str, str | None]:
        """The query parameters of the page after ``token``, ``taken`` tasks having been kept so far."""
        size = self.page_size
        if self.limit is not None and self.local_statuses is None:
            size = min(size, self.limit - taken)
        after, before = self.started_after, self.started_before
        return {
            "qualifier": self.qualifier,
            "prefix": self.prefix or None,
            "status": self.statuses[0].value if self.statuses and len(self.statuses) == 1 else None,
            "startedTimeBegin": str(to_epoch_ms(after)) if after else None,
            "startedTimeEnd": str(to_epoch_ms(before)) if before else None,
            "sortOrderByTime": "desc" if self.newest_first else "asc",
            "includePayload": "true" if self.include_payload else None,
            "limit": str(size),
            "nextToken": token,
        }

    def keep(self, task: AsyncTask) -> bool:
        local = self.local_statuses
        return local is None or task.status in local


class Pager(Generic[T]):
    """The ``nextToken`` walk, without I/O: :meth:`next_request` says what to fetch (None: done), :meth:`take`
    reads a fetched page into the items to hand out. Stops at ``limit`` kept items, an empty or repeated token."""

    def __init__(
        self,
        request: Callable[[str | None, int], Any],
        *,
        keep: Callable[[T], bool] | None = None,
        limit: int | None = None,
    ) -> None:
        self._request = request
        self._keep = keep
        self._limit = limit
        self._token: str | None = None
        self._taken = 0
        self._done = False

    def next_request(self) -> Any:
        return None if self._done else self._request(self._token, self._taken)

    def take(self, page: tuple[list[T], str | None]) -> list[T]:
        items, next_token = page
        kept = [i for i in items if self._keep(i)] if self._keep is not None else list(items)
        if self._limit is not None and self._taken + len(kept) >= self._limit:
            kept = kept[: self._limit - self._taken]
            self._done = True
        self._taken += len(kept)
        if not next_token or next_token == self._token:
            self._done = True
        self._token = next_token
        return kept
