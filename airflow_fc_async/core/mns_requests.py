"""Every MNS queue request and reply reading, without I/O: XML written byte for byte as the official SDK
writes it, read namespace-aware, and signed (:meth:`MnsRequests.sign`); the clients (``mns.py``) hold one and send.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, TypedDict, Unpack
from urllib.parse import quote

from airflow_fc_async.core.endpoints import MNS_ENDPOINTS, H
from airflow_fc_async.core.errors import ApiErrorFields, FcApiError, FcValidationError
from airflow_fc_async.core.http import (
    Call,
    Op,
    Reply,
    RequestBuilder,
    bad_reply,
    parse_xml,
    xml_fields,
    xml_local,
)
from airflow_fc_async.core.models import from_epoch_ms
from airflow_fc_async.core.signing import sign_mns_request
from airflow_fc_async.core.validation import (
    MAX_MNS_MESSAGE,
    check_int_range,
    check_message_body,
    check_queue_name,
)

__all__ = ["MNS_XMLNS", "MnsBatchError", "MnsMessage", "MnsRequests", "QueueAttributes"]

log = logging.getLogger(__name__)

MNS_XMLNS = "http://mns.aliyuncs.com/doc/v1/"
_XML_HEAD = '<?xml version="1.0" encoding="utf-8"?>'
_XML_CONTENT_TYPE = "text/xml;charset=UTF-8"
_BATCH = 16
_QUEUE_ATTRS = (  # element, keyword, low, high (the order the SDK writes them)
    ("DelaySeconds", "delay_seconds", 0, 604800),
    ("MaximumMessageSize", "maximum_message_size", 1024, 65536),
    ("MessageRetentionPeriod", "message_retention_period", 60, 604800),
    ("VisibilityTimeout", "visibility_timeout", 1, 43200),
    ("PollingWaitSeconds", "polling_wait_seconds", 0, 30),
)


class QueueAttributes(TypedDict, total=False):
    """The optional attributes of ``create_queue`` (seconds, or bytes for the size; None: MNS's default)."""

    visibility_timeout: int | None
    delay_seconds: int | None
    maximum_message_size: int | None
    message_retention_period: int | None
    polling_wait_seconds: int | None


@dataclass(frozen=True)
class MnsMessage:
    """A received or peeked message (``receipt_handle`` is None for a peek)."""

    message_id: str
    receipt_handle: str | None
    body: str
    body_md5: str
    enqueue_time: datetime | None
    next_visible_time: datetime | None
    first_dequeue_time: datetime | None
    dequeue_count: int
    priority: int

    @classmethod
    def from_xml(cls, element: ET.Element) -> MnsMessage:
        f = xml_fields(element)
        return cls(
            message_id=f.get("MessageId", ""),
            receipt_handle=f.get("ReceiptHandle") or None,
            body=f.get("MessageBody", ""),
            body_md5=f.get("MessageBodyMD5", ""),
            enqueue_time=from_epoch_ms(f.get("EnqueueTime")),
            next_visible_time=from_epoch_ms(f.get("NextVisibleTime")),
            first_dequeue_time=from_epoch_ms(f.get("FirstDequeueTime")),
            dequeue_count=int(f.get("DequeueCount") or 0),
            priority=int(f.get("Priority") or 8),
        )


class MnsBatchError(FcApiError):
    """Some messages of a batch send failed. Not retried: the others were sent. ``message_ids`` has None holes."""

    def __init__(
        self,
        msg: str,
        *,
        message_ids: list[str | None],
        failures: list[tuple[int, str, str]],
        **fields: Unpack[ApiErrorFields],
    ) -> None:
        super().__init__(msg, **fields)
        self.message_ids = message_ids
        self.failures = failures

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return False


def _escape(text: str) -> str:
    """XML text escaping as the SDK's minidom writes it (and ``\\r`` kept as a character reference)."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace('"', "&quot;")
        .replace(">", "&gt;")
        .replace("\r", "&#13;")
    )


def _document(root: str, inner: str) -> bytes:
    return f'{_XML_HEAD}<{root} xmlns="{MNS_XMLNS}">{inner}</{root}>'.encode()


def _element(name: str, value: object) -> str:
    return f"<{name}>{_escape(str(value))}</{name}>"


def _children(root: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in root if xml_local(child.tag) == name]


def _bad_reply(reply: Reply, problem: str) -> NoReturn:
    raise bad_reply(reply, problem)


class MnsRequests(RequestBuilder):
    """Builds and reads every MNS request; no I/O."""

    endpoint_field = "mns_endpoint"

    def sign(self, op: Op[Any]) -> Call:
        resource = f"{op.path}?{op.query}" if op.query else op.path
        headers = sign_mns_request(
            self.credentials, method=op.method, host=self.base.host, resource=resource, headers=op.headers
        )
        return Call(op.method, self.base.url + resource, headers, op.body, op.action, op.read_timeout)

    @staticmethod
    def _op(
        endpoint: str,
        parse: Any,
        queue: str,
        *,
        action: str | None = None,
        query: str | None = None,
        body: bytes = b"",
        recover: Any = None,
        idempotent: bool = True,
        read_timeout: float | None = None,
    ) -> Op[Any]:
        ep = MNS_ENDPOINTS[endpoint]
        headers = {H.CONTENT_TYPE: _XML_CONTENT_TYPE} if body else {}
        path = ep.path(queue=check_queue_name(queue))
        return Op(
            action or ep.action,
            ep.method,
            path,
            query,
            headers,
            body,
            parse,
            recover,
            idempotent,
            read_timeout,
        )

    # -- queues --------------------------------------------------------------------------------------------
    def create_queue_op(self, name: str, attrs: QueueAttributes) -> Op[bool]:
        unknown = sorted(set(attrs) - set(QueueAttributes.__annotations__))
        if unknown:
            raise TypeError(f"create_queue() got an unexpected keyword argument {unknown[0]!r}")
        values: Mapping[str, Any] = attrs
        inner = ""
        for element, keyword, low, high in _QUEUE_ATTRS:
            value = values.get(keyword)
            if value is not None:
                inner += _element(element, check_int_range(keyword, value, low, high))

        def recover(err: FcApiError, reply: Reply) -> bool:
            if err.status == 409 and err.code == "QueueAlreadyExist":
                log.info("MNS queue %s exists with other attributes: kept as it is", name)
                return False
            raise err

        return self._op(
            "CreateQueue", lambda r: r.status == 201, name, body=_document("Queue", inner), recover=recover
        )

    def queue_attributes_op(self, name: str) -> Op[dict[str, str | int]]:
        def parse(reply: Reply) -> dict[str, str | int]:
            fields = xml_fields(parse_xml(reply, "Queue"))
            return {k: int(v) if v.isdigit() else v for k, v in fields.items()}

        return self._op("GetQueueAttributes", parse, name)

    def delete_queue_op(self, name: str) -> Op[None]:
        return self._op("DeleteQueue", lambda r: None, name)

    # -- messages ------------------------------------------------------------------------------------------
    @staticmethod
    def _message_xml(body: str, delay_seconds: int | None = None, priority: int | None = None) -> str:
        inner = _element("MessageBody", check_message_body(body))
        if delay_seconds is not None:
            inner += _element("DelaySeconds", check_int_range("delay_seconds", delay_seconds, 0, 604800))
        if priority is not None:
            inner += _element("Priority", check_int_range("priority", priority, 1, 16))
        return inner

    def send_op(self, queue: str, body: str, delay_seconds: int | None, priority: int | None) -> Op[str]:
        def parse(reply: Reply) -> str:
            message_id = xml_fields(parse_xml(reply, "Message")).get("MessageId")
            return message_id or _bad_reply(reply, "no MessageId in the reply")

        return self._op(
            "SendMessage",
            parse,
            queue,
            body=_document("Message", self._message_xml(body, delay_seconds, priority)),
        )

    def batch_send_ops(self, queue: str, bodies: Sequence[str]) -> list[Op[list[str]]]:
        """One op per batch of at most 16 messages and 64 KB."""
        if isinstance(bodies, str):
            raise TypeError("bodies must be a list of strings, not one string")
        batches: list[list[str]] = []
        size = 0
        for body in bodies:
            item = f"<Message>{self._message_xml(body)}</Message>"
            n = len(check_message_body(body).encode("utf-8"))
            if not batches or len(batches[-1]) == _BATCH or size + n > MAX_MNS_MESSAGE:
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += n
        return [
            self._op(
                "SendMessage",
                _parse_batch_sent,
                queue,
                action="BatchSendMessage",
                body=_document("Messages", "".join(b)),
                recover=_batch_send_failed,
                idempotent=False,
            )
            for b in batches
        ]

    def receive_op(
        self, queue: str, max_messages: int, wait_seconds: int | None, peek: bool
    ) -> Op[list[MnsMessage]]:
        n = check_int_range("max_messages", max_messages, 1, _BATCH)
        parts = ["peekonly=true"] if peek else []
        if n > 1:
            parts.append(f"numOfMessages={n}")
        if wait_seconds is not None and not peek:
            parts.append(f"waitseconds={check_int_range('wait_seconds', wait_seconds, 0, 30)}")
        # A long poll holds the reply up to waitseconds (or the queue's PollingWaitSeconds, at most 30).
        read_timeout = (
            None if peek else max(self.read_timeout, (30 if wait_seconds is None else wait_seconds) + 10)
        )

        def recover(err: FcApiError, reply: Reply) -> list[MnsMessage]:
            if err.code == "MessageNotExist":
                return []
            raise err

        return self._op(
            "ReceiveMessage",
            _parse_messages,
            queue,
            action="PeekMessage" if peek else "ReceiveMessage",
            query="&".join(parts) or None,
            recover=recover,
            read_timeout=read_timeout,
        )

    def delete_message_op(self, queue: str, receipt_handle: str) -> Op[None]:
        return self._op(
            "DeleteMessage", lambda r: None, queue, query=f"ReceiptHandle={_handle(receipt_handle)}"
        )

    def batch_delete_ops(self, queue: str, receipt_handles: Iterable[str]) -> list[Op[list[tuple[str, str]]]]:
        handles = [_require_handle(h) for h in receipt_handles]
        ops = []
        for i in range(0, len(handles), _BATCH):
            inner = "".join(_element("ReceiptHandle", h) for h in handles[i : i + _BATCH])
            ops.append(
                self._op(
                    "DeleteMessage",
                    lambda r: [],
                    queue,
                    action="BatchDeleteMessage",
                    body=_document("ReceiptHandles", inner),
                    recover=_batch_delete_failed,
                )
            )
        return ops

    def change_visibility_op(self, queue: str, receipt_handle: str, visibility_timeout: int) -> Op[str]:
        seconds = check_int_range("visibility_timeout", visibility_timeout, 1, 43200)

        def parse(reply: Reply) -> str:
            handle = xml_fields(parse_xml(reply, "ChangeVisibility")).get("ReceiptHandle")
            return handle or _bad_reply(reply, "no ReceiptHandle in the reply")

        query = f"ReceiptHandle={_handle(receipt_handle)}&VisibilityTimeout={seconds}"
        return self._op("ChangeMessageVisibility", parse, queue, query=query)


def _require_handle(handle: object) -> str:
    if not isinstance(handle, str) or not handle:
        raise FcValidationError("receipt_handle", f"must be a non-empty string, got {handle!r}")
    return handle


def _handle(handle: object) -> str:
    return quote(_require_handle(handle), safe="")


def _parse_messages(reply: Reply) -> list[MnsMessage]:
    root = parse_xml(reply, ("Message", "Messages"))
    elements = [root] if xml_local(root.tag) == "Message" else _children(root, "Message")
    try:
        return [MnsMessage.from_xml(e) for e in elements]
    except ValueError as exc:
        _bad_reply(reply, f"bad message: {exc}")


def _parse_batch_sent(reply: Reply) -> list[str]:
    ids = [xml_fields(m).get("MessageId", "") for m in _children(parse_xml(reply, "Messages"), "Message")]
    if not all(ids):
        _bad_reply(reply, "a message without MessageId in the reply")
    return ids


def _batch_send_failed(err: FcApiError, reply: Reply) -> list[str]:
    try:
        root = ET.fromstring(reply.body)
    except ET.ParseError:
        raise err from None
    if xml_local(root.tag) != "Messages":
        raise err
    ids: list[str | None] = []
    failures: list[tuple[int, str, str]] = []
    for i, m in enumerate(_children(root, "Message")):
        f = xml_fields(m)
        if f.get("ErrorCode"):
            ids.append(None)
            failures.append((i, f["ErrorCode"], f.get("ErrorMessage", "")))
        else:
            ids.append(f.get("MessageId"))
    detail = "; ".join(f"#{i} {code}: {msg}" for i, code, msg in failures[:5])
    raise MnsBatchError(
        f"{len(failures)} of {len(ids)} messages were not sent ({detail})",
        status=reply.status,
        code=failures[0][1] if failures else err.code,
        request_id=err.request_id,
        message_ids=ids,
        failures=failures,
    )


def _batch_delete_failed(err: FcApiError, reply: Reply) -> list[tuple[str, str]]:
    try:
        root = ET.fromstring(reply.body)
    except ET.ParseError:
        raise err from None
    if xml_local(root.tag) != "Errors":
        raise err
    return [
        (f.get("ReceiptHandle", ""), f.get("ErrorCode", ""))
        for f in map(xml_fields, _children(root, "Error"))
    ]
