"""The "FC async task" extra link: the FC console page of the task an operator started.

The operator persists the full URL to XCom (key :attr:`FcAsyncTaskLink.xcom_key`) during ``execute``, before it
waits or defers, so the button works while the task runs (Airflow 3's API server reads that XCom key directly;
the worker's finalize step re-pushes what :meth:`get_link` returns, which is the same value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, TaskInstanceKey

__all__ = ["FcAsyncTaskLink"]


class FcAsyncTaskLink(BaseOperatorLink):
    """Link to the FC console page of the async task; empty until the operator has persisted it."""

    name = "FC async task"

    @property
    def xcom_key(self) -> str:
        return "fc_async_task_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Any, url: str) -> None:
        """Push ``url`` for the running task instance."""
        context["ti"].xcom_push(key=cls().xcom_key, value=url)
