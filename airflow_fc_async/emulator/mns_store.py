"""MNS queues in memory: visibility timeouts, single-use receipt handles, delays, priorities, retention and
long polls that sleep on a Condition (no busy loop) and wake as soon as a message becomes available."""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field

from airflow_fc_async.emulator.wire import ApiError, now_ms

__all__ = ["QUEUE_DEFAULTS", "Message", "Queue", "QueueStore"]

QUEUE_DEFAULTS = {
    "DelaySeconds": 0,
    "MaximumMessageSize": 65536,
    "MessageRetentionPeriod": 345600,
    "VisibilityTimeout": 30,
    "PollingWaitSeconds": 0,
}
_RANGES = {
    "DelaySeconds": (0, 604800),
    "MaximumMessageSize": (1024, 65536),
    "MessageRetentionPeriod": (60, 604800),
    "VisibilityTimeout": (1, 43200),
    "PollingWaitSeconds": (0, 30),
}


@dataclass(eq=False)
class Message:
    message_id: str
    body: str
    body_md5: str
    enqueue_time: int
    next_visible_time: int
    priority: int = 8
    first_dequeue_time: int = 0
    dequeue_count: int = 0
    receipt_handle: str | None = None


@dataclass(eq=False)
class Queue:
    name: str
    attributes: dict[str, int]
    logging_enabled: bool = False
    create_time: int = field(default_factory=lambda: int(time.time()))
    last_modify_time: int = field(default_factory=lambda: int(time.time()))
    messages: dict[str, Message] = field(default_factory=dict)
    deleted: bool = False

    def counts(self, now: int) -> tuple[int, int, int]:
        """(active, inactive, delayed) message counts."""
        active = inactive = delayed = 0
        for m in self.messages.values():
            if m.next_visible_time <= now:
                active += 1
            elif m.dequeue_count == 0:
                delayed += 1
            else:
                inactive += 1
        return active, inactive, delayed


def _not_exist(name: str) -> ApiError:
    return ApiError(404, "QueueNotExist", f"The queue name you provided is not exist: {name}")


def _no_message(text: str = "Message not exist.") -> ApiError:
    return ApiError(404, "MessageNotExist", text)


class QueueStore:
    """Every queue of the account; one Condition guards them all (and wakes long polls)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, Queue] = {}
        self._handles = itertools.count(1)
        self.closed = False

    # -- queues ---------------------------------------------------------------------------------------------
    def create(self, name: str, attributes: dict[str, int], logging_enabled: bool | None = None) -> bool:
        """True when created, False when it existed with the same attributes; 409 when they differ."""
        for key, value in attributes.items():
            lo, hi = _RANGES[key]
            if not lo <= value <= hi:
                raise ApiError(400, "InvalidArgument", f"{key} must be between {lo} and {hi}, got {value}")
        with self._cond:
            queue = self._queues.get(name)
            if queue is not None:
                same = all(queue.attributes[k] == v for k, v in attributes.items())
                if not same or (logging_enabled is not None and logging_enabled != queue.logging_enabled):
                    raise ApiError(
                        409, "QueueAlreadyExist", f"The queue you want to create already exists: {name}"
                    )
                return False
            self._queues[name] = Queue(name, {**QUEUE_DEFAULTS, **attributes}, bool(logging_enabled))
            return True

    def ensure(self, name: str) -> None:
        with self._cond:
            if name not in self._queues:
                self._queues[name] = Queue(name, dict(QUEUE_DEFAULTS))

    def get(self, name: str) -> Queue:
        with self._cond:
            queue = self._queues.get(name)
        if queue is None:
            raise _not_exist(name)
        return queue

    def delete(self, name: str) -> None:
        with self._cond:
            queue = self._queues.pop(name, None)
            if queue is not None:
                queue.deleted = True
            self._cond.notify_all()

    def names(self) -> list[str]:
        with self._cond:
            return sorted(self._queues)

    def attributes(self, name: str) -> dict[str, str]:
        with self._cond:
            queue = self.get(name)
            self._expire(queue, now_ms())
            active, inactive, delayed = queue.counts(now_ms())
            return {
                "QueueName": queue.name,
                "CreateTime": str(queue.create_time),
                "LastModifyTime": str(queue.last_modify_time),
                **{k: str(v) for k, v in queue.attributes.items()},
                "ActiveMessages": str(active),
                "InactiveMessages": str(inactive),
                "DelayMessages": str(delayed),
                "LoggingEnabled": "True" if queue.logging_enabled else "False",
            }

    # -- messages -------------------------------------------------------------------------------------------
    def send(self, name: str, body: str, delay: int | None = None, priority: int | None = None) -> Message:
        with self._cond:
            queue = self.get(name)
            if len(body.encode("utf-8")) > queue.attributes["MaximumMessageSize"]:
                raise ApiError(
                    400,
                    "InvalidArgument",
                    f"The message body is larger than MaximumMessageSize ({queue.attributes['MaximumMessageSize']})",
                )
            if priority is not None and not 1 <= priority <= 16:
                raise ApiError(400, "InvalidArgument", f"Priority must be between 1 and 16, got {priority}")
            if delay is not None and not 0 <= delay <= 604800:
                raise ApiError(
                    400, "InvalidArgument", f"DelaySeconds must be between 0 and 604800, got {delay}"
                )
            now = now_ms()
            wait = queue.attributes["DelaySeconds"] if delay is None else delay
            msg = Message(
                message_id=uuid.uuid4().hex.upper(),
                body=body,
                body_md5=hashlib.md5(body.encode("utf-8")).hexdigest().upper(),
                enqueue_time=now,
                next_visible_time=now + wait * 1000,
                priority=8 if priority is None else priority,
            )
            queue.messages[msg.message_id] = msg
            self._cond.notify_all()
            return msg

    def receive(self, name: str, count: int, wait_seconds: float | None, peek: bool = False) -> list[Message]:
        """Up to ``count`` visible messages; waits up to ``wait_seconds`` (queue default when None) for one."""
        deadline = time.monotonic() + (0 if peek else self._wait(name, wait_seconds))
        with self._cond:
            while True:
                queue = self.get(name)
                now = now_ms()
                self._expire(queue, now)
                visible = sorted(
                    (m for m in queue.messages.values() if m.next_visible_time <= now),
                    key=lambda m: (m.priority, m.enqueue_time),
                )[:count]
                if visible:
                    if peek:
                        return [Message(**{**m.__dict__, "receipt_handle": None}) for m in visible]
                    for m in visible:
                        m.dequeue_count += 1
                        m.first_dequeue_time = m.first_dequeue_time or now
                        m.next_visible_time = now + queue.attributes["VisibilityTimeout"] * 1000
                        m.receipt_handle = self._new_handle(now)
                    return [Message(**m.__dict__) for m in visible]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    raise _no_message()
                upcoming = [m.next_visible_time for m in queue.messages.values()]
                if upcoming:  # wake when the first hidden message becomes visible again
                    remaining = min(remaining, max(0.01, (min(upcoming) - now) / 1000))
                self._cond.wait(remaining)

    def _wait(self, name: str, wait_seconds: float | None) -> float:
        if wait_seconds is None:
            return float(self.get(name).attributes["PollingWaitSeconds"])
        if not 0 <= wait_seconds <= 30:
            raise ApiError(
                400, "InvalidArgument", f"waitseconds must be between 0 and 30, got {wait_seconds:g}"
            )
        return wait_seconds

    def delete_message(self, name: str, handle: str) -> None:
        with self._cond:
            queue = self.get(name)
            msg = self._by_handle(queue, handle)
            del queue.messages[msg.message_id]

    def change_visibility(self, name: str, handle: str, timeout: int) -> Message:
        if not 0 <= timeout <= 43200:
            raise ApiError(
                400, "InvalidArgument", f"VisibilityTimeout must be between 0 and 43200, got {timeout}"
            )
        with self._cond:
            queue = self.get(name)
            msg = self._by_handle(queue, handle)
            now = now_ms()
            msg.next_visible_time = now + timeout * 1000
            msg.receipt_handle = self._new_handle(now)
            self._cond.notify_all()
            return Message(**msg.__dict__)

    def _by_handle(self, queue: Queue, handle: str) -> Message:
        if not handle.startswith("1-") or len(handle) < 8:
            raise ApiError(
                400, "ReceiptHandleError", f"The receipt handle you provided is not valid: {handle}"
            )
        now = now_ms()
        for msg in queue.messages.values():
            if msg.receipt_handle == handle:
                if msg.next_visible_time <= now:  # visible again: the handle expired with the visibility
                    raise _no_message("The receipt handle has expired: the message is visible again.")
                return msg
        raise _no_message(f"Message not exist or the receipt handle is stale: {handle}")

    def _new_handle(self, now: int) -> str:
        raw = f"{next(self._handles)}-{now}-{secrets.randbelow(10**9)}".encode("ascii")
        return "1-" + base64.urlsafe_b64encode(raw).decode("ascii")

    def _expire(self, queue: Queue, now: int) -> None:
        horizon = now - queue.attributes["MessageRetentionPeriod"] * 1000
        for mid in [m.message_id for m in queue.messages.values() if m.enqueue_time < horizon]:
            del queue.messages[mid]

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
