"""ListAsyncTasks in O(page): a page builds the records of its own tasks only, whatever the history's size, and
the indexed walk returns what a full scan of the history would (order, cursor, status, prefix, time window)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.emulator.app import Emulator
from tests.emulator.conftest import wait_for

FUNCTION = "hist"
HISTORY = 3000
RUN = 40  # tasks that run at once and end Succeeded (the others wait an hour in the queue)
PAGE = 100


@pytest.fixture(scope="module")
def hist() -> Iterator[Emulator]:
    with Emulator() as emu:
        emu.deploy(
            FUNCTION,
            runtime="emulator-sleep",
            source="",
            timeout=3600,
            instanceConcurrency=RUN,
            asyncInvokeConfig={"asyncTask": True},
        )
        for i in range(HISTORY):  # the history, seeded in process (HTTP invokes would take minutes here)
            group = "run" if i % (HISTORY // RUN) == 0 else "wait"
            emu.scheduler.submit(
                FUNCTION, f"{group}-{i:05d}", b'{"sleep": 0}', f"req-{i}", delay=0 if group == "run" else 3600
            )
        wait_for(lambda: emu.scheduler.counts().get("Succeeded", 0) == RUN, timeout=120)
        yield emu


@pytest.fixture
def client(hist: Emulator) -> Iterator[FcClient]:
    with FcClient(hist.endpoint, hist.credentials) as c:
        yield c


def _expected(
    emu: Emulator, *, newest_first: bool = True, status: str | list[str] | None = None, prefix: str = ""
) -> list[str]:
    wanted = [status] if isinstance(status, str) else status
    tasks = [
        t
        for t in emu.scheduler.tasks(FUNCTION)
        if (wanted is None or t.status.value in wanted) and t.task_id.startswith(prefix)
    ]
    tasks.sort(key=lambda t: (t.created_ms, t.task_id), reverse=newest_first)
    return [t.task_id for t in tasks]


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"newest_first": False},
        {"status": "Succeeded"},
        {"status": ["Enqueued", "Succeeded"], "newest_first": False},
        {"prefix": "run-"},
        {"prefix": "wait-01"},
    ],
    ids=["newest", "oldest", "status", "two-statuses", "prefix-few", "prefix-many"],
)
def test_each_page_builds_at_most_page_size_records(hist: Emulator, client: FcClient, query: dict) -> None:
    hist.reset_stats()
    pages = 4
    listed = [
        t.task_id for t in client.list_async_tasks(FUNCTION, page_size=PAGE, limit=PAGE * pages, **query)
    ]
    stats = hist.stats()
    requests = stats["requests"]["ListAsyncTasks"]
    assert 1 <= requests <= pages
    assert stats["records_built"] <= PAGE * requests  # was the whole history (3000) per request
    assert listed and listed == _expected(hist, **query)[: PAGE * pages]


def test_a_full_walk_matches_the_history_and_each_page_stays_bounded(
    hist: Emulator, client: FcClient
) -> None:
    hist.reset_stats()
    listed = [t.task_id for t in client.list_async_tasks(FUNCTION, page_size=PAGE, newest_first=False)]
    assert listed == _expected(hist, newest_first=False)
    stats = hist.stats()
    assert stats["requests"]["ListAsyncTasks"] == HISTORY // PAGE
    assert stats["records_built"] == HISTORY  # each record once over the whole walk


def test_status_index_follows_transitions_and_the_time_window(hist: Emulator, client: FcClient) -> None:
    succeeded = [t.task_id for t in client.list_async_tasks(FUNCTION, status="Succeeded", newest_first=False)]
    assert succeeded == _expected(hist, newest_first=False, status="Succeeded") and len(succeeded) == RUN
    assert not list(client.list_async_tasks(FUNCTION, status="Running"))
    assert len(list(client.list_async_tasks(FUNCTION, status="Enqueued", limit=5))) == 5
    tasks = sorted(hist.scheduler.tasks(FUNCTION), key=lambda t: (t.created_ms, t.task_id))
    lo, hi = tasks[1000].created_ms, tasks[1100].created_ms + 1
    window = [
        t.task_id
        for t in client.list_async_tasks(
            FUNCTION,
            newest_first=False,
            started_after=datetime.fromtimestamp(lo / 1000, tz=UTC),
            started_before=datetime.fromtimestamp(hi / 1000, tz=UTC),
        )
    ]
    assert window and window == [t.task_id for t in tasks if lo <= t.created_ms <= hi]
