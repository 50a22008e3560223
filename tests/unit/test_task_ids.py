"""Deterministic task ids: FC's rules, one id per try, prefix lookups that never match another task instance."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_fc_async.core import task_ids
from airflow_fc_async.core.errors import FcValidationError
from tests.unit._fc_fakes import task

FC_RULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
NAMES = st.text(min_size=1, max_size=300)
MAP_INDEX = st.integers(min_value=-1, max_value=10_000)
TRY = st.integers(min_value=1, max_value=10_000)


@given(NAMES, NAMES, NAMES, MAP_INDEX, TRY)
def test_ids_follow_fc_rules_and_are_deterministic(dag: str, tid: str, run: str, mi: int, n: int) -> None:
    prefix = task_ids.task_id_prefix(dag, tid, run, mi)
    value = task_ids.try_task_id(prefix, n)
    assert FC_RULE.match(value) and len(value) <= 128
    assert value[0].isalpha()
    assert value == task_ids.try_task_id(task_ids.task_id_prefix(dag, tid, run, mi), n)  # a repeat
    assert task_ids.try_task_id(prefix, n + 1) != value  # the next try
    assert task_ids.try_number_of(prefix, value) == n


@given(NAMES, NAMES, NAMES, MAP_INDEX, NAMES, NAMES, NAMES, MAP_INDEX, TRY)
def test_another_task_instance_never_matches_the_prefix(
    d1: str, t1: str, r1: str, m1: int, d2: str, t2: str, r2: str, m2: int, n: int
) -> None:
    if (d1, t1, r1, m1) == (d2, t2, r2, m2):
        return
    p1 = task_ids.task_id_prefix(d1, t1, r1, m1)
    other = task_ids.try_task_id(task_ids.task_id_prefix(d2, t2, r2, m2), n)
    assert task_ids.try_number_of(p1, other) is None


def test_sanitizing_collisions_are_told_apart_by_the_hash() -> None:
    a = task_ids.task_id_prefix("a", "b-c", "r")
    b = task_ids.task_id_prefix("a-b", "c", "r")
    c = task_ids.task_id_prefix("a", "b", "run:1")
    d = task_ids.task_id_prefix("a", "b", "run+1")
    assert len({a, b}) == 2 and len({c, d}) == 2


def test_readable_and_short_for_a_typical_run() -> None:
    prefix = task_ids.task_id_prefix("etl", "invoke", "manual__2024-01-01T00:00:00+00:00", -1)
    assert prefix.startswith("etl-invoke-manual__2024-01-01T00_00_00_00_00-")
    assert task_ids.task_id_prefix("etl", "invoke", "r", 3).startswith("etl-invoke-r-m3-")
    assert task_ids.task_id_prefix("1dag", "t", "r").startswith("t1dag")


def test_long_names_are_cut_and_hashed() -> None:
    prefix = task_ids.task_id_prefix("d" * 200, "t" * 200, "r" * 200)
    value = task_ids.try_task_id(prefix, 9_999_999_999)
    assert len(value) <= 128
    assert task_ids.task_id_prefix("d" * 200, "t" * 200, "r" * 199) != prefix


@pytest.mark.parametrize("bad", ["", "1abc", "-abc", "a b", "a/b", "é", "a" * 129])
def test_validate_rejects_and_names_the_field(bad: str) -> None:
    with pytest.raises(FcValidationError, match="async_task_id"):
        task_ids.validate_task_id("async_task_id", bad)


@pytest.mark.parametrize("good", ["a", "_x", "Job-1_2", "a" * 128])
def test_validate_accepts(good: str) -> None:
    assert task_ids.validate_task_id("async_task_id", good) == good


def test_explicit_ids() -> None:
    assert task_ids.explicit_try_task_id("job", 1) == "job"
    assert task_ids.explicit_try_task_id("job", 3) == "job-t3"
    long = task_ids.explicit_try_task_id("j" * 128, 2)
    assert len(long) <= 128 and long.endswith("-t2")
    assert task_ids.try_number_of("job", "job", explicit=True) == 1
    assert task_ids.try_number_of("job", "job", explicit=False) is None
    assert task_ids.try_number_of("job", "job-t4", explicit=True) == 4
    assert task_ids.try_number_of("job", "job-tx") is None


def test_pick_earlier_task_prefers_active_then_succeeded_never_failed() -> None:
    p = "p-0123456789"
    t = lambda n, s: task(f"{p}-t{n}", s)  # noqa: E731
    assert task_ids.pick_earlier_task(p, [t(1, "Failed"), t(2, "Stopped")], 3) is None
    assert task_ids.pick_earlier_task(p, [t(1, "Succeeded"), t(2, "Running")], 3).task_id.endswith("-t2")
    assert task_ids.pick_earlier_task(p, [t(1, "Succeeded"), t(2, "Failed")], 3).task_id.endswith("-t1")
    assert task_ids.pick_earlier_task(p, [t(1, "Running"), t(2, "Retrying")], 3).task_id.endswith("-t2")
    assert task_ids.pick_earlier_task(p, [t(5, "Running")], 3) is None  # a later try is not "earlier"
    assert task_ids.pick_earlier_task(p, [task("p-0123456789x-t1", "Running")], 3) is None
