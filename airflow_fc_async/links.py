"""The "FC async task" extra link: the FC console page of the task an operator started.

A blocking operator persists the full URL to XCom (key :attr:`FcAsyncTaskLink.xcom_key`) during ``execute``, before
it waits, so the button works while the task runs. The worker's finalize step pushes what :meth:`get_link` returns
at every exit, the deferral exit included: a deferrable operator leaves the push to it, and :meth:`get_link`
answers from the operator that ran (no XCom read) in the worker. Airflow 3's API server reads the XCom key.
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
        # In the worker's finalize step the operator that ran knows the URL: no XCom read (an API round trip).
        known = operator.__dict__.get("_fc_console_url") if hasattr(operator, "__dict__") else None
        if known:
            return str(known)
        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Any, url: str) -> None:
        """Push ``url`` for the running task instance."""
        context["ti"].xcom_push(key=cls().xcom_key, value=url)
