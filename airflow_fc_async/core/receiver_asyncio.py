"""The destination receiver as an asyncio task on the waiters' event loop (a triggerer's deferred tasks).

Internal to :mod:`~airflow_fc_async.core.destination_receiver` (see its docstring). Nothing here imports Airflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any

from airflow_fc_async.core.destinations import BatchPlan, QueueDispatch
from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.mns import AsyncMnsClient
from airflow_fc_async.core.policies import LONG_POLL_READ_TIMEOUT
from airflow_fc_async.core.receiver_registry import (
    REGISTRY,
    Key,
    ReceiverBase,
    log,
)
from airflow_fc_async.core.receiver_thread import ThreadReceiver

__all__ = ["AsyncReceiver"]


class AsyncReceiver(ReceiverBase):
    """The receiver on one event loop; like every receiver it serves the whole dispatch (waiters of other loops and
    threads too). A loop may end while others wait (``asyncio.run`` returns once its trigger has its event): its
    task is cancelled mid-poll, and the server still fills an abandoned long poll with the next batch, hidden for
    the queue's ``VisibilityTimeout``. So waiters of a second loop use a receiver thread (it outlives every loop;
    a receiver per loop, each abandoning a poll at its loop's end, hid one record again each time it came back
    until its waiter gave up, in R1), and a loop that ends while waiters are left hands them over to one."""

    def __init__(self, key: Key, dispatch: QueueDispatch, template: AsyncMnsClient) -> None:
        super().__init__(key, dispatch)
        self.client: AsyncMnsClient = template.clone(min_read_timeout=LONG_POLL_READ_TIMEOUT)
        self.wake = asyncio.Event()
        self.polling = False
        self.loop = asyncio.get_running_loop()
        self.task = self.loop.create_task(self._run(), name=f"mns-receiver-{self.queue}")

    def poke(self) -> None:
        """Wake it from any thread (a waiter came or left)."""
        with contextlib.suppress(RuntimeError):  # its loop closed: it is gone
            self.loop.call_soon_threadsafe(self.wake.set)

    def _stop_if_idle(self) -> bool:
        with REGISTRY.lock:
            if self.dispatch.has_work(time.monotonic()) and not self.stopping:
                return False
            REGISTRY.tasks.pop((id(asyncio.get_running_loop()), self.key), None)
            return True

    async def _run(self) -> None:
        try:
            self.visibility = await self._queue_visibility()
            while not self._stop_if_idle():
                self.polling = True
                try:
                    messages = await self.client.receive_messages(self.queue, **self._receive_args)
                except FcError as exc:
                    pause = self._receive_failed(exc)
                    if pause is None:
                        break
                    await self._pause(pause)
                    continue
                finally:
                    self.polling = False
                plan = self._next_plan(messages)
                await self._apply(plan)
                if plan.delay:
                    await self._pause(plan.delay)
        finally:
            with REGISTRY.lock:
                if REGISTRY.tasks.get((id(asyncio.get_running_loop()), self.key)) is self:
                    del REGISTRY.tasks[(id(asyncio.get_running_loop()), self.key)]
                if self.dispatch.waiting and REGISTRY.thread(self.key) is None:
                    # this loop ends while others wait (of other loops or threads): hand them over to a thread
                    REGISTRY.threads[self.key] = ThreadReceiver(self.key, self.dispatch, self.client)
            await self.client.aclose()

    async def _pause(self, seconds: float) -> None:
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)

    async def _apply(self, plan: BatchPlan) -> None:
        unsettled = dict(enumerate(plan.deliveries))

        async def deliver(i: int, delivery: Any) -> None:
            handle = await self._hold(delivery)
            if unsettled.pop(i, None) is not None:
                self._settle(delivery, handle)

        jobs: list[Awaitable[Any]] = [deliver(i, d) for i, d in unsettled.items()]
        jobs += [self._visibility(h, s) for h, s in plan.visibility]
        if plan.deletes:
            jobs.append(self._delete(plan.deletes))
        try:
            await asyncio.gather(*jobs)
        finally:
            # cancelled mid-hold (this loop ends): the waiters were taken off the dispatch, so they get their
            # record now, with the receive's handle (stale if the hold reached the server: deleted when seen)
            for delivery in unsettled.values():
                handle = (
                    delivery.message.receipt_handle
                    if delivery.hold is not None and delivery.message
                    else None
                )
                self._settle(delivery, handle)

    async def _hold(self, delivery: Any) -> str | None:
        if delivery.hold is None or delivery.message is None:
            return None
        if delivery.hold == 0:
            return str(delivery.message.receipt_handle)
        return await self._visibility(str(delivery.message.receipt_handle), delivery.hold)

    async def _visibility(self, handle: str, seconds: int) -> str | None:
        REGISTRY.locked_count("change_visibility")
        try:
            return await self.client.change_message_visibility(self.queue, handle, seconds)
        except FcError as exc:
            self._visibility_failed(exc)
            return None

    async def _delete(self, handles: list[str]) -> None:
        REGISTRY.locked_count("delete", len(handles))
        try:
            failed = await self.client.batch_delete_messages(self.queue, handles)
        except FcError as exc:
            log.warning(
                "deleting %d copies of stored records from %s failed: %s", len(handles), self.queue, exc
            )
            return
        if failed:
            log.debug("%d deletes failed on %s: %s", len(failed), self.queue, failed)

    async def _queue_visibility(self) -> int | None:
        REGISTRY.locked_count("get_queue_attributes")
        try:
            return self._visibility_of(await self.client.get_queue_attributes(self.queue))
        except FcError as exc:
            self._attributes_failed(exc)
            return None
