"""What an :class:`~airflow_fc_async.triggers.fc.FcAsyncTaskTrigger` puts in its terminal event besides ids and
counts: the task's scalar fields (:func:`event_task`) and, with ``destination_queue``, ``destination``: the claim
of the task's destination record, or why there is none (:class:`RecordClaim`).

The trigger waits for the record after the end through its triggerer's one receiver per queue
(:mod:`~airflow_fc_async.core.destination_receiver`); the claim's message stays held (``hold`` s) for the worker,
which deletes it once the record is stored. Nothing here raises: the task's status stands whatever the queue says.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_fc_async.core.errors import FcError

if TYPE_CHECKING:
    from airflow_fc_async.core.destination_receiver import ClaimedRecord
    from airflow_fc_async.core.models import AsyncTask
    from airflow_fc_async.core.push_completion import AsyncRecordSignal

__all__ = ["MAX_RECORD_BYTES", "RecordClaim", "event_task"]

STATUS_RECHECK = 5.0  # while waiting for a record, re-read destinationStatus this often
NOT_DELIVERED = "FC reports destinationStatus Failed: it did not deliver the record"
MAX_RECORD_BYTES = 40 * 1024
"""A destination record in a trigger event is cut to this (payloads dropped, flagged) to keep the event small."""


_EVENT_TASK_KEYS = (
    "taskId",
    "status",
    "requestId",
    "qualifier",
    "startedTime",
    "endTime",
    "durationMs",
    "alreadyRetriedTimes",
    "destinationStatus",
)
_EVENT_ERROR_CHARS = 500


def event_task(task: AsyncTask) -> dict[str, Any]:
    """The small wire-form view of a terminal task for the event: scalars only, the error message cut short."""
    from airflow_fc_async.core.progress import truncate

    raw = dict(task.raw)
    small = {k: raw[k] for k in _EVENT_TASK_KEYS if raw.get(k) is not None}
    small.setdefault("taskId", task.task_id)
    small.setdefault("status", task.status.value)
    if task.error_message:
        small["taskErrorMessage"] = truncate(task.error_message, _EVENT_ERROR_CHARS)
    return small


@dataclass
class RecordClaim:
    """The wait for one task's record on ``queue``: ``timeout`` s (plus ``hold`` when FC says it delivered it: a
    killed triggerer's hold may still hide it)."""

    queue: str
    function_name: str
    timeout: float
    hold: int
    mns: Callable[[], Any]  # the trigger's MnsHook
    read_task: Callable[[], Awaitable[AsyncTask]]  # GetAsyncTask of the task, for its destinationStatus
    log: Any  # the trigger's logger (Airflow's, in the task log)

    async def event(
        self, task: AsyncTask, request_id: str | None, push: AsyncRecordSignal | None = None
    ) -> dict[str, Any]:
        """``{"claim": ..., "dropped": ...}`` or ``{"claim": None, "reason": ...}``."""
        if not request_id:
            return {"claim": None, "reason": "the task has no request id"}
        if push is not None:
            if push.claim is not None and push.claim.record.request_id == request_id:
                claim = push.take_claim()
                if claim is not None:
                    return self._claim_event(claim)
            await push.aclose()  # its waiter on this queue would take the receipt handle from the claim below
        if task.destination_status == "Failed":
            return {"claim": None, "reason": NOT_DELIVERED}
        timeout = self.timeout + (self.hold if task.destination_status == "Succeeded" else 0)
        deadline, claim = time.monotonic() + timeout, None
        while claim is None and time.monotonic() < deadline:
            try:
                claim = await self.mns().aclaim_destination_record(
                    self.queue,
                    request_id,
                    timeout=min(STATUS_RECHECK, max(0.1, deadline - time.monotonic())),
                    hold_seconds=self.hold,
                    function_name=self.function_name,
                )
            except FcError as err:
                self.log.warning("Waiting for the record of %s on %s failed: %s", request_id, self.queue, err)
                return {"claim": None, "reason": f"reading the queue failed: {err}"}
            if claim is None and await self._not_delivered():  # FC may say so after the end
                return {"claim": None, "reason": NOT_DELIVERED}
        if claim is None:
            return {"claim": None, "reason": f"no record within {timeout:g} s"}
        return self._claim_event(claim)

    def _claim_event(self, claim: ClaimedRecord) -> dict[str, Any]:
        from airflow_fc_async.core.destinations import fit_record

        event = claim.to_event()
        event["record"], dropped = fit_record(event["record"], MAX_RECORD_BYTES)
        self.log.info("Destination record of %s received from %s", claim.record.request_id, claim.queue)
        return {"claim": event, "dropped": dropped}

    async def _not_delivered(self) -> bool:
        try:
            task = await self.read_task()
        except FcError:
            return False
        return bool(task.destination_status == "Failed")
