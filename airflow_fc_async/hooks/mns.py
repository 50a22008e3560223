"""MnsHook: the MNS queues FC sends destination records to (sync for workers, ``a``-prefixed for triggers).

Same connection as :class:`~airflow_fc_async.hooks.fc.FcHook` (``fc_conn_id``, extra ``mns_endpoint`` or
region + account id). A thin adapter over :class:`~airflow_fc_async.core.mns.MnsClient`, built on first use.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Unpack, cast

from airflow_fc_async.hooks.base import FcBaseHook

if TYPE_CHECKING:
    from airflow_fc_async.core.destination_receiver import ClaimedRecord, ClaimOptions, FetchOptions
    from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient, MnsMessage
    from airflow_fc_async.core.mns_requests import QueueAttributes
    from airflow_fc_async.core.models import DestinationRecord

__all__ = ["MnsHook"]


class MnsHook(FcBaseHook):
    """Send, receive (batch, long poll), peek, delete and hand back messages; create, inspect, delete queues."""

    def __init__(self, fc_conn_id: str = FcBaseHook.default_conn_name, **kwargs: Any) -> None:
        super().__init__(fc_conn_id, **kwargs)
        self._client: MnsClient | None = None
        self._aclient: AsyncMnsClient | None = None

    def get_conn(self) -> MnsClient:
        return cast("MnsClient", self._cached_client("_client", "mns:MnsClient", "mns"))

    async def aget_conn(self) -> AsyncMnsClient:
        """The async client (one per hook, see :meth:`FcBaseHook._abuild_once`)."""
        return cast("AsyncMnsClient", await self._acached_client("_aclient", "mns:AsyncMnsClient", "mns"))

    def close(self) -> None:
        self._close_clients("_client")

    async def aclose(self) -> None:
        await self._aclose_clients("_aclient")

    # -- sync --------------------------------------------------------------------------------------------------
    def create_queue(self, name: str, **attributes: Unpack[QueueAttributes]) -> bool:
        """True when created, False when it existed (``visibility_timeout``, ``delay_seconds``, ... optional)."""
        return self.get_conn().create_queue(name, **attributes)

    def get_queue_attributes(self, name: str) -> dict[str, str | int]:
        return self.get_conn().get_queue_attributes(name)

    def delete_queue(self, name: str) -> None:
        self.get_conn().delete_queue(name)

    def send_message(
        self, queue: str, body: str, *, delay_seconds: int | None = None, priority: int | None = None
    ) -> str:
        return self.get_conn().send_message(queue, body, delay_seconds=delay_seconds, priority=priority)

    def batch_send_messages(self, queue: str, bodies: list[str]) -> list[str]:
        return self.get_conn().batch_send_messages(queue, bodies)

    def receive_messages(
        self, queue: str, *, max_messages: int = 16, wait_seconds: int | None = None
    ) -> list[MnsMessage]:
        return self.get_conn().receive_messages(queue, max_messages=max_messages, wait_seconds=wait_seconds)

    def peek_messages(self, queue: str, *, max_messages: int = 16) -> list[MnsMessage]:
        return self.get_conn().peek_messages(queue, max_messages=max_messages)

    def delete_message(self, queue: str, receipt_handle: str) -> None:
        self.get_conn().delete_message(queue, receipt_handle)

    def batch_delete_messages(self, queue: str, receipt_handles: Iterable[str]) -> list[tuple[str, str]]:
        return self.get_conn().batch_delete_messages(queue, receipt_handles)

    def change_message_visibility(self, queue: str, receipt_handle: str, visibility_timeout: int) -> str:
        return self.get_conn().change_message_visibility(queue, receipt_handle, visibility_timeout)

    # -- async (triggers) --------------------------------------------------------------------------------------
    async def acreate_queue(self, name: str, **attributes: Unpack[QueueAttributes]) -> bool:
        return await (await self.aget_conn()).create_queue(name, **attributes)

    async def aget_queue_attributes(self, name: str) -> dict[str, str | int]:
        return await (await self.aget_conn()).get_queue_attributes(name)

    async def adelete_queue(self, name: str) -> None:
        await (await self.aget_conn()).delete_queue(name)

    async def asend_message(
        self, queue: str, body: str, *, delay_seconds: int | None = None, priority: int | None = None
    ) -> str:
        return await (await self.aget_conn()).send_message(
            queue, body, delay_seconds=delay_seconds, priority=priority
        )

    async def abatch_send_messages(self, queue: str, bodies: list[str]) -> list[str]:
        return await (await self.aget_conn()).batch_send_messages(queue, bodies)

    async def areceive_messages(
        self, queue: str, *, max_messages: int = 16, wait_seconds: int | None = None
    ) -> list[MnsMessage]:
        client = await self.aget_conn()
        return await client.receive_messages(queue, max_messages=max_messages, wait_seconds=wait_seconds)

    async def apeek_messages(self, queue: str, *, max_messages: int = 16) -> list[MnsMessage]:
        return await (await self.aget_conn()).peek_messages(queue, max_messages=max_messages)

    async def adelete_message(self, queue: str, receipt_handle: str) -> None:
        await (await self.aget_conn()).delete_message(queue, receipt_handle)

    async def abatch_delete_messages(
        self, queue: str, receipt_handles: Iterable[str]
    ) -> list[tuple[str, str]]:
        return await (await self.aget_conn()).batch_delete_messages(queue, receipt_handles)

    async def achange_message_visibility(
        self, queue: str, receipt_handle: str, visibility_timeout: int
    ) -> str:
        return await (await self.aget_conn()).change_message_visibility(
            queue, receipt_handle, visibility_timeout
        )

    # -- destination records on a shared queue (core.destination_receiver; one receiver per queue per process) --
    def wait_for_destination_record(
        self, queue: str, request_id: str, timeout: float, **options: Unpack[FetchOptions]
    ) -> DestinationRecord | None:
        """The record of ``request_id`` within ``timeout`` seconds, or None, without harming other consumers:
        foreign messages are never deleted; ours is deleted after ``before_delete(record)`` (store it there).
        ``function_name``: records of that function awaited by other processes are handed back at once
        (:class:`~airflow_fc_async.core.destination_receiver.FetchOptions`)."""
        from airflow_fc_async.core.destination_receiver import fetch_destination_record

        return fetch_destination_record(self.get_conn(), queue, request_id, wait_seconds=timeout, **options)

    async def await_for_destination_record(
        self, queue: str, request_id: str, timeout: float, **options: Unpack[FetchOptions]
    ) -> DestinationRecord | None:
        """The asyncio twin of :meth:`wait_for_destination_record` (``a`` + ``wait_for_...``; ``before_delete`` may
        be async)."""
        from airflow_fc_async.core.destination_receiver import afetch_destination_record

        client = await self.aget_conn()
        return await afetch_destination_record(client, queue, request_id, wait_seconds=timeout, **options)

    def claim_destination_record(
        self, queue: str, request_id: str, *, timeout: float, **options: Unpack[ClaimOptions]
    ) -> ClaimedRecord | None:
        """The record and a receipt handle valid ``hold_seconds`` (default ``SYNC_HOLD_SECONDS``): store it, then
        :meth:`ack_destination_record` (:class:`~airflow_fc_async.core.destination_receiver.ClaimOptions`)."""
        from airflow_fc_async.core.destination_receiver import claim_destination_record

        return claim_destination_record(self.get_conn(), queue, request_id, timeout=timeout, **options)

    async def aclaim_destination_record(
        self, queue: str, request_id: str, *, timeout: float, **options: Unpack[ClaimOptions]
    ) -> ClaimedRecord | None:
        """The asyncio twin of :meth:`claim_destination_record` (``hold_seconds`` default ``TRIGGER_HOLD_SECONDS``)."""
        from airflow_fc_async.core.destination_receiver import aclaim_destination_record

        client = await self.aget_conn()
        return await aclaim_destination_record(client, queue, request_id, timeout=timeout, **options)

    def ack_destination_record(self, claim: ClaimedRecord, settle_seconds: float = 30.0) -> bool:
        """Delete a stored record's message (True when deleted). A stale handle: wait up to ``settle_seconds``
        for a receive of this process to see the message again and delete it."""
        from airflow_fc_async.core.destination_receiver import ack_destination_record

        return ack_destination_record(self.get_conn(), claim, settle_seconds=settle_seconds)

    async def aack_destination_record(self, claim: ClaimedRecord) -> bool:
        from airflow_fc_async.core.destination_receiver import aack_destination_record

        return await aack_destination_record(await self.aget_conn(), claim)
