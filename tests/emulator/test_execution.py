"""Execution faithful to FC: the seed scenario, timeouts, retries, stops, expiry, crashes, concurrency."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from airflow_fc_async.core.models import DestinationRecord, TaskStatus
from airflow_fc_async.emulator import load_config
from tests.emulator.conftest import unique, wait_for, wait_terminal

SEED = Path(__file__).resolve().parents[1] / "fixtures" / "seed" / "s.yaml"
SHARED_SEED = Path("/work/shared/fixtures/seed/s.yaml")


def _records(mns, queue: str, request_id: str, timeout: float = 10.0) -> list[DestinationRecord]:
    """Every destination record of ``request_id`` in ``queue`` (deleting them), after waiting for the first."""
    found: list[DestinationRecord] = []

    def poll() -> bool:
        for msg in mns.receive_messages(queue, max_messages=16, wait_seconds=1):
            record = DestinationRecord.from_body(msg.body)
            if record and record.request_id == request_id:
                found.append(record)
                mns.delete_message(queue, msg.receipt_handle)
            else:
                mns.change_message_visibility(queue, msg.receipt_handle, 1)
        return bool(found)

    wait_for(poll, timeout)
    return found


def test_the_seed_yaml_loads_unchanged():
    for path in (SEED, SHARED_SEED) if SHARED_SEED.exists() else (SEED,):
        [spec] = load_config(path)
        assert spec.name == "my-fc-job" and spec.handler == "index.handler" and spec.timeout == 60
        assert spec.instance_concurrency == 1 and spec.memory_size == 128
        cfg = spec.async_config
        assert (
            cfg.async_task
            and cfg.max_async_retry_attempts == 1
            and cfg.max_async_event_age_in_seconds == 172800
        )
        assert cfg.on_failure == "acs:mns:cn-hangzhou:1234567890123456:/queues/fc-dlq/messages"
    assert SEED.read_text().split("edition:", 1)[1] == SHARED_SEED.read_text().split("edition:", 1)[1]


def test_seed_scenario_times_out_twice_and_lands_in_the_queue(emu, fc, mns):
    [spec] = load_config(SEED)
    spec.timeout = 2  # the seed's 60 s, shortened so that the scenario runs in seconds
    emu.deploy_spec(spec)
    inv = fc.invoke_async("my-fc-job", {"failure": True}, task_id=unique("seed"))
    task = wait_terminal(fc, "my-fc-job", inv.task_id, timeout=30)
    assert task.status is TaskStatus.FAILED
    assert task.retried_times == 1
    assert task.error_message.startswith("Function timed out after 2 seconds (maxMemoryUsage: ")
    assert emu.stats()["executions"][inv.task_id] == 2
    statuses = [e.status for e in task.events]
    assert (
        statuses.count("Running") == 2 and "Retrying" in statuses and task.destination_status == "Succeeded"
    )
    [record] = _records(mns, "fc-dlq", inv.request_id)
    assert record.approximate_invoke_count == 2
    assert record.condition == "InvocationError" and record.function_error == "InvocationError"
    assert record.function_arn == f"acs:fc:cn-hangzhou:{emu.account_id}:functions/my-fc-job"
    assert record.request_payload == {"failure": True}
    assert record.status_code == 200
    assert record.response_payload["errorMessage"].startswith(
        "Function timed out after 2 seconds (maxMemoryUsage: "
    )
    assert record.response_payload["errorMessage"].endswith("MB)")
    raw = record.raw
    assert isinstance(raw["timestamp"], int) and isinstance(raw["requestPayload"], str)
    assert set(raw) == {"timestamp", "requestContext", "requestPayload", "responseContext", "responsePayload"}
    assert "seed job started" in emu.logs(inv.request_id)


def test_fixture_timeout_function_fails_after_two_attempts(fc, mns, emu):
    inv = fc.invoke_async("timeout-fn", {"failure": True}, task_id=unique("to"))
    task = wait_terminal(fc, "timeout-fn", inv.task_id, timeout=20)
    assert task.status is TaskStatus.FAILED and task.retried_times == 1
    [record] = _records(mns, "fc-test-timeout", inv.request_id)
    assert record.approximate_invoke_count == 2
    assert record.response_payload == {"errorMessage": task.error_message}


def test_exception_is_unhandled_invocation_error_with_retry(fc, mns, emu):
    inv = fc.invoke_async("failer", "payload", task_id=unique("fail"))
    task = wait_terminal(fc, "failer", inv.task_id)
    assert task.status is TaskStatus.FAILED and task.retried_times == 1
    assert task.error_message == "UnhandledInvocationError"
    error = json.loads(task.return_payload)
    assert error["errorType"] == "BoomError" and error["errorMessage"] == "boom: payload"
    assert isinstance(error["stackTrace"], list) and "_runner.py" not in "".join(error["stackTrace"])
    [record] = _records(mns, "fc-test-failer", inv.request_id)
    assert record.approximate_invoke_count == 2 and record.response_payload["errorType"] == "BoomError"
    assert emu.logs(inv.request_id).count("about to fail") == 2


def test_success_record_goes_to_on_success(fc, mns):
    inv = fc.invoke_async("echo", {"ok": 1}, task_id=unique("ok"))
    [record] = _records(mns, "fc-test-echo", inv.request_id)
    assert record.succeeded and record.condition == "" and record.approximate_invoke_count == 1
    assert record.response_payload == {"ok": 1}


def test_stop_a_running_task(fc, mns, emu):
    inv = fc.invoke_async("sleeper", {"seconds": 30}, task_id=unique("stop"))
    wait_for(lambda: "line 2" in emu.logs(inv.request_id))  # live logs of the running attempt
    assert fc.get_async_task("sleeper", inv.task_id).status is TaskStatus.RUNNING
    fc.stop_async_task("sleeper", inv.task_id)
    task = wait_terminal(fc, "sleeper", inv.task_id, timeout=10)
    assert task.status is TaskStatus.STOPPED
    statuses = [e.status for e in task.events]
    assert statuses.index("Stopping") < statuses.index("Stopped")
    assert emu.stats()["executions"][inv.task_id] == 1
    [record] = _records(mns, "fc-test-sleeper", inv.request_id)
    assert not record.succeeded and record.approximate_invoke_count == 1
    assert "line 1" in emu.logs(inv.request_id)


def test_stop_a_queued_task_never_runs_it(fc, emu):
    inv = fc.invoke_async("echo", {}, task_id=unique("qstop"), delay_seconds=30)
    fc.stop_async_task("echo", inv.task_id)
    task = fc.get_async_task("echo", inv.task_id)
    assert task.status is TaskStatus.STOPPED
    assert emu.stats()["executions"].get(inv.task_id, 0) == 0


def test_stop_a_finished_task_is_refused(fc):
    inv = fc.invoke_async("echo", {}, task_id=unique("done"))
    wait_terminal(fc, "echo", inv.task_id)
    with pytest.raises(Exception) as info:
        fc.stop_async_task("echo", inv.task_id)
    assert getattr(info.value, "status", None) == 400


def test_event_older_than_max_age_expires(fc, emu):
    name = unique("expiring")
    emu.deploy(
        name,
        source="def handler(event, context):\n    return 'ran'\n",
        async_invoke_config={"asyncTask": True, "maxAsyncEventAgeInSeconds": 1},
    )
    inv = fc.invoke_async(name, {}, task_id=unique("old"), delay_seconds=2)
    task = wait_terminal(fc, name, inv.task_id)
    assert task.status is TaskStatus.EXPIRED
    assert emu.stats()["executions"].get(inv.task_id, 0) == 0


def test_a_crashing_function_cannot_take_the_server_down(fc, emu):
    name = unique("crasher")
    emu.deploy(
        name,
        source="import os\ndef handler(event, context):\n    os._exit(3)\n",
        async_invoke_config={"asyncTask": True, "maxAsyncRetryAttempts": 0},
    )
    inv = fc.invoke_async(name, {}, task_id=unique("crash"))
    task = wait_terminal(fc, name, inv.task_id)
    assert task.status is TaskStatus.FAILED and "exit code 3" in task.error_message
    assert fc.invoke_sync("echo", "still alive") == b"still alive"


def test_handler_context_and_environment(fc, emu, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "main.py").write_text(
        "import json, os\n"
        "def run(event, context):\n"
        "    f = context.function\n"
        "    return json.dumps({'rid': context.request_id, 'name': f.name, 'mem': f.memory_size, 'timeout': f.timeout,\n"
        "        'handler': f.handler, 'region': context.region, 'account': context.account_id,\n"
        "        'env': os.environ.get('COLOR'), 'creds': hasattr(context.credentials, 'access_key_id')})\n"
    )
    shutil.copy(SEED, tmp_path / "unused.yaml")
    emu.deploy(
        "ctx-fn", handler="main.run", code_dir=code, memory_size=256, timeout=7, environment={"COLOR": "blue"}
    )
    got = json.loads(fc.invoke_sync("ctx-fn", {}))
    assert (
        got["rid"].startswith("1-") and got["name"] == "ctx-fn" and got["mem"] == 256 and got["timeout"] == 7
    )
    assert got["handler"] == "main.run" and got["region"] == emu.region and got["account"] == emu.account_id
    assert got["env"] == "blue" and got["creds"] is True


def test_200_concurrent_invocations_reach_their_terminal_states(fc, emu):
    prefix = unique("many")
    jobs = [("echo", f"{prefix}-ok-{i}") for i in range(170)] + [
        ("failer", f"{prefix}-ko-{i}") for i in range(30)
    ]
    with ThreadPoolExecutor(16) as pool:
        invocations = list(pool.map(lambda job: fc.invoke_async(job[0], {"i": job[1]}, task_id=job[1]), jobs))
    assert len({inv.request_id for inv in invocations}) == 200

    def all_done() -> bool:
        ok = list(fc.list_async_tasks("echo", prefix=prefix))
        ko = list(fc.list_async_tasks("failer", prefix=prefix))
        return len(ok) == 170 and len(ko) == 30 and all(t.is_terminal for t in ok + ko)

    wait_for(all_done, timeout=120, interval=0.5)
    ok = {t.task_id: t for t in fc.list_async_tasks("echo", prefix=prefix)}
    ko = {t.task_id: t for t in fc.list_async_tasks("failer", prefix=prefix)}
    assert {t.status for t in ok.values()} == {TaskStatus.SUCCEEDED}
    assert {t.status for t in ko.values()} == {TaskStatus.FAILED}
    executions = emu.stats()["executions"]
    assert all(executions[task_id] == 1 for task_id in ok)  # exactly once
    assert all(executions[task_id] == 2 for task_id in ko)  # one retry each
    assert all(json.loads(t.return_payload) == {"i": t.task_id} for t in ok.values())


def test_base64_destinations_option(tmp_path):
    from airflow_fc_async.core.fc import FcClient
    from airflow_fc_async.core.mns import MnsClient
    from airflow_fc_async.emulator import Emulator

    with Emulator(base64_destinations=True, retry_delay=0.1) as emu:
        emu.deploy(
            "b64",
            source="def handler(event, context):\n    return 'done'\n",
            async_invoke_config={
                "asyncTask": True,
                "destinationConfig": {
                    "onSuccess": {
                        "destination": f"acs:mns:{emu.region}:{emu.account_id}:/queues/b64q/messages"
                    }
                },
            },
        )
        emu.queues.ensure("b64q")
        inv = FcClient(emu.endpoint, emu.credentials).invoke_async("b64", {}, task_id="b64-1")
        mns = MnsClient(emu.endpoint, emu.credentials)
        [msg] = wait_for(lambda: mns.receive_messages("b64q", wait_seconds=1))
        assert not msg.body.startswith("{")
        record = DestinationRecord.from_body(msg.body)
        assert record.request_id == inv.request_id and record.response_payload == "done"
