"""TaskFollower with an injected read and sleep, and the typed values of operators.outcome."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_fc_async.core.errors import FcNotFoundError, FcThrottledError
from airflow_fc_async.core.models import AsyncTask
from airflow_fc_async.core.progress import ProgressTracker
from airflow_fc_async.core.waiting import WaitPolicy
from airflow_fc_async.operators.follower import TaskFollower
from airflow_fc_async.operators.outcome import TaskEvent, TaskRef, failure_message
from tests.unit._fc_fakes import task

REF = TaskRef("fn", "LATEST", "t1", "req-t1")


def _follower(reads: list[AsyncTask | Exception], slept: list[float]) -> TaskFollower:
    def read() -> AsyncTask:
        value = reads.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    return TaskFollower(
        ref=REF,
        read=read,
        sleep=slept.append,
        log=logging.getLogger("test_follower"),
        tracker=ProgressTracker(),
        read_error=lambda err: AirflowFailException(str(err)),
    )


def test_the_wait_reads_on_the_schedule_retries_a_transient_error_and_returns_the_ended_task() -> None:
    slept: list[float] = []
    throttled = FcThrottledError("slow down", status=429, code="Throttled", request_id="r")
    reads: list[AsyncTask | Exception] = [task(status="Running"), throttled, task(status="Succeeded")]
    policy = WaitPolicy.for_poll_interval(5.0)
    ended = _follower(reads, slept).wait(policy, policy.deadline())
    assert ended is not None and ended.status.value == "Succeeded"
    assert len(slept) == 3 and not reads
    assert all(0 < s <= 5.0 for s in slept)


def test_the_wait_answers_none_at_the_deadline_and_the_caller_decides() -> None:
    slept: list[float] = []
    policy = WaitPolicy.for_poll_interval(5.0, max_wait=1.0)
    assert _follower([task()], slept).wait(policy, policy.deadline(start=0.0)) is None
    assert slept == []


def test_a_permanent_read_error_is_the_callers_exception() -> None:
    missing = FcNotFoundError("gone", status=404, code="AsyncTaskNotFound", request_id="r")
    with pytest.raises(AirflowFailException, match="gone"):
        _follower([missing], []).read_once()


def test_ref_and_event_read_what_the_store_and_the_trigger_write() -> None:
    assert TaskRef.from_dict(REF.to_dict()) == REF
    assert (
        TaskRef.from_dict({"function_name": "fn", "task_id": "t1", "qualifier": None}).qualifier == "LATEST"
    )
    event = TaskEvent.from_dict(
        {
            "status": "failure",
            "function_name": "fn",
            "async_task_id": "t1",
            "task": {"taskId": "t1", "status": "Failed"},
        }
    )
    assert event.ref == TaskRef("fn", "LATEST", "t1")
    assert event.task.status.value == "Failed" and event.message("none") == "none"
    with pytest.raises(AirflowException, match="Unexpected trigger event"):
        TaskEvent.from_dict({"status": "success"})
    assert TaskEvent.from_dict({"status": "success"}, needs_task=False).status == "success"


def test_a_failure_message_quotes_the_destination_record_when_one_came() -> None:
    ended = task(status="Failed", taskErrorMessage="boom")
    plain = failure_message(REF, ended, "url")
    assert "ended Failed: boom" in plain and "Destination record" not in plain
    record: dict[str, Any] = {
        "requestContext": {"requestId": "req-t1", "condition": "UnhandledInvocationError"},
        "responseContext": {"statusCode": 200},
    }
    assert "Destination record: " in failure_message(REF, ended, "url", record)
