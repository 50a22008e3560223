"""FcDestinationEventTrigger as Airflow sees it: serialization, MessageQueueTrigger(scheme="mns"), validation."""

from __future__ import annotations

import pytest

from airflow_fc_async.compat import _airflow_version

pytestmark = pytest.mark.skipif(
    _airflow_version() < (3, 0), reason="event-driven scheduling (BaseEventTrigger) needs Airflow 3.0+"
)


def test_serialize_round_trip_has_no_secret() -> None:
    from airflow_fc_async.triggers.mns_events import FcDestinationEventTrigger

    trig = FcDestinationEventTrigger(
        "fc-dlq", function_names="my-fc-job", conditions=["Failure"], wait_seconds=99
    )
    path, kwargs = trig.serialize()
    assert path == "airflow_fc_async.triggers.mns_events.FcDestinationEventTrigger"
    assert (
        kwargs["function_names"] == ["my-fc-job"] and kwargs["wait_seconds"] == 30
    )  # long poll capped at 30
    again = FcDestinationEventTrigger(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert not any("secret" in k for k in kwargs)


def test_bad_queue_name_is_refused() -> None:
    from airflow_fc_async.core.errors import FcValidationError
    from airflow_fc_async.triggers.mns_events import FcDestinationEventTrigger

    with pytest.raises(FcValidationError, match="queue_name"):
        FcDestinationEventTrigger(" ")


def test_message_queue_trigger_scheme_and_uri() -> None:
    msg_queue = pytest.importorskip(
        "airflow.providers.common.messaging.triggers.msg_queue", reason="common-messaging not installed"
    )
    trig = msg_queue.MessageQueueTrigger(scheme="mns", queue_name="fc-dlq", conditions="Timeout")
    path, kwargs = trig.serialize()
    assert path.endswith("mns_events.FcDestinationEventTrigger")
    assert kwargs["queue_name"] == "fc-dlq" and kwargs["conditions"] == ["Timeout"]
    with pytest.warns(Warning):
        by_uri = msg_queue.MessageQueueTrigger(queue="mns://fc-dlq")
    assert by_uri.serialize()[1]["queue_name"] == "fc-dlq"


class _FakeMns:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.handed_back: list[tuple[str, int]] = []

    async def batch_delete_messages(self, queue: str, handles: list[str]) -> list[tuple[str, str]]:
        self.deleted.extend(handles)
        return []

    async def change_message_visibility(self, queue: str, handle: str, seconds: int) -> str:
        self.handed_back.append((handle, seconds))
        return handle + "-new"


async def test_advance_deletes_what_was_stored_hands_back_the_rest() -> None:
    shared = pytest.importorskip("airflow.triggers.shared_stream", reason="ack mode needs Airflow 3.3+")
    from airflow_fc_async.triggers.mns_events import Delivery, MnsRecordProducer

    producer = MnsRecordProducer("q", "fc_default")
    fake = _FakeMns()

    async def client() -> _FakeMns:
        return fake

    producer._client = client  # type: ignore[method-assign]
    item = shared.AdvanceItem
    out = shared.AdvanceOutcome
    await producer.advance(
        [
            item(Delivery("m1", "h1", 1), out(acked=1, failed=0, rejected=1)),  # one watcher stored it
            item(Delivery("m2", "h2", 3), out(acked=0, failed=0, rejected=2)),  # nobody wanted it
            item(Delivery("m3", "h3", 1), out(acked=1, failed=1, rejected=0)),  # a persist never confirmed
            item(Delivery("m4", "h4", 1), out(acked=0, failed=0, rejected=0)),  # no watcher subscribed
        ]
    )
    assert fake.deleted == ["h1"]
    assert [h for h, _ in fake.handed_back] == ["h2", "h4"]
    assert fake.handed_back[0][1] > fake.handed_back[1][1]  # a message received more often waits longer
    assert producer.stats["unsettled"] == 1
