"""FcDestinationTrigger: waits in the triggerer for one request id's destination record on a shared MNS queue.

Every trigger waiting on the same (connection, queue) registers with the one receiver the triggerer process runs
for that queue (:mod:`airflow_fc_async.core.destination_receiver`): 500 deferred sensors cost one receive loop,
not 500. The trigger does not delete the message: it holds it invisible for ``hold_seconds`` and puts the
receipt handle in its event; the worker deletes it in ``execute_complete`` after the record is in XCom.

Events (``status``): ``success`` (``record``, ``queue``, ``message_id``, ``receipt_handle``, ``delete_on_read``),
``timeout`` (``timeout_at`` passed), ``error`` (a permanent MNS error: no such queue, bad credentials).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.policies import TRIGGER_HOLD_SECONDS

__all__ = ["FcDestinationTrigger"]

_LONG_WAIT = 7 * 24 * 3600.0  # "no timeout": MNS keeps a message at most 7 days


class FcDestinationTrigger(BaseTrigger):
    """Wait for the destination record of ``request_id`` on ``queue_name``.

    :param queue_name: the MNS queue of the onSuccess/onFailure destination.
    :param request_id: the async invocation's request id (``requestContext.requestId`` of the record).
    :param fc_conn_id: the Airflow connection (read in the triggerer, asynchronously; never a secret here).
    :param timeout_at: epoch seconds after which a ``timeout`` event fires; None waits up to 7 days.
    :param delete_on_read: whether the worker deletes the message once the record is stored.
    :param hold_seconds: how long the message stays invisible for the worker's delete.
    :param function_name: the record's function, when known: this triggerer then hands back at once the records
        of that function that other triggerers or workers wait for.
    """

    def __init__(
        self,
        queue_name: str,
        request_id: str,
        fc_conn_id: str = "fc_default",
        timeout_at: float | None = None,
        delete_on_read: bool = True,
        hold_seconds: int = TRIGGER_HOLD_SECONDS,
        function_name: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.queue_name = queue_name
        self.request_id = request_id
        self.fc_conn_id = fc_conn_id
        self.timeout_at = timeout_at
        self.delete_on_read = delete_on_read
        self.hold_seconds = int(hold_seconds)
        self.function_name = function_name

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "queue_name": self.queue_name,
                "request_id": self.request_id,
                "fc_conn_id": self.fc_conn_id,
                "timeout_at": self.timeout_at,
                "delete_on_read": self.delete_on_read,
                "hold_seconds": self.hold_seconds,
                "function_name": self.function_name,
            },
        )

    def _hook(self) -> Any:
        hook = self.__dict__.get("_mns_hook")
        if hook is None:
            from airflow_fc_async.hooks.mns import MnsHook

            hook = self.__dict__["_mns_hook"] = MnsHook(fc_conn_id=self.fc_conn_id)
        return hook

    def _event(self, status: str, **extra: Any) -> TriggerEvent:
        payload = {"status": status, "queue": self.queue_name, "request_id": self.request_id, **extra}
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        remaining = _LONG_WAIT if self.timeout_at is None else max(0.0, self.timeout_at - time.time())
        try:
            claim = await self._hook().aclaim_destination_record(
                self.queue_name,
                self.request_id,
                timeout=remaining,
                delete_on_read=self.delete_on_read,
                hold_seconds=self.hold_seconds,
                function_name=self.function_name,
            )
        except FcError as err:
            self.log.error(
                "Waiting for the record of %s on %s failed: %s", self.request_id, self.queue_name, err
            )
            yield self._event("error", message=str(err))
            return
        if claim is None:
            yield self._event("timeout", message="no destination record before the deadline")
            return
        self.log.info("Destination record of %s found on %s", self.request_id, self.queue_name)
        yield self._event("success", **claim.to_event())

    async def cleanup(self) -> None:
        """Release this trigger's HTTP session (the shared receiver owns its own and stops when idle)."""
        hook = self.__dict__.pop("_mns_hook", None)
        if hook is not None:
            try:
                await hook.aclose()
            except Exception as err:  # best effort
                self.log.debug("Closing the MNS hook failed: %s", err)
