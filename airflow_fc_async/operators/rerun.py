"""FcRerunAsyncTaskOperator: run a past execution again, with its own payload, under a new task id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_fc_async.core import task_ids
from airflow_fc_async.core.errors import FcError
from airflow_fc_async.operators._base import airflow_error
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

    Every other parameter is :class:`FcInvokeAsyncOperator`'s (``payload`` excepted: it is the source's).
    """

    template_fields: Sequence[str] = (
        "function_name",
        "source_task_id",
        "qualifier",
        "new_task_id",
        "destination_queue",
    )

    def __init__(
        self,
        *,
        function_name: str,
        source_task_id: str,
        qualifier: str = "LATEST",
        new_task_id: str | None = None,
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

    def execute(self, context: Context) -> dict[str, Any]:
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
        self.payload = source.payload
        self.log.info(
            "Re-running FC task %s (%s, request id %s) of %s",
            source.task_id,
            source.status.value,
            source.request_id,
            self.function_name,
        )
        return super().execute(context)

    def _task_id_prefix(self, context: Context) -> tuple[str, bool]:
        if self.new_task_id:
            return super()._task_id_prefix(context)
        instance, _ = super()._task_id_prefix(context)
        return task_ids.rerun_prefix(self.source_task_id, instance), False
