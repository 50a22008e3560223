"""Simple Message Queue (MNS) clients: :class:`MnsClient` (requests) and :class:`AsyncMnsClient` (aiohttp).

MNS signs the resource exactly as it travels, so every query string is built here by hand (receipt handles
quoted with ``safe=''``) and sent untouched. Bodies are XML in the ``http://mns.aliyuncs.com/doc/v1/`` namespace,
written byte for byte as the official SDK does and read namespace-aware, ignoring elements we do not know.
Message bodies travel raw (no base64): FC's destination records are raw JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Unpack

from airflow_fc_async.core.mns_requests import (
    MNS_XMLNS,
    MnsBatchError,
    MnsMessage,
    MnsRequests,
    QueueAttributes,
)
from airflow_fc_async.core.transport import AsyncSender, SyncSender

__all__ = ["MNS_XMLNS", "AsyncMnsClient", "MnsBatchError", "MnsClient", "MnsMessage", "QueueAttributes"]


class MnsClient(SyncSender):
    """Synchronous MNS queue client over one pooled ``requests`` session (no proxy environment: see ``proxies``).
    It holds an :class:`MnsRequests` (building, signing, reading; no I/O) and sends what it builds."""

    requests_class = MnsRequests
    _requests: MnsRequests

    def create_queue(self, name: str, **attributes: Unpack[QueueAttributes]) -> bool:
        """True when created, False when it already existed (``visibility_timeout``, ``delay_seconds``, ...)."""
        return bool(self._run(self._requests.create_queue_op(name, attributes)))

    def get_queue_attributes(self, name: str) -> dict[str, str | int]:
        result: dict[str, str | int] = self._run(self._requests.queue_attributes_op(name))
        return result

    def delete_queue(self, name: str) -> None:
        self._run(self._requests.delete_queue_op(name))

    def send_message(
        self, queue: str, body: str, *, delay_seconds: int | None = None, priority: int | None = None
    ) -> str:
        return str(self._run(self._requests.send_op(queue, body, delay_seconds, priority)))

    def batch_send_messages(self, queue: str, bodies: list[str]) -> list[str]:
        ids: list[str] = []
        for op in self._requests.batch_send_ops(queue, bodies):
            ids.extend(self._run(op))
        return ids

    def receive_messages(
        self, queue: str, *, max_messages: int = 16, wait_seconds: int | None = None
    ) -> list[MnsMessage]:
        """Up to ``max_messages`` messages ([] when none came); each becomes invisible until its next visible time."""
        result: list[MnsMessage] = self._run(
            self._requests.receive_op(queue, max_messages, wait_seconds, peek=False)
        )
        return result

    def peek_messages(self, queue: str, *, max_messages: int = 16) -> list[MnsMessage]:
        """Look without receiving: no receipt handle, visibility and dequeue count unchanged."""
        result: list[MnsMessage] = self._run(self._requests.receive_op(queue, max_messages, None, peek=True))
        return result

    def delete_message(self, queue: str, receipt_handle: str) -> None:
        self._run(self._requests.delete_message_op(queue, receipt_handle))

    def batch_delete_messages(self, queue: str, receipt_handles: Iterable[str]) -> list[tuple[str, str]]:
        """The ``(receipt handle, error code)`` pairs that failed ([] when all were deleted)."""
        failed: list[tuple[str, str]] = []
        for op in self._requests.batch_delete_ops(queue, receipt_handles):
            failed.extend(self._run(op))
        return failed

    def change_message_visibility(self, queue: str, receipt_handle: str, visibility_timeout: int) -> str:
        """The new receipt handle (the old one is spent)."""
        return str(self._run(self._requests.change_visibility_op(queue, receipt_handle, visibility_timeout)))


class AsyncMnsClient(AsyncSender):
    """The asyncio twin of :class:`MnsClient`; :meth:`aclose` when done."""

    requests_class = MnsRequests
    _requests: MnsRequests

    async def create_queue(self, name: str, **attributes: Unpack[QueueAttributes]) -> bool:
        return bool(await self._run(self._requests.create_queue_op(name, attributes)))

    async def get_queue_attributes(self, name: str) -> dict[str, str | int]:
        result: dict[str, str | int] = await self._run(self._requests.queue_attributes_op(name))
        return result

    async def delete_queue(self, name: str) -> None:
        await self._run(self._requests.delete_queue_op(name))

    async def send_message(
        self, queue: str, body: str, *, delay_seconds: int | None = None, priority: int | None = None
    ) -> str:
        return str(await self._run(self._requests.send_op(queue, body, delay_seconds, priority)))

    async def batch_send_messages(self, queue: str, bodies: list[str]) -> list[str]:
        ids: list[str] = []
        for op in self._requests.batch_send_ops(queue, bodies):
            ids.extend(await self._run(op))
        return ids

    async def receive_messages(
        self, queue: str, *, max_messages: int = 16, wait_seconds: int | None = None
    ) -> list[MnsMessage]:
        result: list[MnsMessage] = await self._run(
            self._requests.receive_op(queue, max_messages, wait_seconds, peek=False)
        )
        return result

    async def peek_messages(self, queue: str, *, max_messages: int = 16) -> list[MnsMessage]:
        result: list[MnsMessage] = await self._run(
            self._requests.receive_op(queue, max_messages, None, peek=True)
        )
        return result

    async def delete_message(self, queue: str, receipt_handle: str) -> None:
        await self._run(self._requests.delete_message_op(queue, receipt_handle))

    async def batch_delete_messages(
        self, queue: str, receipt_handles: Iterable[str]
    ) -> list[tuple[str, str]]:
        failed: list[tuple[str, str]] = []
        for op in self._requests.batch_delete_ops(queue, receipt_handles):
            failed.extend(await self._run(op))
        return failed

    async def change_message_visibility(
        self, queue: str, receipt_handle: str, visibility_timeout: int
    ) -> str:
        return str(
            await self._run(self._requests.change_visibility_op(queue, receipt_handle, visibility_timeout))
        )
