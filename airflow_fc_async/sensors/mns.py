"""FcDestinationSensor: waits for one task's destination record on a shared MNS queue and puts it in XCom.

The record is found by request id: given directly, or read from the async task (``function_name`` +
``async_task_id`` -> GetAsyncTask -> ``requestId``). Other consumers of the queue are left alone (see
:mod:`airflow_fc_async.core.destinations`). With ``delete_on_read`` the message is deleted only after the record
is stored: the sensor pushes the XCom itself, then deletes, then returns the same value (which Airflow pushes
again, unchanged). If the worker dies between the two, the message reappears after its hold: never lost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.policies import DEFER_MARGIN, SYNC_HOLD_SECONDS, TRIGGER_HOLD_SECONDS

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_fc_async.core.destination_receiver import ClaimedRecord
    from airflow_fc_async.hooks.mns import MnsHook

__all__ = ["FcDestinationSensor"]

_FIRST_LOOK = (
    2.0  # seconds the deferrable sensor listens before deferring (a record already there is not deferred)
)


class FcDestinationSensor(BaseSensorOperator):
    """Wait for the destination record of one async invocation; XCom: the record as a dict (payloads decoded).

    :param queue_name: the MNS queue of the destination (templated).
    :param request_id: the invocation's request id (templated); or give ``function_name`` + ``async_task_id``.
    :param function_name: the FC function (templated), with ``async_task_id`` (templated) and ``qualifier``.
    :param delete_on_read: delete the record's message once it is stored in XCom.
    :param deferrable: wait in the triggerer, where one receiver serves every waiting sensor of the queue.
    :param poke_interval: in poke mode, how long each poke listens for the record (at most 30 s per poke).
    :param fc_conn_id: the Airflow connection (templated).
    """

    template_fields: Sequence[str] = (
        "queue_name",
        "request_id",
        "function_name",
        "async_task_id",
        "qualifier",
        "fc_conn_id",
    )
    ui_color = "#c8e6ff"

    def __init__(
        self,
        *,
        queue_name: str,
        request_id: str | None = None,
        function_name: str | None = None,
        async_task_id: str | None = None,
        qualifier: str = "LATEST",
        delete_on_read: bool = True,
        fc_conn_id: str = "fc_default",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float | timedelta = 10,
        hold_seconds: int = TRIGGER_HOLD_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        if not isinstance(queue_name, str) or not queue_name.strip():
            raise ValueError(f"queue_name must be a non-empty string, got {queue_name!r}")
        if not request_id and not (function_name and async_task_id):
            raise ValueError(
                "give request_id, or function_name and async_task_id (resolved with GetAsyncTask)"
            )
        self.queue_name = queue_name
        self.request_id = request_id
        self.function_name = function_name
        self.async_task_id = async_task_id
        self.qualifier = qualifier
        self.delete_on_read = delete_on_read
        self.fc_conn_id = fc_conn_id
        self.deferrable = deferrable
        self.hold_seconds = int(hold_seconds)

    @property
    def hook(self) -> MnsHook:
        hook = self.__dict__.get("_mns_hook")
        if hook is None:
            from airflow_fc_async.hooks.mns import MnsHook

            hook = self.__dict__["_mns_hook"] = MnsHook(fc_conn_id=self.fc_conn_id)
        return hook

    def _request_id(self) -> str | None:
        """The request id to look for; None while it cannot be read yet (a transient error)."""
        if self.request_id:
            return self.request_id
        from airflow_fc_async.hooks.fc import FcHook

        try:
            task = FcHook(fc_conn_id=self.fc_conn_id).get_async_task(
                str(self.function_name), str(self.async_task_id), qualifier=self.qualifier
            )
        except FcError as err:
            if err.retryable:
                self.log.warning("Transient error reading FC task %s: %s", self.async_task_id, err)
                return None
            raise AirflowFailException(f"Reading FC async task {self.async_task_id} failed: {err}") from err
        if not task.request_id:
            raise AirflowFailException(f"FC async task {self.async_task_id} has no request id")
        self.request_id = task.request_id
        self.log.info("FC task %s has request id %s", self.async_task_id, task.request_id)
        return self.request_id

    def _listen(self, seconds: float) -> ClaimedRecord | None:
        rid = self._request_id()
        if rid is None:
            return None
        try:
            return self.hook.claim_destination_record(
                self.queue_name,
                rid,
                timeout=seconds,
                delete_on_read=self.delete_on_read,
                hold_seconds=SYNC_HOLD_SECONDS,
                function_name=self.function_name,
            )
        except FcError as err:
            if err.retryable:
                self.log.warning("Transient MNS error on %s: %s", self.queue_name, err)
                return None
            raise AirflowFailException(f"Reading MNS queue {self.queue_name} failed: {err}") from err

    def _store_then_delete(self, context: Context, claim: ClaimedRecord) -> dict[str, Any]:
        value = claim.record.to_dict()
        context["ti"].xcom_push(key="return_value", value=value)  # stored before the message goes
        if claim.delete_on_read:
            self.hook.ack_destination_record(claim)
        self.log.info(
            "Destination record of %s: condition=%r functionError=%r",
            claim.record.request_id,
            claim.record.condition,
            claim.record.function_error,
        )
        return value

    def poke(self, context: Context) -> bool | PokeReturnValue:
        claim = self._listen(max(1.0, min(float(self.poke_interval), 30.0)))
        if claim is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self._store_then_delete(context, claim))

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        claim = self._listen(_FIRST_LOOK)  # a record already there is taken now: no deferral, no lost XCom
        if claim is not None:
            return self._store_then_delete(context, claim)
        from airflow_fc_async.triggers.mns import FcDestinationTrigger

        self.defer(
            trigger=FcDestinationTrigger(
                queue_name=self.queue_name,
                request_id=str(self.request_id),
                fc_conn_id=self.fc_conn_id,
                timeout_at=time.time() + self.timeout,
                delete_on_read=self.delete_on_read,
                hold_seconds=self.hold_seconds,
                function_name=self.function_name,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + DEFER_MARGIN),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        from airflow.providers.common.compat.sdk import AirflowSensorTimeout

        from airflow_fc_async.core.destination_receiver import ClaimedRecord

        if not isinstance(event, dict) or "status" not in event:
            raise AirflowException(f"Unexpected trigger event: {event!r}")
        status = event["status"]
        if status == "success":
            return self._store_then_delete(context, ClaimedRecord.from_event(event))
        if status == "timeout":
            raise AirflowSensorTimeout(
                f"no destination record for request {self.request_id} on {self.queue_name} "
                f"within the sensor timeout ({self.timeout:g} s)"
            )
        raise AirflowFailException(f"Waiting for a destination record failed: {event.get('message')}")
