"""Pure parts of the task-management operators: config diffing, time bounds, status parsing, XCom guard."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_fc_async.core.errors import FcValidationError
from airflow_fc_async.core.models import AsyncInvokeConfig
from airflow_fc_async.operators.config import FcAsyncInvokeConfigOperator, config_diff, effective
from airflow_fc_async.operators.history import (
    PAYLOAD_LIMIT,
    XCOM_BUDGET,
    FcListAsyncTasksOperator,
    guard_payloads,
    parse_status,
    resolve_time,
)


def test_effective_fills_fc_defaults() -> None:
    assert effective(AsyncInvokeConfig(async_task=True)) == {
        "async_task": True,
        "max_async_retry_attempts": 3,
        "max_async_event_age_in_seconds": 86400,
        "on_success": None,
        "on_failure": None,
    }


def test_config_diff() -> None:
    current = AsyncInvokeConfig(
        async_task=True, max_async_retry_attempts=3, on_failure="acs:mns:r:1:/queues/a/messages"
    )
    same = AsyncInvokeConfig(async_task=True, on_failure="acs:mns:r:1:/queues/a/messages")
    assert config_diff(current, same) == {}
    other = AsyncInvokeConfig(async_task=True, max_async_retry_attempts=1)
    assert config_diff(current, other) == {
        "max_async_retry_attempts": (3, 1),
        "on_failure": ("acs:mns:r:1:/queues/a/messages", None),
    }
    assert "async_task" in config_diff(None, same)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_async_retry_attempts": 9}, "max_async_retry_attempts"),
        ({"max_async_retry_attempts": -1}, "max_async_retry_attempts"),
        ({"max_async_event_age_in_seconds": 0}, "max_async_event_age_in_seconds"),
        ({"max_async_event_age_in_seconds": 2_592_001}, "max_async_event_age_in_seconds"),
        ({"async_task": "yes"}, "async_task"),
    ],
)
def test_config_operator_rejects_bad_ranges_at_parse_time(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises((ValueError, FcValidationError), match=field):
        FcAsyncInvokeConfigOperator(task_id="c", function_name="f", **kwargs)  # type: ignore[arg-type]


def test_list_operator_limit_cap() -> None:
    FcListAsyncTasksOperator(task_id="ok", function_name="f", limit=1000)
    with pytest.raises(ValueError, match="limit"):
        FcListAsyncTasksOperator(task_id="l", function_name="f", limit=1001)
    with pytest.raises(ValueError, match="started_after"):
        FcListAsyncTasksOperator(task_id="t", function_name="f", started_after=timedelta(hours=-1))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("Failed", ["Failed"]),
        ("Failed, Expired", ["Failed", "Expired"]),
        ('["Failed","Stopped"]', ["Failed", "Stopped"]),
        (["Succeeded"], ["Succeeded"]),
    ],
)
def test_parse_status(value: object, expected: object) -> None:
    assert parse_status(value) == expected  # type: ignore[arg-type]


def test_resolve_time() -> None:
    anchor = datetime(2024, 1, 2, tzinfo=UTC)
    assert resolve_time("a", timedelta(hours=24), anchor) == datetime(2024, 1, 1, tzinfo=UTC)
    assert resolve_time("a", "2024-01-01T12:00:00Z", anchor) == datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert resolve_time("a", datetime(2024, 1, 1), anchor) == datetime(2024, 1, 1, tzinfo=UTC)
    assert resolve_time("a", None, anchor) is None
    with pytest.raises(AirflowFailException, match="started_before"):
        resolve_time("started_before", "yesterday", anchor)


def test_guard_payloads_cuts_then_drops() -> None:
    log = logging.getLogger("t")
    rows = [{"task_id": "a", "status": "Failed", "payload": "x" * (PAYLOAD_LIMIT + 10)}]
    out = guard_payloads(rows, log)
    assert out[0]["payload"].startswith("x" * PAYLOAD_LIMIT) and "cut" in out[0]["payload"]
    many = [{"task_id": str(i), "status": "Failed", "payload": "y" * 1000} for i in range(XCOM_BUDGET // 900)]
    assert all(r["payload"] is None for r in guard_payloads(many, log))
