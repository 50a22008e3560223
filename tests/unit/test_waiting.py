"""The one wait policy: pure arithmetic, so tested without a clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_fc_async.core.durations import coerce_seconds
from airflow_fc_async.core.waiting import Deadline, WaitPolicy


def simulate(policy: WaitPolicy, duration: float) -> tuple[int, float]:
    """(reads until the task is seen ended, lag after its end)."""
    t, reads = 0.0, 0
    while True:
        t += policy.delay(t, reads)
        reads += 1
        if t >= duration:
            return reads, t - duration


def test_first_read_is_soon_then_backs_off_to_the_cap() -> None:
    p = WaitPolicy.for_poll_interval(20)
    assert p.delay(0, 0) == 1.0
    assert p.delay(1, 1) == 1.0
    assert p.delay(50, 5) == pytest.approx(5.0)
    assert p.delay(10_000, 99) == 20


def test_small_poll_interval_is_respected() -> None:
    p = WaitPolicy.for_poll_interval(0.2)
    assert p.delay(0, 0) == 0.2 and p.delay(100, 9) == 0.2


@given(st.floats(min_value=0.5, max_value=7200))
def test_reads_stay_under_the_stated_bound(duration: float) -> None:
    policy = WaitPolicy()
    reads, lag = simulate(policy, duration)
    assert reads <= policy.max_reads(duration)
    assert lag <= max(policy.min_interval, min(policy.max_interval, policy.growth * duration * 1.2)) + 1e-9


def test_lag_is_a_small_fraction_of_long_tasks() -> None:
    policy = WaitPolicy(max_interval=60)
    for duration in (100, 300, 600):
        _, lag = simulate(policy, duration)
        assert lag <= 0.11 * duration


def test_invalid_policies_name_the_field() -> None:
    with pytest.raises(ValueError, match="min_interval"):
        WaitPolicy(min_interval=0)
    with pytest.raises(ValueError, match="poll interval"):
        WaitPolicy(min_interval=5, max_interval=1)
    with pytest.raises(ValueError, match="max_wait"):
        WaitPolicy(max_wait=-1)


def test_deadline() -> None:
    d = Deadline(10, start=100.0)
    assert d.remaining(now=104) == 6 and not d.expired(now=104)
    assert d.expired(now=110.5) and d.remaining(now=111) == 0
    assert d.sleep_for(WaitPolicy(max_interval=30), reads=5, now=108) == pytest.approx(1.0)
    assert d.sleep_for(WaitPolicy(max_interval=30), reads=5, now=109.5) == pytest.approx(0.5)
    assert Deadline(None, 0).remaining(now=1e9) == float("inf")


def test_coerce_seconds() -> None:
    assert coerce_seconds("poll_interval", timedelta(minutes=1)) == 60
    assert coerce_seconds("max_wait", None) is None
    with pytest.raises(ValueError, match="poll_interval"):
        coerce_seconds("poll_interval", "10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_wait"):
        coerce_seconds("max_wait", 0)


def test_behind_push_is_a_slower_schedule_with_the_same_cap_and_deadline() -> None:
    base = WaitPolicy.for_poll_interval(15.0, max_wait=600)
    push = base.behind_push()
    assert push.max_interval == 15.0 and push.max_wait == 600
    assert push.delay(0, 0) == 4.0 > base.delay(0, 0)
    for elapsed in (1.0, 5.0, 20.0, 100.0, 1000.0):
        assert push.delay(elapsed, 1) >= base.delay(elapsed, 1)
    assert push.delay(10.0, 1) == 3.5  # 35% of the age
    assert push.max_reads(60) < base.max_reads(60)


def test_behind_push_keeps_a_small_poll_interval() -> None:
    push = WaitPolicy.for_poll_interval(0.5).behind_push()
    assert push.min_interval == push.max_interval == push.first_delay == 0.5 and push.delay(100, 3) == 0.5


def test_a_shared_scan_behind_push_stays_within_the_p1_lag_goal() -> None:
    """The fleet's tick behind push (status_board.FleetPolicy.tick_policy): at most 90% of max(1 s, 5% of the age),
    leaving the rest of P1's lag goal to the scan itself (a tick of the whole 5% put 5 of 39 lost records over it)."""
    from airflow_fc_async.core.status_board import FleetPolicy

    tick = FleetPolicy().tick_policy(WaitPolicy.for_poll_interval(15.0).behind_push())
    for age in (0.5, 5.0, 19.0, 60.0, 300.0):
        assert tick.delay(age, 1) <= 0.9 * max(1.0, 0.05 * age)
