"""The destination receiver as a daemon thread: it serves blocking callers, and the waiters of several event loops.

Internal to :mod:`~airflow_fc_async.core.destination_receiver` (see its docstring). A thread outlives every event loop,
so it takes over from an asyncio receiver whose loop ends while waiters are left. Nothing here imports Airflow.
"""

from __future__ import annotations

import threading
import time

from airflow_fc_async.core.destinations import BatchPlan, QueueDispatch
from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient
from airflow_fc_async.core.policies import LONG_POLL_READ_TIMEOUT
from airflow_fc_async.core.receiver_registry import (
    REGISTRY,
    Key,
    ReceiverBase,
    log,
)

__all__ = ["ThreadReceiver", "wake_or_start_thread"]


class ThreadReceiver(ReceiverBase):
    def __init__(self, key: Key, dispatch: QueueDispatch, template: MnsClient | AsyncMnsClient) -> None:
        super().__init__(key, dispatch)
        # an async receiver hands over to a thread: the client is always a sync one
        self.client: MnsClient = template.clone(MnsClient, min_read_timeout=LONG_POLL_READ_TIMEOUT)
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"mns-receiver-{self.queue}", daemon=True)
        self.thread.start()

    def _stop_if_idle(self) -> bool:
        with REGISTRY.lock:
            if self.dispatch.has_work(time.monotonic()) and not self.stopping:
                return False
            REGISTRY.threads.pop(self.key, None)
            return True

    def poke(self) -> None:
        self.wake.set()

    def _run(self) -> None:
        try:
            self.visibility = self._queue_visibility()
            while not self._stop_if_idle():
                try:
                    messages = self.client.receive_messages(self.queue, **self._receive_args)
                except FcError as exc:
                    pause = self._receive_failed(exc)
                    if pause is None:
                        break
                    self._pause(pause)
                    continue
                plan = self._next_plan(messages)
                self._apply(plan)
                if plan.delay:
                    self._pause(plan.delay)
        finally:
            with REGISTRY.lock:
                if REGISTRY.threads.get(self.key) is self:
                    del REGISTRY.threads[self.key]
            self.client.close()

    def _pause(self, seconds: float) -> None:
        self.wake.wait(seconds)
        self.wake.clear()

    def _queue_visibility(self) -> int | None:
        REGISTRY.locked_count("get_queue_attributes")
        try:
            return self._visibility_of(self.client.get_queue_attributes(self.queue))
        except FcError as exc:
            self._attributes_failed(exc)
            return None

    def _apply(self, plan: BatchPlan) -> None:
        for delivery in plan.deliveries:
            handle: str | None = None
            if delivery.hold is not None and delivery.message is not None:
                handle = (
                    str(delivery.message.receipt_handle)
                    if delivery.hold == 0
                    else self._visibility(str(delivery.message.receipt_handle), delivery.hold)
                )
            self._settle(delivery, handle)
        for handle_, seconds in plan.visibility:
            self._visibility(handle_, seconds)
        if plan.deletes:
            REGISTRY.locked_count("delete", len(plan.deletes))
            try:
                self.client.batch_delete_messages(self.queue, plan.deletes)
            except FcError as exc:
                log.warning("deleting copies of stored records from %s failed: %s", self.queue, exc)

    def _visibility(self, handle: str, seconds: int) -> str | None:
        REGISTRY.locked_count("change_visibility")
        try:
            return self.client.change_message_visibility(self.queue, handle, seconds)
        except FcError as exc:
            self._visibility_failed(exc)
            return None


def wake_or_start_thread(key: Key, dispatch: QueueDispatch, client: MnsClient | AsyncMnsClient) -> None:
    """Wake the receiver thread of ``key``, or start one (the caller holds ``REGISTRY.lock``)."""
    receiver = REGISTRY.threads.get(key)
    if receiver is None or not receiver.thread.is_alive():
        REGISTRY.threads[key] = ThreadReceiver(key, dispatch, client)
    else:
        receiver.wake.set()
