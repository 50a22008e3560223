"""The destination record of one followed task: awaited on its MNS queue, stored, then taken off the queue.

Used by ``FcAsyncTaskMixin.finish`` when the operator names a ``destination_queue``. The record is stored (XCom
key ``destination_record``, the task state store on Airflow 3.3+) before its message is deleted, so it is never
lost; other consumers' messages on the queue are left alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_fc_async.operators.outcome import MAX_RESULT_BYTES, fit_destination_record

if TYPE_CHECKING:
    from airflow_fc_async.core.models import AsyncTask
    from airflow_fc_async.operators.outcome import TaskRef

__all__ = ["RECORD_KEY", "DestinationRecordWait"]

RECORD_KEY = "fc_destination_record"
"""Key of the task state store holding the destination record once it was taken off the queue."""

_STATUS_RECHECK = 5.0  # while waiting for a record, re-read destinationStatus this often
_NOT_DELIVERED = "FC reports destinationStatus Failed: it did not deliver the record"


@dataclass(frozen=True)
class DestinationRecordWait:
    """Find, store and acknowledge the destination record of one ended task.

    :param queue: the MNS queue of the function's destination.
    :param timeout: how long to wait for the record after the terminal status (seconds).
    :param required: a succeeded task without a record fails (``AirflowFailException``) instead of warning.
    :param fc_conn_id: the connection of the ``MnsHook``.
    :param log: the task's logger.
    :param destination_failed: whether FC now reports ``destinationStatus`` Failed (False when it cannot tell).
    """

    queue: str
    timeout: float
    required: bool
    fc_conn_id: str
    log: Any
    destination_failed: Callable[[], bool]

    def record(self, context: Any, ref: TaskRef, task: AsyncTask, event: Any = None) -> dict[str, Any] | None:
        """The task's record (None when none came). ``event``: what the trigger found (deferrable mode).

        The record may reach the queue before or after the terminal status is read: it is awaited at most
        ``timeout`` seconds, not at all when FC reports ``destinationStatus`` Failed. No record: a warning, or a
        failure with ``required``.
        """
        request_id = task.request_id or ref.request_id
        if not request_id:
            return None
        from airflow_fc_async import compat
        from airflow_fc_async.core.errors import FcError
        from airflow_fc_async.hooks.mns import MnsHook

        state = compat.task_state_store(context)
        saved = _saved_record(state, request_id)
        if saved is not None:  # an earlier try took the record off the queue; XCom did not outlive that try
            self.log.info("Destination record of %s: kept by an earlier try", request_id)
            _push_record(context, saved)
            return saved

        def store(value: dict[str, Any]) -> dict[str, Any]:
            return self._store(context, state, request_id, value)

        hook = MnsHook(fc_conn_id=self.fc_conn_id)
        if isinstance(event, dict):  # deferrable: the trigger waited for the record
            claim = event.get("claim")
            if not isinstance(claim, dict):
                return self._none(request_id, str(event.get("reason") or "none came"), task)
            from airflow_fc_async.core.destination_receiver import ClaimedRecord

            value = store(dict(claim["record"]))
            try:
                hook.ack_destination_record(ClaimedRecord.from_event(claim))
            except FcError as err:  # stored: a failed delete must not fail the task
                self.log.warning(
                    "Deleting the message of record %s from %s failed: %s", request_id, self.queue, err
                )
            self.log.info(
                "Destination record of %s: condition=%r", request_id, value["requestContext"]["condition"]
            )
            return value
        if task.destination_status == "Failed":
            return self._none(request_id, _NOT_DELIVERED, task)
        self.log.info(
            "Waiting up to %g s for the destination record of %s on queue %s",
            self.timeout,
            request_id,
            self.queue,
        )
        stored: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.timeout
        rec = None
        while rec is None and time.monotonic() < deadline:
            try:
                rec = hook.wait_for_destination_record(
                    self.queue,
                    request_id,
                    min(_STATUS_RECHECK, max(0.1, deadline - time.monotonic())),
                    before_delete=lambda r: stored.append(store(r.to_dict())),
                    function_name=ref.function_name,
                )
            except FcError as err:
                return self._none(request_id, f"reading the queue failed: {err}", task)
            if rec is None and self.destination_failed():  # FC may report it after the terminal status
                return self._none(request_id, _NOT_DELIVERED, task)
        if rec is None:
            return self._none(request_id, f"none came within destination_timeout={self.timeout:g} s", task)
        self.log.info("Destination record of %s: condition=%r", request_id, rec.condition or "")
        return stored[0]

    def _store(self, context: Any, state: Any, request_id: str, value: dict[str, Any]) -> dict[str, Any]:
        value, dropped = fit_destination_record(value)
        if dropped:
            self.log.warning(
                "The destination record of %s is larger than %d bytes: %s left out of XCom",
                request_id,
                MAX_RESULT_BYTES,
                " and ".join(dropped),
            )
        if state is not None:  # Airflow 3.3+: survives a retry, which XCom does not
            try:
                state.set(RECORD_KEY, value)
            except Exception as err:
                self.log.warning("Could not keep the destination record in the task state store: %s", err)
        _push_record(context, value)
        return value

    def _none(self, request_id: str, reason: str, task: AsyncTask) -> dict[str, Any] | None:
        """No record: the warning (or, with ``required`` on a succeeded task, the failure)."""
        message = (
            f"No destination record for request {request_id} on MNS queue {self.queue}: {reason}. Check that the "
            f"function's async invoke config sends its records there (destinationConfig onSuccess/onFailure), "
            f"that no other consumer deletes them, and destination_timeout. GetAsyncTask's status "
            f"{task.status.value} stands."
        )
        if self.required and task.is_successful:
            raise AirflowFailException(message + " destination_required=True: failing the task.")
        self.log.warning(message)
        return None


def _push_record(context: Any, value: dict[str, Any]) -> None:
    from airflow_fc_async import compat

    ti = compat.context_task_instance(context)
    if ti is not None:
        ti.xcom_push(key="destination_record", value=value)


def _saved_record(state: Any, request_id: str) -> dict[str, Any] | None:
    """The destination record of ``request_id`` an earlier try kept in the task state store, if any."""
    if state is None:
        return None
    try:
        saved = state.get(RECORD_KEY)
    except Exception:
        return None
    if isinstance(saved, dict) and (saved.get("requestContext") or {}).get("requestId") == request_id:
        return saved
    return None
