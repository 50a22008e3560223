"""Fault injection for FC's destination sends (action ``DestinationRecord``): drop, failed delivery, latency."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_fc_async.emulator.faults import DESTINATION_ACTION, Fault, FaultRule, Faults
from tests.emulator.conftest import unique, wait_for, wait_terminal


def _deploy(emu: Any) -> tuple[str, str]:
    name, queue = unique("dest-fault"), unique("dest-fault-q")
    arn = f"acs:mns:{emu.region}:{emu.account_id}:/queues/{queue}/messages"
    emu.deploy(
        name,
        source="def handler(event, context):\n    return 'ok'\n",
        async_invoke_config={"asyncTask": True, "destinationConfig": {"onSuccess": {"destination": arn}}},
    )
    return name, queue


def test_drop_loses_the_record_while_fc_reports_it_delivered(emu: Any, fc: Any, mns: Any) -> None:
    name, queue = _deploy(emu)
    emu.inject_faults(action="DestinationRecord", path=queue, rates={"drop": 1.0})
    task_id = fc.invoke_async(name, {}).task_id
    task = wait_terminal(fc, name, task_id)
    assert task.destination_status == "Succeeded"
    assert mns.receive_messages(queue, wait_seconds=1) == []
    assert emu.stats()["faults"]["DestinationRecord:drop"] >= 1


def test_a_failed_delivery_is_reported_failed(emu: Any, fc: Any, mns: Any) -> None:
    name, queue = _deploy(emu)
    emu.inject_faults(action="DestinationRecord", path=queue, rates={"503": 1.0})
    task_id = fc.invoke_async(name, {}).task_id
    wait_for(lambda: fc.get_async_task(name, task_id).destination_status == "Failed")
    assert mns.receive_messages(queue, wait_seconds=1) == []


def test_latency_delivers_late(emu: Any, fc: Any, mns: Any) -> None:
    name, queue = _deploy(emu)
    emu.inject_faults(action="DestinationRecord", path=queue, latency=2.0)
    inv = fc.invoke_async(name, {})
    task = wait_terminal(fc, name, inv.task_id)
    ended = time.monotonic()
    assert task.destination_status == "Succeeded"
    [msg] = wait_for(lambda: mns.receive_messages(queue, wait_seconds=1), timeout=30)
    assert inv.request_id in msg.body and time.monotonic() - ended >= 1.0


def test_admin_rules_over_http(emu: Any) -> None:
    import requests

    url = f"{emu.endpoint}/_emulator/faults"
    rule = {"action": "DestinationRecord", "rates": {"drop": 0.05}}
    reply = requests.post(url, json={"rules": [rule], "seed": 1}, headers=emu.admin_headers(), timeout=10)
    assert reply.status_code == 200 and reply.json()["rules"][0]["rates"] == {"drop": 0.05}


@pytest.mark.parametrize(
    "raw",
    [
        {"action": "GetAsyncTask", "rates": {"drop": 0.1}},  # drop is for destination sends only
        {"rates": {"drop": 0.1}},
        {"action": "DestinationRecord", "rates": {"429": 0.1}},
        {"action": "DestinationRecord", "reset_before": 0.1},
    ],
)
def test_rules_that_cannot_apply_are_refused_by_name(raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"drop|DestinationRecord"):
        FaultRule.from_json(raw)


def test_a_rule_without_an_action_leaves_destination_sends_alone() -> None:
    # R1's "every FC and MNS request" rules failed one record in three once destination sends were injectable
    faults = Faults()
    faults.set([{"rates": {"500": 1.0}, "latency": 0.05}])
    assert faults.decide("GetAsyncTask", "/2023-03-30/functions/f/async-tasks/t").kind == "500"
    arn = "acs:mns:cn-hangzhou:1:/queues/q/messages"
    assert faults.decide(DESTINATION_ACTION, arn) == Fault()
    faults.set([{"action": DESTINATION_ACTION, "rates": {"500": 1.0}}])
    assert faults.decide(DESTINATION_ACTION, arn).kind == "500"
