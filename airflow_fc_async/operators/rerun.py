"""FcRerunAsyncTaskOperator: run a past execution again, with its own payload, under a new task id."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_fc_async.core.errors import FcError, FcValidationError
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["FcRerunAsyncTaskOperator"]


class FcRerunAsyncTaskOperator(FcInvokeAsyncOperator):
    """Re-run a past async task: read its payload, invoke it again under a new id, then wait and report exactly
    as :class:`FcInvokeAsyncOperator` does (same waiting, deferral, stop on kill, re-attach and XCom).

    :param function_name: the function (templated).
    :param source_task_id: the async task to run again (templated); its payload is read with GetAsyncTask.
    :param qualifier: the source task's qualifier, also used for the new task (templated).
    :param new_task_id: the new task's id (templated). By default it is deterministic: the source id, ``-rerun-``,
        a hash of the source id and this task instance (dag, task, run, map index), then ``-t<try>``; so a repeat
        of a try attaches to its own task, and a retry re-attaches to a re-run still in progress.

    :param payload_override: keys set over the source's payload (a JSON object), e.g. a smaller batch or a
        longer budget for the second attempt (templated); None re-sends the payload unchanged.

    Every other parameter is :class:`FcInvokeAsyncOperator`'s (``payload`` excepted: it is the source's).
    """

    template_fields: Sequence[str] = (
        "function_name",
        "source_task_id",
        "qualifier",
        "new_task_id",
        "payload_override",
        "destination_queue",
    )

    def __init__(
        self,
        *,
        function_name: str,
        source_task_id: str,
        qualifier: str = "LATEST",
        new_task_id: str | None = None,
        payload_override: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if "payload" in kwargs or "async_task_id" in kwargs:
            raise ValueError("FcRerunAsyncTaskOperator sends the source task's payload under new_task_id")
        super().__init__(
            function_name=function_name, qualifier=qualifier, async_task_id=new_task_id, **kwargs
        )
        if not isinstance(source_task_id, str) or not source_task_id:
            raise ValueError(f"source_task_id must be a non-empty string, got {source_task_id!r}")
        self.source_task_id = source_task_id
        self.new_task_id = new_task_id
        self.payload_override = payload_override

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_fc_async.core import task_ids
        from airflow_fc_async.core.validation import check_rerun_payload
        from airflow_fc_async.operators.outcome import airflow_error

        task_ids.validate_task_id("source_task_id", self.source_task_id)
        self.async_task_id = self.new_task_id
        try:
            source = self.hook.get_async_task(
                self.function_name, self.source_task_id, qualifier=self.qualifier
            )
        except FcError as err:
            raise airflow_error(err, f"Reading the source FC task {self.source_task_id}") from err
        if source.payload is None:
            raise AirflowFailException(
                f"FC task {self.source_task_id} of {self.function_name} has no payload in its record "
                "(was asyncTask enabled when it ran?): nothing to re-run"
            )
        try:
            payload = check_rerun_payload(source.task_id, source.payload)
        except FcValidationError as err:
            raise AirflowFailException(
                f"Re-running FC task {self.source_task_id} of {self.function_name}: {err}"
            ) from None
        self.payload = self._with_override(payload)
        self.log.info(
            "Re-running FC task %s (%s, request id %s) of %s",
            source.task_id,
            source.status.value,
            source.request_id,
            self.function_name,
        )
        return super().execute(context)

    def _with_override(self, payload: bytes) -> bytes:
        if not self.payload_override:
            return payload
        if not isinstance(self.payload_override, dict):
            raise AirflowFailException(
                f"payload_override: expected a dict, got {type(self.payload_override).__name__}"
            )
        try:
            base = json.loads(payload)
        except ValueError:
            base = None
        if not isinstance(base, dict):
            raise AirflowFailException(
                f"payload_override: the payload of FC task {self.source_task_id} is not a JSON object"
            )
        self.log.info("Payload override for the re-run: %s", sorted(self.payload_override))
        return json.dumps({**base, **self.payload_override}).encode("utf-8")

    def _task_id_prefix(self, context: Context) -> tuple[str, bool]:
        if self.new_task_id:
            return super()._task_id_prefix(context)
        from airflow_fc_async.core import task_ids

        instance, _ = super()._task_id_prefix(context)
        return task_ids.rerun_prefix(self.source_task_id, instance), False
