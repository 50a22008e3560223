"""ProgressTracker: every status change and every new event reported exactly once, across a serialised hand-off."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from airflow_fc_async.core.models import AsyncTask
from airflow_fc_async.core.progress import ProgressTracker, truncate


def read(status: str, events: list[tuple[str, str]] | None = None, **extra: object) -> AsyncTask:
    raw: dict[str, object] = {"taskId": "t", "status": status, **extra}
    if events is not None:
        raw["events"] = [
            {"eventId": i, "status": s, "eventDetail": d, "timestamp": 1_700_000_000_000 + i}
            for i, (s, d) in enumerate(events)
        ]
    return AsyncTask.from_json(raw)


def test_status_story_without_events() -> None:
    tr = ProgressTracker()
    lines = []
    for r in [
        read("Enqueued"),
        read("Enqueued"),
        read("Dequeued"),
        read("Running"),
        read("Retrying", alreadyRetriedTimes=1),
        read("Failed", alreadyRetriedTimes=1, taskErrorMessage="Function timed out after 3 seconds"),
        read("Failed", alreadyRetriedTimes=1, taskErrorMessage="Function timed out after 3 seconds"),
    ]:
        lines += tr.update(r)
    assert lines == [
        "Enqueued",
        "Enqueued -> Dequeued",
        "Dequeued -> Running",
        "Running -> Retrying (attempt 2)",
        "Retrying (attempt 2) -> Failed: Function timed out after 3 seconds",
    ]


def test_events_are_reported_once_and_status_not_repeated() -> None:
    story = [
        ("Enqueued", ""),
        ("Dequeued", ""),
        ("Running", ""),
        ("Retrying", "Function timed out after 3 seconds"),
        ("Running", ""),
        ("Failed", ""),
    ]
    tr = ProgressTracker()
    first = tr.update(read("Running", story[:3]))
    second = tr.update(read("Failed", story, taskErrorMessage="timed out again", alreadyRetriedTimes=1))
    assert first == ["Enqueued", "Enqueued -> Dequeued", "Dequeued -> Running"]
    assert second == [
        "Running -> Retrying (attempt 2): Function timed out after 3 seconds",
        "Retrying (attempt 2) -> Running (attempt 2)",
        "Running (attempt 2) -> Failed: timed out again",
    ]
    assert tr.update(read("Failed", story, taskErrorMessage="timed out again")) == []


def test_each_fc_attempt_has_lines_of_its_own() -> None:
    """FC's retry runs Dequeued -> Running again: the second attempt's lines say so (no line logged twice)."""
    story = [
        ("Enqueued", ""),
        ("Dequeued", "Dequeued (attempt 1)"),
        ("Running", "Function invoked on instance c-1"),
        ("Retrying", "Attempt 1 failed: Function timed out after 3 seconds"),
        ("Dequeued", "Dequeued (attempt 2)"),
        ("Running", "Function invoked on instance c-1"),
        ("Failed", "Attempt 2 failed: Function timed out after 3 seconds"),
    ]
    lines = ProgressTracker().update(read("Failed", story, alreadyRetriedTimes=1))
    assert len(lines) == len(set(lines)), lines
    assert lines[4:6] == [
        "Retrying (attempt 2) -> Dequeued (attempt 2)",
        "Dequeued (attempt 2) -> Running (attempt 2): Function invoked on instance c-1",
    ]
    assert lines[-1] == "Running (attempt 2) -> Failed: Attempt 2 failed: Function timed out after 3 seconds"


def test_a_retry_between_two_reads_is_still_told() -> None:
    tr = ProgressTracker()
    tr.update(read("Running"))
    assert tr.update(read("Running", alreadyRetriedTimes=1)) == ["Running (attempt 2)"]
    assert tr.update(read("Running", alreadyRetriedTimes=1)) == []


def test_state_survives_a_round_trip_so_the_trigger_never_repeats_a_line() -> None:
    tr = ProgressTracker()
    tr.update(read("Running", [("Enqueued", ""), ("Running", "")]))
    moved = ProgressTracker.from_dict(tr.to_dict())
    assert moved == tr
    assert moved.update(read("Running", [("Enqueued", ""), ("Running", "")])) == []
    assert moved.update(read("Succeeded", [("Enqueued", ""), ("Running", ""), ("Succeeded", "")])) == [
        "Running -> Succeeded"
    ]
    assert ProgressTracker.from_dict(None) == ProgressTracker()


STATUSES = st.sampled_from(["Enqueued", "Dequeued", "Running", "Retrying", "Succeeded", "Failed", "Weird"])


@given(st.lists(STATUSES, min_size=1, max_size=30))
def test_each_change_is_reported_exactly_once(statuses: list[str]) -> None:
    tr = ProgressTracker()
    lines = [line for s in statuses for line in tr.update(read(s))]
    changes = [s for i, s in enumerate(statuses) if i == 0 or s != statuses[i - 1]]
    assert len(lines) == len(changes)
    assert [line.split(" -> ")[-1].split(" (")[0].split(":")[0] for line in lines] == changes


def test_truncate() -> None:
    assert truncate("abc", 5) == "abc"
    assert truncate("a" * 10, 4) == "aaaa... (6 more characters)"
