"""Every MNS queue operation against the live emulator through the project's MnsClient."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from airflow_fc_async.core.errors import FcNotFoundError
from tests.emulator.conftest import mns_raw, unique

XMLNS = "http://mns.aliyuncs.com/doc/v1/"


@pytest.fixture
def queue(mns):
    name = unique("q")
    assert mns.create_queue(name, visibility_timeout=2) is True
    yield name
    mns.delete_queue(name)


def test_create_get_delete_queue(mns, emu):
    name = unique("q")
    assert mns.create_queue(name, visibility_timeout=5, delay_seconds=0) is True
    assert mns.create_queue(name, visibility_timeout=5) is False  # same attributes: 204
    r = mns_raw(
        emu,
        "PUT",
        f"/queues/{name}",
        body=f'<Queue xmlns="{XMLNS}"><VisibilityTimeout>6</VisibilityTimeout></Queue>'.encode(),
    )
    assert r.status_code == 409 and "<Code>QueueAlreadyExist</Code>" in r.text
    assert mns.create_queue(name, visibility_timeout=6) is False  # the client keeps the existing queue
    attrs = mns.get_queue_attributes(name)
    assert attrs["QueueName"] == name and int(attrs["VisibilityTimeout"]) == 5
    assert int(attrs["ActiveMessages"]) == 0 and int(attrs["MessageRetentionPeriod"]) == 345600
    mns.delete_queue(name)
    with pytest.raises(FcNotFoundError) as info:
        mns.get_queue_attributes(name)
    assert info.value.code == "QueueNotExist"


def test_create_queue_answers_201_with_location(emu):
    name = unique("q")
    r = mns_raw(
        emu,
        "PUT",
        f"/queues/{name}",
        body=f'<Queue xmlns="{XMLNS}"><VisibilityTimeout>7</VisibilityTimeout></Queue>'.encode(),
    )
    assert r.status_code == 201 and r.headers["Location"].endswith(f"/queues/{name}")
    assert r.headers["x-mns-request-id"]
    r = mns_raw(emu, "GET", f"/queues/{name}")
    assert f'<Queue xmlns="{XMLNS}">' in r.text and "<VisibilityTimeout>7</VisibilityTimeout>" in r.text


def test_send_receive_delete(mns, queue):
    body = '{"k": "v & <w>"}'
    message_id = mns.send_message(queue, body)
    [msg] = mns.receive_messages(queue, max_messages=1, wait_seconds=1)
    assert msg.message_id == message_id and msg.body == body
    assert msg.body_md5 == hashlib.md5(body.encode()).hexdigest().upper()
    assert msg.dequeue_count == 1 and msg.receipt_handle and msg.priority == 8
    assert msg.next_visible_time > msg.enqueue_time
    assert mns.receive_messages(queue, wait_seconds=0) == []  # invisible now
    mns.delete_message(queue, msg.receipt_handle)
    with pytest.raises(FcNotFoundError) as info:
        mns.delete_message(queue, msg.receipt_handle)
    assert info.value.code == "MessageNotExist"


def test_batch_send_receive_peek_and_batch_delete(mns, queue):
    bodies = [f"m{i}" for i in range(5)]
    ids = mns.batch_send_messages(queue, bodies)
    assert len(ids) == 5 and len(set(ids)) == 5
    peeked = mns.peek_messages(queue, max_messages=16)
    assert sorted(m.body for m in peeked) == bodies
    assert all(m.receipt_handle is None and m.dequeue_count == 0 for m in peeked)
    received = mns.receive_messages(queue, max_messages=16, wait_seconds=1)
    assert sorted(m.body for m in received) == bodies
    stale = received[0].receipt_handle
    assert mns.batch_delete_messages(queue, [m.receipt_handle for m in received[1:]]) == []
    mns.delete_message(queue, stale)
    failed = mns.batch_delete_messages(queue, [stale])
    assert failed == [(stale, "MessageNotExist")]
    assert int(mns.get_queue_attributes(queue)["ActiveMessages"]) == 0


def test_visibility_timeout_and_change_visibility(mns, queue):
    mns.send_message(queue, "again")
    [first] = mns.receive_messages(queue, wait_seconds=1)
    new_handle = mns.change_message_visibility(queue, first.receipt_handle, 1)
    assert new_handle != first.receipt_handle
    with pytest.raises(FcNotFoundError):  # the old handle is spent
        mns.delete_message(queue, first.receipt_handle)
    [second] = mns.receive_messages(queue, wait_seconds=3)
    assert second.message_id == first.message_id and second.dequeue_count == 2
    assert second.receipt_handle not in (first.receipt_handle, new_handle)
    with pytest.raises(FcNotFoundError):
        mns.delete_message(queue, new_handle)
    mns.delete_message(queue, second.receipt_handle)


def test_long_poll_wakes_as_soon_as_a_message_arrives(mns, queue):
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.extend(mns.receive_messages(queue, wait_seconds=20)))
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)
    mns.send_message(queue, "wake")
    thread.join(15)
    assert not thread.is_alive()
    assert [m.body for m in got] == ["wake"]  # type: ignore[attr-defined]
    assert time.monotonic() - started < 15  # woke on the message, not at the 20 s deadline


def test_delayed_message_and_priority(mns, queue):
    mns.send_message(queue, "later", delay_seconds=1)
    attrs = mns.get_queue_attributes(queue)
    assert int(attrs["DelayMessages"]) == 1 and int(attrs["ActiveMessages"]) == 0
    mns.send_message(queue, "low", priority=16)
    mns.send_message(queue, "high", priority=1)
    msgs = mns.receive_messages(queue, max_messages=2, wait_seconds=0)
    assert [m.body for m in msgs] == ["high", "low"]
    [later] = mns.receive_messages(queue, wait_seconds=5)
    assert later.body == "later"


def test_receive_from_missing_queue_and_bad_handle(mns, emu):
    with pytest.raises(FcNotFoundError) as info:
        mns.receive_messages(unique("nope"), wait_seconds=0)
    assert info.value.code == "QueueNotExist"
    name = unique("q")
    mns.create_queue(name)
    r = mns_raw(emu, "DELETE", f"/queues/{name}/messages?ReceiptHandle=garbage")
    assert r.status_code == 400 and "<Code>ReceiptHandleError</Code>" in r.text
    r = mns_raw(emu, "GET", f"/queues/{name}/messages?waitseconds=0")
    assert r.status_code == 404 and "<Code>MessageNotExist</Code>" in r.text and f'xmlns="{XMLNS}"' in r.text


def _handle(emu, queue: str) -> str:
    import re

    r = mns_raw(emu, "GET", f"/queues/{queue}/messages?waitseconds=1")
    assert r.status_code == 200, r.text
    return re.search(r"<ReceiptHandle>(.*?)</ReceiptHandle>", r.text).group(1)


def test_query_parameter_names_are_case_insensitive(mns, emu, queue):
    """The Node SDK's spelling (receiptHandle, visibilityTimeout): MNS reads names case-insensitively."""
    from urllib.parse import quote

    mns.send_message(queue, "one")
    handle = quote(_handle(emu, queue), safe="")
    r = mns_raw(emu, "PUT", f"/queues/{queue}/messages?receiptHandle={handle}&visibilityTimeout=1")
    assert r.status_code == 200 and "<ChangeVisibility" in r.text, r.text
    new = quote(r.text.split("<ReceiptHandle>")[1].split("</ReceiptHandle>")[0], safe="")
    # DeleteMessage, not BatchDeleteMessage (which would want a body)
    r = mns_raw(emu, "DELETE", f"/queues/{queue}/messages?receipthandle={new}")
    assert r.status_code == 204, r.text
    assert int(mns.get_queue_attributes(queue)["ActiveMessages"]) == 0
    mns.send_message(queue, "two")
    assert (
        mns_raw(emu, "GET", f"/queues/{queue}/messages?NumOfMessages=2&WaitSeconds=1").text.count("<Message>")
        == 1
    )  # BatchReceiveMessage: a <Messages> list


def test_list_queue_pages_with_ret_number_and_marker(mns, emu):
    import re

    from airflow_fc_async.core.signing import sign_mns_request

    prefix = unique("page")
    names = sorted(f"{prefix}-{i}" for i in range(5))
    for name in names:
        mns.create_queue(name)

    def page(marker: str | None) -> tuple[list[str], str | None]:
        headers = {"x-mns-prefix": prefix, "x-mns-ret-number": "2"}
        if marker:
            headers["x-mns-marker"] = marker
        signed = sign_mns_request(
            emu.credentials,
            method="GET",
            host=emu.endpoint.split("://", 1)[1],
            resource="/queues",
            headers=headers,
        )
        import requests

        r = requests.get(emu.endpoint + "/queues", headers=signed, timeout=30)
        assert r.status_code == 200, r.text
        found = [u.rsplit("/", 1)[1] for u in re.findall(r"<QueueURL>(.*?)</QueueURL>", r.text)]
        m = re.search(r"<NextMarker>(.*?)</NextMarker>", r.text)
        return found, m.group(1) if m else None

    seen, marker, pages = [], None, 0
    while True:
        found, marker = page(marker)
        seen += found
        pages += 1
        assert len(found) <= 2
        if marker is None:
            break
    assert seen == names and pages == 3
    for name in names:
        mns.delete_queue(name)
