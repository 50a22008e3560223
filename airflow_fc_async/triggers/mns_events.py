"""FcDestinationEventTrigger: an MNS queue of destination records as an Airflow event source (Airflow 3.0+).

Use it in an ``AssetWatcher`` (directly, or as ``MessageQueueTrigger(scheme="mns", queue_name=...)`` of the
common-messaging provider): every destination record on the queue that passes the filter becomes one trigger
event, so one asset event, carrying the decoded record, the message id, enqueue time and dequeue count.

Delivery, on Airflow 3.3+ (shared streams in ack mode, :mod:`airflow.triggers.shared_stream`): all watchers of
one (connection, queue) in a triggerer share one consumer (:class:`MnsRecordProducer`: batches of 16, long
poll, back-off on errors). A record's message is deleted in ``advance``, which the triggerer calls only after
its supervisor stored the asset event and confirmed it (one state sync later, about a second). A crash before
that leaves the message on the queue: it is received again once its visibility timeout passes, and yields its
one asset event then. The one window for a second asset event of the same message is a triggerer crash between
the store and the DeleteMessage (the confirmation's sync round); such an event has ``dequeue_count`` > 1.
Within a process, a message whose delete failed is deleted, not re-sent, when it comes back.

Before 3.3 (``run()``): the trigger deletes a record's message ``persist_grace_seconds`` after yielding it
(the event is stored at the next sync, about a second); a crash in that window re-sends it (at least once).

A message that is not a record or that no watcher's filter wants is handed back (visible again after a delay
doubling with its dequeue count), never deleted. A watcher deserves a dedicated queue: on a shared queue, every
receive of another consumer's message costs both sides a delay.
"""

from __future__ import annotations

from airflow_fc_async.compat import require_event_driven_scheduling

require_event_driven_scheduling(__name__)

import asyncio  # noqa: E402
import collections  # noqa: E402
import logging  # noqa: E402
from collections.abc import AsyncIterator, Hashable, Iterable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from airflow.triggers.base import BaseEventTrigger, TriggerEvent  # noqa: E402

from airflow_fc_async.compat import shared_stream_ack_mode  # noqa: E402
from airflow_fc_async.core.destination_events import (  # noqa: E402
    DestinationEvent,
    DestinationFilter,
    foreign_hand_back_seconds,
    receive_error_backoff,
)
from airflow_fc_async.core.errors import FcError  # noqa: E402
from airflow_fc_async.core.mns_requests import MnsMessage  # noqa: E402

__all__ = ["FcDestinationEventTrigger", "MnsRecordProducer"]

log = logging.getLogger(__name__)

STORED, FOREIGN, UNSETTLED = "stored", "foreign", "unsettled"
_DONE_MEMORY = (
    10_000  # message ids stored here whose delete failed: deleted, not re-sent, when they come back
)


@dataclass
class Delivery:
    """One received message while it is in flight; the receipt handle is replaced when the message comes back
    before it was settled (its visibility timeout ran out first: the old handle is spent)."""

    message_id: str
    receipt_handle: str
    dequeue_count: int


@dataclass(frozen=True)
class Received:
    """The raw event the consumer broadcasts: the message and its decoded record (None when not a record)."""

    message: MnsMessage
    event: DestinationEvent | None


class MnsRecordProducer:
    """The one consumer of a queue in a triggerer: receives, and settles each message once its fate is known.

    A :class:`~airflow.triggers.shared_stream.SharedStreamProducer` on 3.3 (``open_stream`` / ``advance``);
    ``run()`` of the trigger drives the same object before 3.3.
    """

    def __init__(
        self, queue_name: str, fc_conn_id: str, *, wait_seconds: int = 10, batch_size: int = 16
    ) -> None:
        self.queue_name = queue_name
        self.fc_conn_id = fc_conn_id
        self.wait_seconds = int(wait_seconds)
        self.batch_size = int(batch_size)
        self._in_flight: dict[str, Delivery] = {}
        self._done: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._hook: Any = None
        self.stats: collections.Counter[str] = collections.Counter()

    async def _client(self) -> Any:
        if self._hook is None:
            from airflow_fc_async.hooks.mns import MnsHook

            self._hook = MnsHook(fc_conn_id=self.fc_conn_id)
        return await self._hook.aget_conn()

    async def open_stream(self) -> AsyncIterator[tuple[Received, Delivery]]:
        """Yield ``(Received, Delivery)`` for every new message; forever, or raise a permanent MNS error."""
        client = await self._client()
        errors = 0
        while True:
            try:
                messages = await client.receive_messages(
                    self.queue_name, max_messages=self.batch_size, wait_seconds=self.wait_seconds
                )
            except FcError as exc:
                if not exc.retryable:
                    log.error("Receiving from MNS queue %s failed for good: %s", self.queue_name, exc)
                    raise
                errors += 1
                self.stats["receive_errors"] += 1
                delay = receive_error_backoff(errors)
                log.warning(
                    "Receiving from MNS queue %s failed (%s); again in %.0f s", self.queue_name, exc, delay
                )
                await asyncio.sleep(delay)
                continue
            errors = 0
            self.stats["receives"] += 1
            for message in messages:
                handle = str(message.receipt_handle)
                known = self._in_flight.get(message.message_id)
                if known is not None:  # back before it was settled: keep one delivery, with the live handle
                    known.receipt_handle = handle
                    known.dequeue_count = message.dequeue_count
                    continue
                if message.message_id in self._done:
                    await self._delete([handle])
                    continue
                delivery = Delivery(message.message_id, handle, message.dequeue_count)
                self._in_flight[message.message_id] = delivery
                yield Received(message, DestinationEvent.from_message(message)), delivery

    async def settle(self, deliveries: Sequence[tuple[Delivery, str]]) -> None:
        """``stored``: delete; ``foreign``: hand back after a delay; ``unsettled``: leave it to its visibility
        timeout (nobody confirmed it: it comes back and is sent again)."""
        stored = [d for d, fate in deliveries if fate == STORED]
        for d in (
            stored
        ):  # first: should the delete fail (or the message come back meanwhile), it is not sent again
            self._remember_done(d.message_id)
        for delivery, fate in deliveries:
            self._in_flight.pop(delivery.message_id, None)
            if fate == FOREIGN:
                await self._hand_back(delivery)
            elif fate == UNSETTLED:
                self.stats["unsettled"] += 1
        if stored:
            await self._delete([d.receipt_handle for d in stored])

    async def advance(self, batch: Sequence[Any]) -> None:
        """Shared-stream ack mode: each item's outcome says whether a watcher's event was stored."""
        fates = []
        for item in batch:
            outcome = item.outcome
            if outcome.failed:
                fate = UNSETTLED
            elif (
                outcome.acked
            ):  # a watcher yielded it (filters reject what they do not want) and it was stored
                fate = STORED
            else:  # every watcher rejected it, or none was subscribed
                fate = FOREIGN
            fates.append((item.broker_payload, fate))
        await self.settle(fates)

    def get_advance_lane(self, broker_payload: Any) -> Hashable:
        # Deletes need no order: one lane per message keeps a slow persist from holding back the others.
        return broker_payload.message_id if isinstance(broker_payload, Delivery) else None

    async def aclose(self) -> None:
        if self._hook is not None:
            hook, self._hook = self._hook, None
            try:
                await hook.aclose()
            except Exception as err:  # best effort
                log.debug("Closing the MNS hook failed: %s", err)

    async def _delete(self, handles: Iterable[str]) -> set[str]:
        handles = list(handles)
        try:
            failed = await (await self._client()).batch_delete_messages(self.queue_name, handles)
        except FcError as exc:
            log.warning("Deleting %d stored records from %s failed: %s", len(handles), self.queue_name, exc)
            return set(handles)
        self.stats["deleted"] += len(handles) - len(failed)
        return {h for h, _ in failed}

    async def _hand_back(self, delivery: Delivery) -> None:
        seconds = foreign_hand_back_seconds(delivery.dequeue_count)
        try:
            await (await self._client()).change_message_visibility(
                self.queue_name, delivery.receipt_handle, seconds
            )
            self.stats["handed_back"] += 1
        except FcError as exc:  # it comes back after the queue's visibility timeout anyway
            log.debug("Handing back %s on %s failed: %s", delivery.message_id, self.queue_name, exc)

    def _remember_done(self, message_id: str) -> None:
        self._done[message_id] = None
        while len(self._done) > _DONE_MEMORY:
            self._done.popitem(last=False)


def _as_list(value: Iterable[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else sorted(value)


class FcDestinationEventTrigger(BaseEventTrigger):
    """Fire one event per destination record on ``queue_name`` that passes the filter.

    :param queue_name: the MNS queue of the onFailure (and/or onSuccess) destination; better a dedicated one.
    :param fc_conn_id: the Airflow connection (read in the triggerer; never a secret in these kwargs).
    :param function_names: only records of these functions (a name or a list; None: any).
    :param conditions: only these conditions (FC's, e.g. ``Timeout``; ``Failure`` for any failed run,
        ``Success`` for successful ones; None: any).
    :param wait_seconds: long-poll wait of each receive (1-30).
    :param persist_grace_seconds: before Airflow 3.3 only: how long after yielding an event its message is
        deleted (the event is stored at the triggerer's next sync, about a second).
    """

    def __init__(
        self,
        queue_name: str,
        fc_conn_id: str = "fc_default",
        function_names: Iterable[str] | str | None = None,
        conditions: Iterable[str] | str | None = None,
        wait_seconds: int = 10,
        persist_grace_seconds: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        if not isinstance(queue_name, str) or not queue_name.strip():
            from airflow_fc_async.core.errors import FcValidationError

            raise FcValidationError("queue_name", f"expected a queue name, got {queue_name!r}")
        self.queue_name = queue_name.strip()
        self.fc_conn_id = fc_conn_id
        self.function_names = _as_list(function_names)
        self.conditions = _as_list(conditions)
        self.wait_seconds = max(1, min(30, int(wait_seconds)))
        self.persist_grace_seconds = float(persist_grace_seconds)
        self._filter = DestinationFilter.build(self.function_names, self.conditions)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "queue_name": self.queue_name,
                "fc_conn_id": self.fc_conn_id,
                "function_names": self.function_names,
                "conditions": self.conditions,
                "wait_seconds": self.wait_seconds,
                "persist_grace_seconds": self.persist_grace_seconds,
            },
        )

    # -- Airflow 3.3+: one consumer per (connection, queue) per triggerer, deletes gated on the stored event ----
    def shared_stream_key(self) -> Hashable | None:
        if not shared_stream_ack_mode():
            return None
        return ("airflow_fc_async.mns", self.fc_conn_id, self.queue_name)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> Any:
        return _ack_producer(kwargs)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        from airflow.triggers.shared_stream import reject_shared_stream_event

        async for received in shared_stream:
            payload = self._payload(received)
            if payload is None:
                reject_shared_stream_event()  # not ours: the consumer hands it back unless a sibling took it
                continue
            yield payload

    # -- before 3.3: this trigger's own consumer ------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        producer = MnsRecordProducer(self.queue_name, self.fc_conn_id, wait_seconds=self.wait_seconds)
        pending: set[asyncio.Task[None]] = set()
        try:
            async for received, delivery in producer.open_stream():
                event = self._payload(received)
                if event is None:
                    await producer.settle([(delivery, FOREIGN)])
                    continue
                yield event
                # Resumed as soon as the runner queued the event; it is stored at the next state sync.
                task = asyncio.ensure_future(self._settle_later(producer, delivery))
                pending.add(task)
                task.add_done_callback(pending.discard)
        finally:
            for task in pending:  # not deleted: those messages come back and are sent again
                task.cancel()
            await producer.aclose()

    async def _settle_later(self, producer: MnsRecordProducer, delivery: Delivery) -> None:
        await asyncio.sleep(self.persist_grace_seconds)
        await producer.settle([(delivery, STORED)])

    def _payload(self, received: Received) -> TriggerEvent | None:
        event = received.event
        if event is None or not self._filter.matches(event):
            return None
        self.log.info(
            "Destination record of %s (%s, %s) from %s, message %s (dequeue count %d)",
            event.record.request_id,
            event.record.function_name,
            event.condition or "no condition",
            self.queue_name,
            event.message_id,
            event.dequeue_count,
        )
        return TriggerEvent(event.to_payload(self.queue_name))  # type: ignore[no-untyped-call]


if shared_stream_ack_mode():
    from airflow.triggers.shared_stream import SharedStreamProducer

    class MnsSharedStreamProducer(MnsRecordProducer, SharedStreamProducer):
        """:class:`MnsRecordProducer` as the triggerer's shared-stream producer (ack mode, Airflow 3.3+)."""


def _ack_producer(kwargs: dict[str, Any]) -> Any:
    return MnsSharedStreamProducer(
        kwargs["queue_name"],
        kwargs.get("fc_conn_id", "fc_default"),
        wait_seconds=kwargs.get("wait_seconds", 10),
    )
