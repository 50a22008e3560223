"""Decoding destination messages into event payloads, the watcher filter, and the Airflow 3-only guard."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from airflow_fc_async import compat
from airflow_fc_async.core.destination_events import (
    DestinationEvent,
    DestinationFilter,
    foreign_hand_back_seconds,
)
from airflow_fc_async.core.errors import FcValidationError
from airflow_fc_async.core.mns_requests import MnsMessage


def message(body: str, dequeue_count: int = 1) -> MnsMessage:
    return MnsMessage(
        message_id="MSG-1",
        receipt_handle="RH-1",
        body=body,
        body_md5="",
        enqueue_time=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        next_visible_time=None,
        first_dequeue_time=None,
        dequeue_count=dequeue_count,
        priority=8,
    )


def record(function: str = "my-fc-job", condition: str = "Timeout", error: str | None = "timed out") -> str:
    return json.dumps(
        {
            "timestamp": 1764590400000,
            "requestContext": {
                "requestId": "req-1",
                "functionArn": f"acs:fc:cn-hangzhou:123:functions/{function}",
                "condition": condition,
                "approximateInvokeCount": 2,
            },
            "requestPayload": '{"failure": true}',
            "responseContext": {"statusCode": 200, "functionError": error},
            "responsePayload": '{"errorMessage": "Function timed out after 3 seconds"}',
        }
    )


def test_payload_has_the_decoded_record_and_message_facts() -> None:
    event = DestinationEvent.from_message(message(record(), dequeue_count=3))
    assert event is not None
    payload = event.to_payload("fc-dlq")
    assert payload["queue"] == "fc-dlq"
    assert payload["message_id"] == "MSG-1"
    assert payload["enqueue_time"] == "2026-12-01T12:00:00+00:00"
    assert payload["dequeue_count"] == 3
    assert (payload["request_id"], payload["function_name"], payload["condition"]) == (
        "req-1",
        "my-fc-job",
        "Timeout",
    )
    assert payload["record"]["requestPayload"] == {"failure": True}
    assert payload["record"]["responsePayload"] == {"errorMessage": "Function timed out after 3 seconds"}
    json.dumps(payload)  # a trigger event payload must be JSON


def test_base64_bodies_decode_and_foreign_bodies_do_not() -> None:
    b64 = base64.b64encode(record().encode()).decode()
    assert DestinationEvent.from_message(message(b64)) is not None
    for body in ("hello", '{"hello": 1}', "[1, 2]", '{"requestContext": {}}', "{not json"):
        assert DestinationEvent.from_message(message(body)) is None, body


def test_success_records_have_the_success_condition() -> None:
    event = DestinationEvent.from_message(message(record(condition="", error=None)))
    assert event is not None and event.condition == "Success"


@pytest.mark.parametrize(
    ("functions", "conditions", "function", "condition", "error", "wanted"),
    [
        (None, None, "my-fc-job", "Timeout", "x", True),
        (["my-fc-job"], None, "other", "Timeout", "x", False),
        ("my-fc-job", None, "my-fc-job", "Timeout", "x", True),
        (None, ["timeout"], "f", "Timeout", "x", True),
        (None, ["UnhandledInvocationError"], "f", "Timeout", "x", False),
        (None, ["Failure"], "f", "Timeout", "x", True),
        (None, ["Failure"], "f", "", None, False),
        (None, ["Success"], "f", "", None, True),
        (["a", "b"], ["Failure"], "b", "UnhandledInvocationError", "x", True),
    ],
)
def test_filter(functions, conditions, function, condition, error, wanted) -> None:
    event = DestinationEvent.from_message(message(record(function, condition, error)))
    assert event is not None
    assert DestinationFilter.build(functions, conditions).matches(event) is wanted


@pytest.mark.parametrize("bad", [[], [""], ["  "], [3]])
def test_filter_rejects_empty_names(bad) -> None:
    with pytest.raises(FcValidationError, match="function_names"):
        DestinationFilter.build(bad, None)


def test_foreign_messages_are_handed_back_for_longer_each_time() -> None:
    delays = [foreign_hand_back_seconds(n) for n in range(1, 10)]
    assert delays[0] >= 1 and delays == sorted(delays) and delays[-1] <= 300


def test_import_on_airflow_2_names_the_required_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "_airflow_version", lambda: (2, 11))
    with pytest.raises(ImportError, match=r"needs Apache Airflow 3\.0 or later"):
        compat.require_event_driven_scheduling("airflow_fc_async.triggers.mns_events")


def test_provider_info_registers_the_queue_only_on_airflow_3(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_fc_async import get_provider_info as gpi

    monkeypatch.setattr(gpi, "_airflow_major", lambda: 2)
    info = gpi.get_provider_info()
    assert "queues" not in info
    assert all("mns_events" not in str(t) for t in info["triggers"])
    monkeypatch.setattr(gpi, "_airflow_major", lambda: 3)
    info = gpi.get_provider_info()
    assert info["queues"] == ["airflow_fc_async.queues.mns.MnsMessageQueueProvider"]
