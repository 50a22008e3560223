"""The shared status poller: the pure board (window, tick, scan, dispatch, fallback) and the asyncio registry
with a scripted client (the one class mocked)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcAuthError
from airflow_fc_async.core.models import AsyncTask
from airflow_fc_async.core.status_board import FleetPolicy, StatusBoard
from airflow_fc_async.core.status_poller import Sighting, poller_stats, reset_pollers, watch_task
from airflow_fc_async.core.waiting import WaitPolicy

WAIT = WaitPolicy.for_poll_interval(15.0)
T0 = 1_800_000_000.0  # epoch seconds of the first task's start


def atask(
    task_id: str, status: str = "Running", events: int = 2, started: float = T0, **extra: Any
) -> AsyncTask:
    raw: dict[str, Any] = {
        "taskId": task_id,
        "status": status,
        "startedTime": int(started * 1000),
        "events": [
            {"eventId": i + 1, "status": status, "eventDetail": "", "timestamp": 0} for i in range(events)
        ],
    }
    raw.update(extra)
    return AsyncTask.from_json(raw)


def board_with(n: int, policy: FleetPolicy | None = None, age: float = 0.0) -> StatusBoard:
    board = StatusBoard(policy or FleetPolicy())
    for i in range(n):
        assert board.add(atask(f"t{i}", started=T0 + i), WAIT, now=0.0, wall=T0 + i + age)
    return board


# -- the pure board -------------------------------------------------------------------------------------------
def test_a_task_without_started_time_is_not_watched() -> None:
    board = StatusBoard()
    no_start = AsyncTask.from_json({"taskId": "x", "status": "Running"})
    assert board.add(no_start, WAIT, now=0.0, wall=T0) is False
    assert len(board) == 0 and board.window_ms() is None and board.next_tick(0.0) == math.inf


def test_listing_starts_at_the_threshold() -> None:
    assert not board_with(1).listing
    assert board_with(2).listing
    assert not board_with(3, FleetPolicy(min_watchers=4)).listing


def test_window_is_the_oldest_start_minus_the_margin_and_follows_removals() -> None:
    board = board_with(5)
    assert board.window_ms() == int(T0 * 1000) - 1000
    board.remove("t0")
    assert board.window_ms() == int((T0 + 1) * 1000) - 1000


def test_a_fleets_tick_follows_the_youngest_watched_task_on_a_slower_growth() -> None:
    assert board_with(100).next_tick(0.0) == 0.5  # young tasks: half the policy's 1 s floor
    assert board_with(100, age=60.0).next_tick(0.0) == pytest.approx(0.0125 * 60.0)  # all about 60 s old
    assert board_with(100, age=60.0).next_tick(40.0) == pytest.approx(0.0125 * 100.0)  # 40 s later
    assert board_with(100, age=3600.0).next_tick(0.0) == 15.0  # capped at poll_interval


@pytest.mark.parametrize("n", [2, 3, 5, 8, 50])
@pytest.mark.parametrize("age", [0.0, 5.0, 15.0, 30.0, 60.0, 150.0, 600.0, 3600.0])
def test_scans_never_send_more_requests_than_the_watchers_own_reads(n: int, age: float) -> None:
    board = board_with(n, age=age)
    own = n / WAIT.delay(age, 1)  # the watchers' own reads per second
    for pages in (1, 3):
        tick = board.next_tick(0.0, pages)
        assert pages / tick <= own * (1 + 1e-9)
        assert tick <= WAIT.delay(age, 1) * pages  # and each watcher is seen no later than alone (one page)


def test_the_many_page_term_slows_the_scans_down() -> None:
    board = board_with(2)
    assert board.next_tick(0.0, 1) == pytest.approx(
        0.5
    )  # two young watchers: 2 own reads/s, 1 page per 0.5 s
    assert board.next_tick(0.0, 10) == pytest.approx(
        5.0
    )  # ten pages for them: no more often than their reads


def test_a_scan_dispatches_changes_only_and_stops_when_all_are_seen() -> None:
    board = board_with(4)
    scan = board.scan(now=10.0)
    assert scan.offer(atask("foreign")) is False
    assert scan.offer(atask("t0")) is False  # same state as registered
    assert scan.offer(atask("t1", events=3)) is True  # a new event
    assert scan.offer(atask("t2", status="Succeeded", events=2)) is True  # a new status
    assert not scan.done()
    assert scan.offer(atask("t3", events=1)) is False  # an older state (list lag) is never dispatched
    assert scan.done() and scan.listed == 5 and scan.pages == 1
    assert board.seen_since("t3", 10.0) and not board.seen_since("t3", 10.5)
    again = board.scan(now=11.0)
    assert again.offer(atask("t1", events=3)) is False  # already dispatched


def test_a_scan_stops_at_its_page_budget() -> None:
    board = board_with(4, FleetPolicy(page_size=2, max_pages=2))
    scan = board.scan(now=0.0)
    for i in range(3):
        scan.offer(atask(f"other{i}"))
        assert not scan.done()
    scan.offer(atask("t0"))
    assert scan.done() and scan.pages == 2  # t1..t3 unseen: their triggers read them themselves
    assert not board.seen_since("t1", 0.0)


PUSHED = WAIT.behind_push()


def push_board(statuses: list[str], policy: FleetPolicy | None = None, age: float = 0.0) -> StatusBoard:
    board = StatusBoard(policy or FleetPolicy())
    for i, status in enumerate(statuses):
        task = atask(f"t{i}", status=status, started=T0 + i)
        assert board.add(task, PUSHED, now=0.0, wall=T0 + i + age, push=True)
    return board


def walk(board: StatusBoard, listed: dict[str | None, list[AsyncTask]], *, complete: bool = True) -> Any:
    """One scan as the poller runs it, each pass listing ``listed[status]``."""
    scan = board.scan(now=5.0)
    changed = []
    for step in scan.passes:
        scan.enter(step)
        ended = complete
        for task in listed.get(step.status, []):
            if scan.offer(task):
                changed.append(task.task_id)
            if scan.done():
                ended = False
                break
        scan.leave(ended)
    return scan, changed, sorted(scan.gone())


def test_behind_a_push_a_scan_lists_running_tasks_and_reports_those_that_left_running() -> None:
    board = push_board(["Running", "Running", "Running", "Enqueued"])
    assert [p.status for p in board.scan(now=5.0).passes] == ["Enqueued", "Running"]
    running = [atask("t0", started=T0), atask("t3", started=T0 + 3), atask("foreign", started=T0 + 4)]
    scan, changed, gone = walk(board, {"Enqueued": [], "Running": running})
    assert changed == ["t3"]  # Enqueued -> Running: a change, handed to its trigger
    assert gone == ["t1", "t2"]  # known Running, passed without being seen: their triggers read them
    assert scan.pages == 2  # one request per pass
    assert [p.status for p in board.scan(now=6.0).passes] == ["Running"]  # nobody Enqueued any more
    # their read is news again: the board forgot the status, so a later list showing them is dispatched
    assert board.scan(now=6.0).offer(atask("t1", started=T0 + 1)) is True


def test_a_pass_cut_by_its_budget_only_reports_the_tasks_it_passed() -> None:
    board = push_board(["Running"] * 4, FleetPolicy(page_size=1, max_pages=2))
    others = [atask("o0", started=T0 + 0.5), atask("o1", started=T0 + 1.5)]
    _, _, gone = walk(board, {"Running": others}, complete=False)
    assert gone == ["t0", "t1"]  # t2, t3 started after the last listed task: not passed, no news


def test_an_enqueued_task_is_gone_only_when_neither_pass_shows_it() -> None:
    board = push_board(["Enqueued", "Enqueued"])
    _, _, gone = walk(board, {"Enqueued": [atask("t1", status="Enqueued", started=T0 + 1)], "Running": []})
    assert gone == ["t0"]


def test_without_a_push_for_every_watcher_the_scan_lists_every_status() -> None:
    board = push_board(["Running", "Running"])
    board.add(atask("plain", started=T0 + 5), WAIT, now=0.0, wall=T0 + 5)
    assert [p.status for p in board.scan(now=5.0).passes] == [None]
    _, _, gone = walk(board, {None: []})
    assert gone == []  # an unfiltered list says nothing by leaving a task out


def test_a_fleets_last_task_behind_a_push_keeps_being_listed() -> None:
    board = push_board(["Running", "Running"])
    assert board.listing
    board.remove("t1")
    assert not board.listing  # never seen by a scan: a task watched alone reads its own task
    board = push_board(["Running", "Running"])
    walk(board, {"Running": [atask("t0", started=T0), atask("t1", started=T0 + 1)]})
    board.remove("t1")
    assert board.listing  # the fleet's tail keeps the fleet's lag goal
    plain = board_with(2)
    plain.scan(now=5.0).offer(atask("t0"))
    plain.remove("t1")
    assert not plain.listing


def test_behind_a_push_the_tick_is_not_stretched_by_the_slow_own_reads() -> None:
    pushed = push_board(["Running"] * 3, age=50.0)
    plain = StatusBoard()
    for i in range(3):
        plain.add(atask(f"t{i}", started=T0 + i), PUSHED, now=0.0, wall=T0 + i + 50.0)
    tick = PUSHED.growth * FleetPolicy().growth_scale * 50.0
    assert pushed.next_tick(0.0, pages=1) == pytest.approx(tick)
    assert plain.next_tick(0.0, pages=1) > 2 * tick  # one page per 3 own reads 35% of the age apart


def test_a_triggers_own_read_moves_the_known_state() -> None:
    board = board_with(4)
    board.observed(atask("t0", status="Succeeded", events=4))
    assert board.scan(now=1.0).offer(atask("t0", status="Succeeded", events=4)) is False


def test_two_watchers_of_one_task_share_it_until_both_leave() -> None:
    board = board_with(4)
    board.add(atask("t0"), WAIT, now=0.0, wall=T0)
    board.remove("t0")
    assert "t0" in board
    board.remove("t0")
    assert "t0" not in board and len(board) == 3
    board.remove("never")  # harmless


def test_requests_per_scan_formula_and_policy_checks() -> None:
    policy = FleetPolicy()
    assert [policy.max_requests(k) for k in (0, 1, 100, 101, 1000, 5000)] == [1, 1, 1, 2, 10, 10]
    for bad in ({"min_watchers": 0}, {"page_size": 101}, {"max_pages": 0}, {"margin": -1}, {"tick_scale": 0}):
        with pytest.raises(ValueError):
            FleetPolicy(**bad)  # type: ignore[arg-type]


# -- the asyncio registry with a scripted client ----------------------------------------------------------------
class ListClient:
    """Stands in for AsyncFcClient: serves ``tasks`` (oldest first) in pages; counts pages; shared by clones."""

    tasks: list[AsyncTask] = []
    pages: int = 0
    error: Exception | None = None
    closed: int = 0
    gate: asyncio.Event | None = None

    def __init__(
        self, endpoint: str = "http://fc.test", credentials: Credentials | None = None, **kw: Any
    ) -> None:
        self.endpoint = endpoint
        self.credentials = credentials or Credentials("ak", "sk")
        self.connect_timeout, self.read_timeout, self.retry = 1.0, 1.0, None

    def clone(self, cls: Any = None, *, min_read_timeout: float = 0.0) -> ListClient:
        return ListClient(self.endpoint, self.credentials)

    def list_async_tasks(self, function_name: str, **kwargs: Any) -> AsyncIterator[AsyncTask]:
        assert kwargs["newest_first"] is False and kwargs["qualifier"] == "LATEST"
        begin = kwargs["started_after"].timestamp()
        size = kwargs["page_size"]

        async def pages() -> AsyncIterator[AsyncTask]:
            if ListClient.gate is not None:
                await ListClient.gate.wait()
            if ListClient.error is not None:
                raise ListClient.error
            status = kwargs.get("status")
            listed = [
                t
                for t in ListClient.tasks
                if t.started_time and t.started_time.timestamp() >= begin and status in (None, t.status.value)
            ]
            for i, task in enumerate(listed):
                if i % size == 0:
                    ListClient.pages += 1
                yield task

        return pages()

    async def aclose(self) -> None:
        ListClient.closed += 1


async def poller_gone() -> int:
    for _ in range(100):
        if ListClient.closed:
            break
        await asyncio.sleep(0.02)
    return ListClient.closed


@pytest.fixture
def client() -> ListClient:
    ListClient.tasks, ListClient.pages, ListClient.error, ListClient.closed = [], 0, None, 0
    ListClient.gate = None
    reset_pollers()
    return ListClient()


async def test_watchers_get_their_changes_from_one_shared_scan(client: ListClient) -> None:
    ids = [f"w{i}" for i in range(4)]
    ListClient.tasks = [atask(t, started=T0 + i) for i, t in enumerate(ids)]
    watches = [await watch_task(client, "fn", t, WAIT) for t in ListClient.tasks]  # type: ignore[arg-type]
    assert all(w is not None for w in watches)
    ListClient.tasks = [atask(t, "Succeeded", events=3, started=T0 + i) for i, t in enumerate(ids)]
    got = await asyncio.gather(*(w.next(5.0) for w in watches if w is not None))
    assert [t.task_id for t in got if t] == ids and all(t and t.status.value == "Succeeded" for t in got)
    stats = poller_stats()
    assert stats["dispatched"] == 4 and stats["list_requests"] >= 1
    for w in watches:
        assert w is not None
        w.close()
    assert await poller_gone() == 1  # the poller noticed it has nobody left and released its client


async def test_wait_says_gone_unchanged_or_due(client: ListClient) -> None:
    ListClient.tasks = [atask(f"g{i}", started=T0 + i) for i in range(3)]
    watches = [
        await watch_task(client, "fn", t, PUSHED, push=True)  # type: ignore[arg-type]
        for t in ListClient.tasks
    ]
    assert all(w is not None for w in watches)
    g0, g1, g2 = watches
    assert g0 is not None and g1 is not None and g2 is not None
    assert await g0.wait(2.0) is Sighting.UNCHANGED  # listed Running, as last known: no read
    ListClient.tasks = [ListClient.tasks[1], ListClient.tasks[2]]  # g0 ended: out of the Running list
    assert await g0.wait(5.0) is Sighting.GONE
    assert poller_stats()["gone"] >= 1
    ListClient.error = FcAuthError("no list permission", status=403, code="AccessDenied", request_id="r")
    await asyncio.sleep(1.0)  # the next scans fail
    assert await g1.wait(0.6) is Sighting.UNCHANGED  # seen by a scan since its last news
    assert await g1.wait(0.3) is Sighting.DUE  # no scan since: the trigger reads it
    for w in watches:
        assert w is not None
        w.close()


async def test_below_the_threshold_nothing_is_listed_and_the_trigger_reads_itself(client: ListClient) -> None:
    ListClient.tasks = [atask("s0")]
    watches = [await watch_task(client, "fn", t, WAIT) for t in ListClient.tasks]  # type: ignore[arg-type]
    w = watches[0]
    assert w is not None
    assert await w.next(0.05) is None and not w.seen_since(0.0)
    assert ListClient.pages == 0
    for x in watches:
        assert x is not None
        x.close()


async def test_a_list_error_leaves_every_trigger_on_its_own_reads(client: ListClient) -> None:
    ListClient.error = FcAuthError("no list permission", status=403, code="AccessDenied", request_id="r")
    ListClient.tasks = [atask(f"e{i}") for i in range(4)]
    watches = [await watch_task(client, "fn", t, WAIT) for t in ListClient.tasks]  # type: ignore[arg-type]
    w = watches[0]
    assert w is not None
    assert await w.next(0.1) is None and not w.seen_since(0.0)  # the trigger falls back to GetAsyncTask
    assert poller_stats().get("errors", 0) == 1
    for x in watches:
        assert x is not None
        x.close()
    assert await poller_gone() == 1  # woken from its pause when the last watcher left


async def test_watchers_who_join_after_all_left_during_a_scan_are_still_served(client: ListClient) -> None:
    """Under load a scan is slow: every watcher may leave during it and new ones join right after. The poller
    lost the leavers' wake-up and paused for ever on the empty board (P1 at scale 1: one scan in all)."""
    ListClient.gate = asyncio.Event()
    first = [atask(f"a{i}", started=T0 + i) for i in range(2)]
    ListClient.tasks = first
    old = [await watch_task(client, "fn", t, WAIT) for t in first]  # type: ignore[arg-type]
    await asyncio.sleep(0.05)  # the poller's scan waits at the gate
    for w in old:
        assert w is not None
        w.close()
    ListClient.gate.set()
    await asyncio.sleep(0.05)  # the scan ends on an empty board
    later = [atask(f"b{i}", started=T0 + 10 + i) for i in range(2)]
    new = [await watch_task(client, "fn", t, WAIT) for t in later]  # type: ignore[arg-type]
    ListClient.tasks = [
        atask(t.task_id, "Succeeded", events=3, started=T0 + 10 + i) for i, t in enumerate(later)
    ]
    got = await asyncio.gather(*(w.next(5.0) for w in new if w is not None))
    assert [t.status.value if t else None for t in got] == ["Succeeded", "Succeeded"]
    for w in new:
        assert w is not None
        w.close()
