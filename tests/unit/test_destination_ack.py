"""Acknowledging a stored record: a failed delete never raises (the record is stored; the message goes later)."""

from __future__ import annotations

import asyncio

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.destination_receiver import (
    ClaimedRecord,
    aack_destination_record,
    ack_destination_record,
)
from airflow_fc_async.core.errors import FcServerError
from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient
from airflow_fc_async.core.models import DestinationRecord

RECORD = DestinationRecord.from_json({"requestContext": {"requestId": "1-abc"}})
CLAIM = ClaimedRecord(RECORD, "q", "m-1", "handle-1", True)
CREDS = Credentials("ak", "sk")


class FailingSync(MnsClient):
    calls = 0

    def delete_message(self, queue: str, receipt_handle: str) -> None:
        self.calls += 1
        raise FcServerError("down", status=503, code="ServiceUnavailable", request_id=None)


class FailingAsync(AsyncMnsClient):
    calls = 0

    async def delete_message(self, queue: str, receipt_handle: str) -> None:
        self.calls += 1
        raise FcServerError("down", status=503, code="ServiceUnavailable", request_id=None)


def test_sync_ack_survives_a_failed_delete() -> None:
    client = FailingSync("http://127.0.0.1:1", CREDS)
    assert ack_destination_record(client, CLAIM) is False
    assert client.calls == 1


def test_async_ack_survives_a_failed_delete() -> None:
    client = FailingAsync("http://127.0.0.1:1", CREDS)
    assert asyncio.run(aack_destination_record(client, CLAIM)) is False
    assert client.calls == 1
