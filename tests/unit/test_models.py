"""Parsing of what FC and MNS send: tasks, statuses, configs, destination records."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime

import pytest

from airflow_fc_async.core.models import (
    TERMINAL_STATUSES,
    AsyncInvokeConfig,
    AsyncTask,
    DestinationRecord,
    TaskStatus,
    decode_payload,
    from_epoch_ms,
    to_epoch_ms,
)

SEED_RECORD = {
    "timestamp": 1728465119433,
    "requestContext": {
        "requestId": "1-670648a1-15197d0b-d07710222f9d",
        "functionArn": "acs:fc:cn-hangzhou:1034354682****:functions/my-fc-job",
        "condition": "InvocationError",
        "approximateInvokeCount": 2,
    },
    "requestPayload": '{"failure":true}',
    "responseContext": {"statusCode": 200, "functionError": "InvocationError"},
    "responsePayload": '{"errorMessage":"Function timed out after 60 seconds (maxMemoryUsage: 8MB)"}',
}

FULL_TASK = {
    "taskId": "job-1",
    "status": "Failed",
    "qualifier": "LATEST",
    "functionArn": "acs:fc:cn-hangzhou:1234567890123456:functions/my-fc-job",
    "requestId": "1-abc",
    "instanceId": "c-1",
    "startedTime": 1704067200000,
    "endTime": 1704067260500,
    "durationMs": 60500,
    "alreadyRetriedTimes": 1,
    "taskPayload": '{"failure":true}',
    "taskErrorMessage": "UnhandledInvocationError",
    "returnPayload": "",
    "destinationStatus": "Succeeded",
    "events": [
        {"eventId": 1, "eventDetail": "{}", "status": "Enqueued", "timestamp": 1704067199000},
        {"eventId": 2, "eventDetail": "", "status": "Dequeued", "timestamp": 1704067200000},
    ],
}


def test_terminal_statuses_are_the_documented_five() -> None:
    assert {s.value for s in TERMINAL_STATUSES} == {"Succeeded", "Failed", "Stopped", "Expired", "Invalid"}
    for name in ("Enqueued", "Dequeued", "Running", "Retrying", "Stopping"):
        assert not TaskStatus(name).is_terminal


def test_unknown_status_is_kept_not_terminal_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        first = TaskStatus("Suspended-Brand-New")
        second = TaskStatus("Suspended-Brand-New")
    assert first.value == "Suspended-Brand-New"
    assert first.is_unknown and not first.is_terminal and not first.is_successful
    assert first == second
    assert sum("Suspended-Brand-New" in r.message for r in caplog.records) == 1


def test_status_case_is_forgiven() -> None:
    assert TaskStatus("succeeded") is TaskStatus.SUCCEEDED


def test_async_task_full() -> None:
    task = AsyncTask.from_json(FULL_TASK)
    assert task.task_id == "job-1"
    assert task.status is TaskStatus.FAILED and task.is_terminal and not task.is_successful
    assert task.started_time == datetime(2024, 1, 1, tzinfo=UTC)
    assert task.end_time is not None and task.end_time.tzinfo is not None
    assert task.duration_ms == 60500
    assert task.retried_times == 1
    assert task.payload == '{"failure":true}'
    assert task.error_message == "UnhandledInvocationError"
    assert task.destination_status == "Succeeded"
    assert [e.status for e in task.events] == ["Enqueued", "Dequeued"]
    assert task.raw["instanceId"] == "c-1"
    summary = task.summary()
    assert summary["started_time"] == "2024-01-01T00:00:00+00:00"
    assert "payload" not in summary and task.summary(include_payload=True)["payload"] == '{"failure":true}'
    json.dumps(summary)


def test_async_task_minimal_and_fc2_names() -> None:
    task = AsyncTask.from_json(
        {"taskId": "t", "status": "Running", "invocationPayload": "x", "invocationErrorMessage": "boom"}
    )
    assert task.payload == "x" and task.error_message == "boom"
    assert task.started_time is None and task.end_time is None and task.events == ()
    assert task.retried_times == 0


def test_async_task_without_id_is_rejected() -> None:
    with pytest.raises(ValueError, match="taskId"):
        AsyncTask.from_json({"status": "Running"})


def test_destination_record_of_the_seed() -> None:
    rec = DestinationRecord.from_json(SEED_RECORD)
    assert rec.request_id == "1-670648a1-15197d0b-d07710222f9d"
    assert rec.approximate_invoke_count == 2
    assert rec.condition == "InvocationError" and rec.function_error == "InvocationError"
    assert rec.request_payload == {"failure": True}
    assert rec.response_payload["errorMessage"].startswith("Function timed out after 60 seconds")
    assert rec.timestamp == datetime.fromtimestamp(1728465119.433, tz=UTC)
    assert rec.function_name == "my-fc-job"
    assert not rec.succeeded
    assert json.loads(json.dumps(rec.to_dict()))["requestContext"]["requestId"] == rec.request_id


def test_destination_record_fc2_shape_and_iso_timestamp() -> None:
    raw = dict(SEED_RECORD)
    raw["timestamp"] = "2024-10-09T09:11:59.433Z"
    raw["requestContext"] = dict(
        SEED_RECORD["requestContext"], functionArn="acs:fc:::services/svc.LATEST/functions/f"
    )  # type: ignore[arg-type]
    raw["responsePayload"] = "plain text"
    raw["requestPayload"] = ""
    rec = DestinationRecord.from_json(raw)
    assert rec.function_name == "f"
    assert rec.timestamp == datetime(2024, 10, 9, 9, 11, 59, 433000, tzinfo=UTC)
    assert rec.response_payload == "plain text"
    assert rec.request_payload == ""


@pytest.mark.parametrize(
    "body",
    [json.dumps(SEED_RECORD), base64.b64encode(json.dumps(SEED_RECORD).encode()).decode()],
    ids=["raw", "base64"],
)
def test_destination_record_from_mns_body(body: str) -> None:
    rec = DestinationRecord.from_body(body)
    assert rec is not None and rec.request_id.startswith("1-6706")


@pytest.mark.parametrize("body", ["hello", "{not json", base64.b64encode(b"[1,2]").decode(), '{"a": 1}', ""])
def test_foreign_bodies_are_not_records(body: str) -> None:
    assert DestinationRecord.from_body(body) is None


def test_invoke_config_round_trip() -> None:
    cfg = AsyncInvokeConfig(
        async_task=True,
        max_async_retry_attempts=1,
        max_async_event_age_in_seconds=172800,
        on_failure="acs:mns:x",
    )
    body = cfg.to_json()
    assert body == {
        "asyncTask": True,
        "maxAsyncRetryAttempts": 1,
        "maxAsyncEventAgeInSeconds": 172800,
        "destinationConfig": {"onFailure": {"destination": "acs:mns:x"}},
    }
    back = AsyncInvokeConfig.from_json({**body, "functionArn": "arn", "createdTime": "2024-01-01T00:00:00Z"})
    assert back.settings() == cfg.settings()
    assert back.function_arn == "arn"
    assert AsyncInvokeConfig().to_json() == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [('{"a":1}', {"a": 1}), ("[1]", [1]), ("plain", "plain"), ("", ""), (None, None), (b'{"b":2}', {"b": 2})],
)
def test_decode_payload(raw: object, expected: object) -> None:
    assert decode_payload(raw) == expected


def test_epoch_ms() -> None:
    assert from_epoch_ms(0) is None and from_epoch_ms(None) is None
    when = datetime(2024, 1, 1, tzinfo=UTC)
    assert from_epoch_ms(to_epoch_ms(when)) == when
    assert from_epoch_ms("1704067200000") == when
    assert to_epoch_ms(datetime(2024, 1, 1)) == 1704067200000


@pytest.mark.parametrize("value", [10**20, "9223372036854775296000", -(10**20)])
def test_epoch_ms_beyond_the_platform_is_a_value_error(value: object) -> None:
    """datetime raises OverflowError or OSError there; reply parsers turn only ValueError into FcError (R6 fuzz)."""
    with pytest.raises(ValueError, match="not a timestamp"):
        from_epoch_ms(value)
