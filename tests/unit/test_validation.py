"""Input checks: each bad input is refused before any request leaves the process, naming field and rule."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import responses

from airflow_fc_async.core import validation as v
from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcValidationError
from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.http import RetryPolicy
from airflow_fc_async.core.mns import MnsClient
from airflow_fc_async.core.models import AsyncInvokeConfig, TaskStatus

EP = "https://1234.cn-hangzhou.fc.aliyuncs.com"
QUEUE_ARN = "acs:mns:cn-hangzhou:1234:/queues/fc-dest/messages"


@pytest.mark.parametrize("name", ["f", "_f", "my-func", "A1_b-c", "x" * 64])
def test_function_name_accepted(name: str) -> None:
    assert v.check_function_name(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "-a", "a.b", "a b", "x" * 65, "fn/x", "é"])
def test_function_name_refused(name: str) -> None:
    with pytest.raises(FcValidationError) as err:
        v.check_function_name(name)
    assert err.value.field == "function_name"
    assert "1-64" in err.value.problem


def test_non_string_name_names_the_type() -> None:
    with pytest.raises(FcValidationError, match="must be a string, got int"):
        v.check_function_name(5)


@pytest.mark.parametrize("q", ["LATEST", "1", "42", "prod", "blue-green_2", "a" * 128])
def test_qualifier_accepted(q: str) -> None:
    assert v.check_qualifier(q) == q


@pytest.mark.parametrize("q", ["", "latest!", "1a-", "-x", "_x", "a" * 129, "v 1"])
def test_qualifier_refused(q: str) -> None:
    with pytest.raises(FcValidationError) as err:
        v.check_qualifier(q)
    assert err.value.field == "qualifier"


@pytest.mark.parametrize("tid", ["a", "_a", "task-001", "T_1-2", "a" * 128])
def test_task_id_accepted(tid: str) -> None:
    assert v.check_task_id(tid) == tid


@pytest.mark.parametrize("tid", ["", "1abc", "-a", "a.b", "a/b", "a" * 129, "a b"])
def test_task_id_refused(tid: str) -> None:
    with pytest.raises(FcValidationError) as err:
        v.check_task_id(tid)
    assert err.value.field == "task_id"
    assert "128" in err.value.problem


def test_generated_task_ids_are_valid_and_unique() -> None:
    ids = {v.new_task_id() for _ in range(200)}
    assert len(ids) == 200
    for tid in ids:
        assert v.check_task_id(tid) == tid


def test_payload_encodings() -> None:
    assert v.encode_payload({"b": 1, "a": [1, "x"]}) == b'{"b":1,"a":[1,"x"]}'
    assert v.encode_payload([1, 2]) == b"[1,2]"
    assert v.encode_payload("héllo") == "héllo".encode()
    assert v.encode_payload(b"\x00\xff") == b"\x00\xff"
    assert v.encode_payload(None) == b""
    assert v.encode_payload({"k": "é"}) == '{"k":"é"}'.encode()


def test_payload_not_serialisable() -> None:
    with pytest.raises(FcValidationError, match="not JSON serialisable") as err:
        v.encode_payload({"when": datetime.now(UTC)})
    assert err.value.field == "payload"
    with pytest.raises(FcValidationError, match="not JSON serialisable"):
        v.encode_payload({"x": float("nan")})
    with pytest.raises(FcValidationError, match="must be a dict, list, str, bytes or None"):
        v.encode_payload(object())


def test_payload_size_limit_names_the_size() -> None:
    assert len(v.encode_payload("x" * v.MAX_ASYNC_PAYLOAD)) == 128 * 1024
    with pytest.raises(FcValidationError, match=r"131073 bytes, over the 131072 byte \(128 KB\) limit"):
        v.encode_payload("x" * (v.MAX_ASYNC_PAYLOAD + 1))
    big = {"data": "é" * 70_000}  # 140 000 bytes once encoded
    with pytest.raises(FcValidationError, match="140011 bytes"):
        v.encode_payload(big)


@pytest.mark.parametrize("delay", [0, 1, 3600])
def test_delay_accepted(delay: int) -> None:
    assert v.check_delay(delay) == delay


@pytest.mark.parametrize("delay", [-1, 3601, 1.5, "10", True])
def test_delay_refused(delay: object) -> None:
    with pytest.raises(FcValidationError) as err:
        v.check_delay(delay)
    assert err.value.field == "delay_seconds"


def test_statuses() -> None:
    assert v.check_statuses("failed") == [TaskStatus.FAILED]
    assert v.check_statuses(["Running", TaskStatus.RUNNING, "Succeeded"]) == [
        TaskStatus.RUNNING,
        TaskStatus.SUCCEEDED,
    ]
    with pytest.raises(FcValidationError, match="'Done' is not a known status"):
        v.check_statuses(["Failed", "Done"])
    with pytest.raises(FcValidationError, match="is empty"):
        v.check_statuses([])
    with pytest.raises(FcValidationError, match="not a known status"):
        v.check_statuses("Unknown")  # the pseudo status is not a filter


def test_time_range() -> None:
    now = datetime.now(UTC)
    v.check_time_range(now - timedelta(hours=1), now)
    v.check_time_range(None, now)
    with pytest.raises(FcValidationError, match="must be after started_after") as err:
        v.check_time_range(now, now)
    assert err.value.field == "started_before"
    with pytest.raises(FcValidationError, match="naive"):
        v.check_time_range(datetime(2024, 1, 1), now)
    with pytest.raises(FcValidationError, match="must be a datetime"):
        v.check_time_range("2024-01-01", None)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, 101, -5])
def test_page_limit(limit: int) -> None:
    with pytest.raises(FcValidationError, match="between 1 and 100"):
        v.check_page_limit(limit)


@pytest.mark.parametrize("name", ["fc-dest", "Q1", "a" * 120])
def test_queue_name_accepted(name: str) -> None:
    assert v.check_queue_name(name) == name


@pytest.mark.parametrize("name", ["", "a_b", "a.b", "a" * 121, "a/b"])
def test_queue_name_refused(name: str) -> None:
    with pytest.raises(FcValidationError) as err:
        v.check_queue_name(name)
    assert err.value.field == "queue"


def test_message_body_rules() -> None:
    assert v.check_message_body('{"k":"v"}') == '{"k":"v"}'
    with pytest.raises(FcValidationError, match="65537 bytes"):
        v.check_message_body("x" * 65537)
    with pytest.raises(FcValidationError, match="base64"):
        v.check_message_body("bad\x00byte")


@pytest.mark.parametrize(
    "arn",
    [
        QUEUE_ARN,
        "acs:mns:cn-hangzhou:1234:/topics/t1/messages",
        "acs:fc:cn-hangzhou:1234:functions/other_fn",
        "acs:eventbridge:cn-hangzhou:1234:eventbus/default",
    ],
)
def test_destination_arns_accepted(arn: str) -> None:
    assert v.check_destination_arn(arn, "on_success") == arn


@pytest.mark.parametrize("arn", ["fc-dest", "acs:mns:cn-hangzhou:1234:/queues/a_b/messages", "arn:aws:sqs:x"])
def test_destination_arns_refused(arn: str) -> None:
    with pytest.raises(FcValidationError, match="not a destination ARN") as err:
        v.check_destination_arn(arn, "on_failure")
    assert err.value.field == "on_failure"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_async_retry_attempts": 9}, "max_async_retry_attempts"),
        ({"max_async_retry_attempts": -1}, "max_async_retry_attempts"),
        ({"max_async_event_age_in_seconds": 0}, "max_async_event_age_in_seconds"),
        ({"max_async_event_age_in_seconds": 2_592_001}, "max_async_event_age_in_seconds"),
        ({"on_success": "queue-name"}, "on_success"),
        ({"async_task": "yes"}, "async_task"),
    ],
)
def test_async_invoke_config_ranges(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(FcValidationError) as err:
        v.check_async_invoke_config(AsyncInvokeConfig(**kwargs))  # type: ignore[arg-type]
    assert err.value.field == field


def test_async_invoke_config_edges_accepted() -> None:
    cfg = AsyncInvokeConfig(True, 0, 2_592_000, QUEUE_ARN, QUEUE_ARN)
    assert v.check_async_invoke_config(cfg) is cfg
    assert v.check_async_invoke_config(
        AsyncInvokeConfig(max_async_retry_attempts=8, max_async_event_age_in_seconds=1)
    )


# -- nothing leaves the process ------------------------------------------------------------------------------
@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def fc():
    client = FcClient(EP, Credentials("ak", "sk"), retry=RetryPolicy.never())
    yield client
    client.close()


@pytest.fixture
def mns():
    client = MnsClient(
        "https://1234.mns.cn-hangzhou.aliyuncs.com", Credentials("ak", "sk"), retry=RetryPolicy.never()
    )
    yield client
    client.close()


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.invoke_async("bad name", {}), "function_name"),
        (lambda c: c.invoke_async("fn", {}, task_id="1bad"), "task_id"),
        (lambda c: c.invoke_async("fn", {}, qualifier="bad!"), "qualifier"),
        (lambda c: c.invoke_async("fn", "x" * (200 * 1024)), "payload"),
        (lambda c: c.invoke_async("fn", {"s": {1, 2}}), "payload"),
        (lambda c: c.invoke_async("fn", {}, delay_seconds=4000), "delay_seconds"),
        (lambda c: c.get_async_task("fn", "bad id"), "task_id"),
        (lambda c: c.stop_async_task("fn", "a" * 129), "task_id"),
        (lambda c: c.list_async_tasks("fn", page_size=101), "page_size"),
        (lambda c: c.list_async_tasks("fn", status="Done"), "status"),
        (lambda c: c.list_async_tasks("fn", limit=0), "limit"),
        (
            lambda c: c.list_async_tasks(
                "fn",
                started_after=datetime(2024, 2, 1, tzinfo=UTC),
                started_before=datetime(2024, 1, 1, tzinfo=UTC),
            ),
            "started_before",
        ),
        (
            lambda c: c.put_async_invoke_config("fn", AsyncInvokeConfig(max_async_retry_attempts=9)),
            "max_async_retry_attempts",
        ),
        (lambda c: c.get_function("fn", qualifier="?"), "qualifier"),
    ],
)
def test_fc_client_validates_before_sending(rsps, fc, call, field) -> None:
    with pytest.raises(FcValidationError) as err:
        call(fc)
    assert err.value.field == field
    assert len(rsps.calls) == 0


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.send_message("bad_queue", "x"), "queue"),
        (lambda c: c.send_message("q", "x" * 70_000), "body"),
        (lambda c: c.send_message("q", "x", priority=17), "priority"),
        (lambda c: c.receive_messages("q", max_messages=17), "max_messages"),
        (lambda c: c.receive_messages("q", wait_seconds=31), "wait_seconds"),
        (lambda c: c.change_message_visibility("q", "h", 0), "visibility_timeout"),
        (lambda c: c.delete_message("q", ""), "receipt_handle"),
        (lambda c: c.create_queue("q", visibility_timeout=43201), "visibility_timeout"),
        (lambda c: c.batch_send_messages("q", ["ok", "bad\x01"]), "body"),
    ],
)
def test_mns_client_validates_before_sending(rsps, mns, call, field) -> None:
    with pytest.raises(FcValidationError) as err:
        call(mns)
    assert err.value.field == field
    assert len(rsps.calls) == 0


def test_validation_error_is_a_value_error_with_a_readable_message() -> None:
    with pytest.raises(ValueError, match=r"^delay_seconds: must be between 0 and 3600, got 9999$"):
        v.check_delay(9999)
    assert json.dumps({"e": str(FcValidationError("f", "p"))}) == '{"e": "f: p"}'
