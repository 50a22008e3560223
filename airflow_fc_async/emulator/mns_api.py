"""The MNS queue API over HTTP: XML in, XML out (namespace http://mns.aliyuncs.com/doc/v1/), as documented."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TypeVar
from xml.sax.saxutils import escape

from airflow_fc_async.core.endpoints import MNS_API_VERSION, H
from airflow_fc_async.emulator.mns_store import Message, QueueStore
from airflow_fc_async.emulator.wire import ApiError, Request, Response

__all__ = ["XMLNS", "MnsApi", "mns_action", "mns_error"]

XMLNS = "http://mns.aliyuncs.com/doc/v1/"
_CT = "text/xml;charset=utf-8"
_BATCH_MAX = 16


def _xml(root: str, inner: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{XMLNS}">{inner}</{root}>'.encode()


def _fields(pairs: list[tuple[str, object]]) -> str:
    return "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in pairs)


def _response(
    status: int, request: Request, root: str | None = None, inner: str = "", **headers: str
) -> Response:
    out = {H.MNS_REQUEST_ID: request.request_id, H.MNS_VERSION: MNS_API_VERSION, **headers}
    body = b""
    if root:
        body = _xml(root, inner)
        out[H.CONTENT_TYPE] = _CT
    return Response(status, body, out)


def mns_error(err: ApiError, request: Request, host_id: str) -> Response:
    inner = _fields(
        [("Code", err.code), ("Message", err.message), ("RequestId", request.request_id), ("HostId", host_id)]
    )
    response = _response(err.status, request, "Error", inner)
    response.headers.update(err.headers)
    return response


def _query(request: Request) -> dict[str, str]:
    """The query with lowercased names: MNS reads its parameters case-insensitively (the official Node SDK sends
    ``receiptHandle``/``visibilityTimeout``, the Python SDK ``ReceiptHandle``/``VisibilityTimeout``)."""
    return {k.lower(): v for k, v in request.query.items()}


def mns_action(request: Request) -> str:
    """The operation a request asks for (for stats, faults and dispatch)."""
    on_messages = request.path.rstrip("/").endswith("/messages")
    q = _query(request)
    if request.path.rstrip("/") == "/queues":
        return "ListQueue"
    if not on_messages:
        return {
            "PUT": "SetQueueAttributes" if "metaoverride" in q else "CreateQueue",
            "GET": "GetQueueAttributes",
            "DELETE": "DeleteQueue",
        }.get(request.method, "Unknown")
    if request.method == "POST":
        return "BatchSendMessage" if request.body.lstrip().find(b"<Messages") >= 0 else "SendMessage"
    if request.method == "GET":
        if q.get("peekonly", "").lower() == "true":
            return "BatchPeekMessage" if "numofmessages" in q else "PeekMessage"
        return "BatchReceiveMessage" if "numofmessages" in q else "ReceiveMessage"
    if request.method == "DELETE":
        return "DeleteMessage" if "receipthandle" in q else "BatchDeleteMessage"
    if request.method == "PUT":
        return "ChangeMessageVisibility"
    return "Unknown"


def _parse(body: bytes) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise ApiError(400, "MalformedXML", f"The XML you provided was not well-formed: {exc}") from None


def _children(elem: ET.Element) -> dict[str, str]:
    return {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in elem}


_N = TypeVar("_N", int, float)


def _number(value: str | None, name: str, kind: Callable[[str], _N], what: str) -> _N | None:
    """A numeric request field or query parameter; None when absent or empty, else 400 InvalidArgument."""
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except ValueError:
        raise ApiError(400, "InvalidArgument", f"{name} must be {what}, got {value!r}") from None


def _int(value: str | None, name: str) -> int | None:
    return _number(value, name, int, "an integer")


def _message_xml(m: Message, *, peek: bool) -> str:
    pairs: list[tuple[str, object]] = [("MessageId", m.message_id)]
    if not peek:
        pairs.append(("ReceiptHandle", m.receipt_handle or ""))
    pairs += [
        ("MessageBody", m.body),
        ("MessageBodyMD5", m.body_md5),
        ("EnqueueTime", m.enqueue_time),
        ("FirstDequeueTime", m.first_dequeue_time or m.enqueue_time),
        ("DequeueCount", m.dequeue_count),
        ("Priority", m.priority),
    ]
    if not peek:
        pairs.insert(5, ("NextVisibleTime", m.next_visible_time))
    return _fields(pairs)


class MnsApi:
    """Handlers keyed by action; each takes the request and the queue name."""

    def __init__(self, store: QueueStore, location: Callable[[str], str]) -> None:
        self.store = store
        self._location = location

    def handle(self, request: Request) -> Response:
        name = request.params.get("queue", "")
        handler = getattr(self, "_" + request.action, None)
        if handler is None:
            raise ApiError(400, "InvalidArgument", f"{request.method} {request.path} is not supported")
        return handler(request, name)  # type: ignore[no-any-return]

    # -- queues ---------------------------------------------------------------------------------------------
    def _CreateQueue(self, request: Request, name: str) -> Response:
        attrs: dict[str, int] = {}
        logging_enabled = None
        if request.body.strip():
            fields = _children(_parse(request.body))
            for key in (
                "DelaySeconds",
                "MaximumMessageSize",
                "MessageRetentionPeriod",
                "VisibilityTimeout",
                "PollingWaitSeconds",
            ):
                value = _int(fields.get(key), key)
                if value is not None:
                    attrs[key] = value
            if "LoggingEnabled" in fields:
                logging_enabled = fields["LoggingEnabled"].lower() == "true"
        if (
            not name
            or len(name) > 120
            or not all(c.isalnum() or c == "-" for c in name)
            or not name[0].isalpha()
        ):
            raise ApiError(400, "InvalidQueueName", f"The queue name you provided is not valid: {name}")
        created = self.store.create(name, attrs, logging_enabled)
        return _response(201 if created else 204, request, Location=self._location(name))

    def _SetQueueAttributes(self, request: Request, name: str) -> Response:
        queue = self.store.get(name)
        fields = _children(_parse(request.body)) if request.body.strip() else {}
        for key in list(queue.attributes):
            value = _int(fields.get(key), key)
            if value is not None:
                queue.attributes[key] = value
        return _response(204, request)

    def _GetQueueAttributes(self, request: Request, name: str) -> Response:
        return _response(200, request, "Queue", _fields(list(self.store.attributes(name).items())))

    def _DeleteQueue(self, request: Request, name: str) -> Response:
        self.store.delete(name)
        return _response(204, request)

    def _ListQueue(self, request: Request, name: str) -> Response:
        """x-mns-prefix, x-mns-ret-number (1-1000, default 1000) and x-mns-marker from the previous page's
        NextMarker (https://www.alibabacloud.com/help/en/mns/developer-reference/listqueue); the marker is opaque
        (here the base64 of the next queue name)."""
        prefix = request.headers.get("x-mns-prefix", "")
        number = _int(request.headers.get("x-mns-ret-number"), "x-mns-ret-number") or 1000
        if not 1 <= number <= 1000:
            raise ApiError(400, "InvalidArgument", f"x-mns-ret-number must be 1 to 1000, got {number}")
        start = ""
        if request.headers.get("x-mns-marker"):
            try:
                start = base64.b64decode(request.headers["x-mns-marker"], validate=True).decode("utf-8")
            except ValueError:
                raise ApiError(
                    400, "InvalidArgument", "x-mns-marker is not a NextMarker of ListQueue"
                ) from None
        names = [n for n in self.store.names() if n.startswith(prefix) and n >= start]
        inner = "".join(
            f"<Queue><QueueURL>{escape(self._location(n))}</QueueURL></Queue>" for n in names[:number]
        )
        if len(names) > number:
            inner += _fields([("NextMarker", base64.b64encode(names[number].encode()).decode("ascii"))])
        return _response(200, request, "Queues", inner)

    # -- messages -------------------------------------------------------------------------------------------
    def _send_fields(self, elem: ET.Element) -> tuple[str, int | None, int | None]:
        fields = _children(elem)
        if "MessageBody" not in fields:
            raise ApiError(400, "InvalidArgument", "MessageBody is required")
        return (
            fields["MessageBody"],
            _int(fields.get("DelaySeconds"), "DelaySeconds"),
            _int(fields.get("Priority"), "Priority"),
        )

    def _SendMessage(self, request: Request, name: str) -> Response:
        body, delay, priority = self._send_fields(_parse(request.body))
        msg = self.store.send(name, body, delay, priority)
        return _response(
            201,
            request,
            "Message",
            _fields([("MessageId", msg.message_id), ("MessageBodyMD5", msg.body_md5)]),
        )

    def _BatchSendMessage(self, request: Request, name: str) -> Response:
        items = [e for e in _parse(request.body) if e.tag.rsplit("}", 1)[-1] == "Message"]
        if not 1 <= len(items) <= _BATCH_MAX:
            raise ApiError(
                400, "InvalidArgument", f"a batch holds 1 to {_BATCH_MAX} messages, got {len(items)}"
            )
        self.store.get(name)
        entries = []
        failed = False
        for item in items:
            try:
                msg = self.store.send(name, *self._send_fields(item))
                entries.append(_fields([("MessageId", msg.message_id), ("MessageBodyMD5", msg.body_md5)]))
            except ApiError as err:
                failed = True
                entries.append(_fields([("ErrorCode", err.code), ("ErrorMessage", err.message)]))
        inner = "".join(f"<Message>{e}</Message>" for e in entries)
        if failed:
            return _response(500, request, "Messages", inner)
        return _response(201, request, "Messages", inner)

    def _wait(self, request: Request) -> float | None:
        return _number(_query(request).get("waitseconds"), "waitseconds", float, "a number")

    def _count(self, request: Request) -> int:
        count = _int(_query(request).get("numofmessages"), "numOfMessages") or 1
        if not 1 <= count <= _BATCH_MAX:
            raise ApiError(
                400, "InvalidArgument", f"numOfMessages must be between 1 and {_BATCH_MAX}, got {count}"
            )
        return count

    def _ReceiveMessage(self, request: Request, name: str) -> Response:
        msg = self.store.receive(name, 1, self._wait(request))[0]
        return _response(200, request, "Message", _message_xml(msg, peek=False))

    def _BatchReceiveMessage(self, request: Request, name: str) -> Response:
        msgs = self.store.receive(name, self._count(request), self._wait(request))
        inner = "".join(f"<Message>{_message_xml(m, peek=False)}</Message>" for m in msgs)
        return _response(200, request, "Messages", inner)

    def _PeekMessage(self, request: Request, name: str) -> Response:
        msg = self.store.receive(name, 1, 0, peek=True)[0]
        return _response(200, request, "Message", _message_xml(msg, peek=True))

    def _BatchPeekMessage(self, request: Request, name: str) -> Response:
        msgs = self.store.receive(name, self._count(request), 0, peek=True)
        return _response(
            200,
            request,
            "Messages",
            "".join(f"<Message>{_message_xml(m, peek=True)}</Message>" for m in msgs),
        )

    def _DeleteMessage(self, request: Request, name: str) -> Response:
        handle = _query(request).get("receipthandle", "")
        if not handle:
            raise ApiError(400, "MissingReceiptHandle", "ReceiptHandle is required")
        self.store.delete_message(name, handle)
        return _response(204, request)

    def _BatchDeleteMessage(self, request: Request, name: str) -> Response:
        handles = [e.text or "" for e in _parse(request.body) if e.tag.rsplit("}", 1)[-1] == "ReceiptHandle"]
        if not 1 <= len(handles) <= _BATCH_MAX:
            raise ApiError(
                400, "InvalidArgument", f"a batch holds 1 to {_BATCH_MAX} receipt handles, got {len(handles)}"
            )
        self.store.get(name)
        errors = []
        for handle in handles:
            try:
                self.store.delete_message(name, handle)
            except ApiError as err:
                errors.append(
                    _fields(
                        [("ErrorCode", err.code), ("ErrorMessage", err.message), ("ReceiptHandle", handle)]
                    )
                )
        if errors:
            return _response(404, request, "Errors", "".join(f"<Error>{e}</Error>" for e in errors))
        return _response(204, request)

    def _ChangeMessageVisibility(self, request: Request, name: str) -> Response:
        query = _query(request)
        handle = query.get("receipthandle", "")
        if not handle:
            raise ApiError(400, "MissingReceiptHandle", "ReceiptHandle is required")
        timeout = _int(query.get("visibilitytimeout"), "VisibilityTimeout")
        if timeout is None:
            raise ApiError(400, "MissingVisibilityTimeout", "VisibilityTimeout is required")
        msg = self.store.change_visibility(name, handle, timeout)
        inner = _fields([("ReceiptHandle", msg.receipt_handle), ("NextVisibleTime", msg.next_visible_time)])
        return _response(200, request, "ChangeVisibility", inner)
