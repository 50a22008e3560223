"""The pure line logic (core/function_logs.py): which lines are new, in what order, of which attempt."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from airflow_fc_async.core.function_logs import LogCursor, function_topic, log_config_of
from airflow_fc_async.core.models import AsyncTask

RID = "1-aaaaaaaa-bbbbbbbb-cccccccccccc"
OTHER = "1-dddddddd-eeeeeeee-ffffffffffff"


def task(instance: str | None = "c-1", retried: int = 0, status: str = "Running") -> AsyncTask:
    return AsyncTask.from_json(
        {
            "taskId": "t",
            "status": status,
            "requestId": RID,
            "instanceId": instance,
            "startedTime": int(datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC).timestamp() * 1000),
            "alreadyRetriedTimes": retried,
        }
    )


def row(message: str, instance: str = "c-1") -> dict[str, Any]:
    return {"message": message, "instanceID": instance, "__time__": "1704067230"}


def attempt_rows(n: int, lines: int, instance: str = "c-1", rid: str = RID) -> list[dict[str, Any]]:
    return (
        [row(f"FC Invoke Start RequestId: {rid}", instance)]
        + [row(f"a{n} line {i}", instance) for i in range(lines)]
        + [row(f"FC Invoke End RequestId: {rid}", instance)]
    )


def cursor() -> LogCursor:
    c = LogCursor("proj", "store", "fn", RID)
    c.observe(task())
    return c


def replay(c: LogCursor, all_rows: list[dict[str, Any]], page: int = 100) -> list[str]:
    """Drive the cursor as the hook does: pages from its offset until it wants no more."""
    out: list[str] = []
    for _ in range(1000):
        req = c.next_request(1704067300)
        chunk = all_rows[req.offset : req.offset + page]
        out += c.update(chunk, page)
        if not c.more:
            return out
    raise AssertionError("no end")


def test_request_window_query_and_topic() -> None:
    c = cursor()
    req = c.next_request(1704067300.5)
    assert req.from_time == 1704067200 - 60  # start 00:00:30, padded 60 s, aligned down to a minute
    assert req.to_time % 60 == 0 and req.to_time >= 1704067300 + 60
    assert req.query == f'instanceID: "c-1" or "{RID}"'
    assert req.topic == function_topic("fn") == "FCLogs:fn"
    c.disable_fulltext()
    assert c.next_request(1704067300).query == 'instanceID: "c-1"'


def test_each_line_once_in_order_across_polls() -> None:
    c = cursor()
    rows = attempt_rows(1, 5)
    first = replay(c, rows[:3])
    second = replay(c, rows)  # the same rows again plus new ones: only the new ones come out
    assert first == [
        f"[attempt 1] FC Invoke Start RequestId: {RID}",
        "[attempt 1] a1 line 0",
        "[attempt 1] a1 line 1",
    ]
    assert second == [
        "[attempt 1] a1 line 2",
        "[attempt 1] a1 line 3",
        "[attempt 1] a1 line 4",
        f"[attempt 1] FC Invoke End RequestId: {RID}",
    ]
    assert c.complete(task(status="Succeeded"))


def test_other_requests_lines_are_left_out() -> None:
    c = cursor()
    rows = [
        *attempt_rows(9, 2, rid=OTHER),
        row(f"FC Invoke Start RequestId: {RID}"),
        row(f"2024-01-01T00:00:31Z {OTHER} [INFO] not ours"),
        row(f"2024-01-01T00:00:31Z {RID} [INFO] ours"),
        row("plain print"),
        row(f"FC Invoke End RequestId: {RID}, Error: Function timed out after 3 seconds"),
    ]
    out = replay(c, rows)
    assert out == [
        f"[attempt 1] FC Invoke Start RequestId: {RID}",
        f"[attempt 1] 2024-01-01T00:00:31Z {RID} [INFO] ours",
        "[attempt 1] plain print",
        f"[attempt 1] FC Invoke End RequestId: {RID}, Error: Function timed out after 3 seconds",
    ]
    assert c.ended == [True]


def test_retries_are_separate_attempts_and_a_new_instance_replays_without_repeats() -> None:
    c = cursor()
    out = replay(c, attempt_rows(1, 2))
    assert c.complete(task(retried=0, status="Succeeded"))
    assert not c.complete(task(retried=1, status="Succeeded"))  # attempt 2's End not seen yet
    # attempt 2 runs on c-2; its Start line arrives via the full-text term, before any status read shows c-2
    rows = attempt_rows(1, 2) + attempt_rows(2, 3, instance="c-2")
    out += replay(c, rows)
    assert "c-2" in c.instances
    assert out == (
        [f"[attempt 1] FC Invoke Start RequestId: {RID}", "[attempt 1] a1 line 0", "[attempt 1] a1 line 1"]
        + [f"[attempt 1] FC Invoke End RequestId: {RID}"]
        + [f"[attempt 2] FC Invoke Start RequestId: {RID}"]
        + [f"[attempt 2] a2 line {i}" for i in range(3)]
        + [f"[attempt 2] FC Invoke End RequestId: {RID}"]
    )
    assert c.complete(task(retried=1, status="Succeeded"))


def test_state_round_trips_through_json() -> None:
    import json

    c = cursor()
    rows = attempt_rows(1, 6)
    replay(c, rows[:4])
    restored = LogCursor.from_dict(json.loads(json.dumps(c.to_dict())))
    assert replay(restored, rows) == [f"[attempt 1] a1 line {i}" for i in (3, 4, 5)] + [
        f"[attempt 1] FC Invoke End RequestId: {RID}"
    ]


def test_not_ready_before_the_task_ran_somewhere() -> None:
    c = LogCursor("p", "s", "fn", "")
    c.observe(task(instance=None))
    assert not c.ready
    c.observe(task())
    assert c.ready and c.request_id == RID


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6), st.integers(1, 7))
def test_any_page_split_gives_every_line_once_in_order(cuts: list[int], page: int) -> None:
    rows = attempt_rows(1, 30)
    c = cursor()
    out: list[str] = []
    visible = 0
    for cut in cuts:  # rows become visible in bursts; each poll reads pages of `page` rows
        visible = min(len(rows), visible + cut)
        out += replay(c, rows[:visible], page)
    out += replay(c, rows, page)
    assert out == [f"[attempt 1] {r['message']}" for r in rows]


def test_log_config_of_get_function() -> None:
    assert log_config_of({"logConfig": {"project": "p", "logstore": "s"}}) == ("p", "s")
    assert log_config_of({"logConfig": {"project": "", "logstore": "s"}}) is None
    assert log_config_of({}) is None
