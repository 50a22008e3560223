"""FcListAsyncTasksOperator: filter a function's async task history (by name prefix, status, start time)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = ["FcListAsyncTasksOperator"]

MAX_LIMIT = 1000
# XCom rows stay small (64 KB on MySQL): payloads are cut, then dropped, to keep the whole list under this.
PAYLOAD_LIMIT = 2048
XCOM_BUDGET = 48 * 1024


class FcListAsyncTasksOperator(BaseOperator):
    """List async tasks of a function into XCom, newest first by default.

    :param function_name: the function (templated).
    :param qualifier: restrict to one qualifier (templated).
    :param prefix: task id prefix (templated).
    :param status: one status or several (``"Failed"``, ``["Failed", "Expired"]``; templated).
    :param started_after: tasks started at or after this: a datetime, an ISO 8601 string (templated), or a
        timedelta counted back from the end of the data interval (``timedelta(hours=24)``: the last 24 hours).
    :param started_before: tasks started before this (same forms).
    :param include_payload: add each task's input payload (cut to 2 KB each, dropped when the list would exceed
        48 KB).
    :param newest_first: order by start time, newest first (False: oldest first).
    :param limit: at most this many tasks (hard cap 1000); pages are fetched lazily, only as many as needed.
    :param fc_conn_id: the ``alibaba_fc`` connection.

    XCom return value: a list of ``{task_id, status, request_id, started_time, end_time, duration_ms,
    retried_times, error_message}`` (times as ISO strings).
    """

    template_fields: Sequence[str] = (
        "function_name",
        "qualifier",
        "prefix",
        "status",
        "started_after",
        "started_before",
    )
    ui_color = "#ffd8a8"

    def __init__(
        self,
        *,
        function_name: str,
        qualifier: str | None = None,
        prefix: str | None = None,
        status: str | Sequence[str] | None = None,
        started_after: datetime | timedelta | str | None = None,
        started_before: datetime | timedelta | str | None = None,
        include_payload: bool = False,
        newest_first: bool = True,
        limit: int = 100,
        fc_conn_id: str = "fc_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
        for name, value in (("started_after", started_after), ("started_before", started_before)):
            if isinstance(value, timedelta) and value < timedelta(0):
                raise ValueError(
                    f"{name}: a timedelta counts back from the data interval's end; give it positive"
                )
        self.function_name = function_name
        self.qualifier = qualifier
        self.prefix = prefix
        self.status = status
        self.started_after = started_after
        self.started_before = started_before
        self.include_payload = include_payload
        self.newest_first = newest_first
        self.limit = limit
        self.fc_conn_id = fc_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from airflow_fc_async.core.errors import FcError
        from airflow_fc_async.hooks.fc import FcHook
        from airflow_fc_async.operators.outcome import airflow_error

        anchor = context.get("data_interval_end") or context.get("logical_date")
        after = resolve_time("started_after", self.started_after, anchor)
        before = resolve_time("started_before", self.started_before, anchor)
        status = parse_status(self.status)
        self.log.info(
            "Listing async tasks of %s: qualifier=%s prefix=%s status=%s started in [%s, %s) limit=%d",
            self.function_name,
            self.qualifier,
            self.prefix,
            status,
            after.isoformat() if after else "-",
            before.isoformat() if before else "-",
            self.limit,
        )
        try:
            tasks = FcHook(fc_conn_id=self.fc_conn_id).list_async_tasks(
                self.function_name,
                qualifier=self.qualifier,
                prefix=self.prefix,
                status=status,
                started_after=after,
                started_before=before,
                include_payload=self.include_payload,
                newest_first=self.newest_first,
                limit=self.limit,
            )
            summaries = [t.summary(include_payload=self.include_payload) for t in tasks]
        except FcError as err:
            raise airflow_error(err, f"Listing the async tasks of {self.function_name}") from err
        if self.include_payload:
            summaries = guard_payloads(summaries, self.log)
        counts: dict[str, int] = {}
        for s in summaries:
            counts[s["status"]] = counts.get(s["status"], 0) + 1
        self.log.info("Found %d task(s): %s", len(summaries), counts or "none")
        return summaries


def parse_status(value: str | Sequence[str] | None) -> list[str] | None:
    """Statuses from a name, a list, or a rendered template (``"Failed,Expired"`` or a JSON list)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return [str(v) for v in json.loads(text)]
        return [v.strip() for v in text.split(",") if v.strip()]
    return [str(v) for v in value]


def resolve_time(
    name: str, value: datetime | timedelta | str | None, anchor: datetime | None
) -> datetime | None:
    """A time bound as an aware datetime; a timedelta counts back from ``anchor`` (the data interval's end)."""
    if value is None or value == "":
        return None
    if isinstance(value, timedelta):
        return (anchor or datetime.now(UTC)) - value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise AirflowFailException(f"{name}: {value!r} is not an ISO 8601 date-time") from None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise AirflowFailException(
        f"{name} must be a datetime, timedelta or ISO string, got {type(value).__name__}"
    )


def guard_payloads(summaries: list[dict[str, Any]], log: Any) -> list[dict[str, Any]]:
    """Cut each payload to PAYLOAD_LIMIT characters and drop them all past XCOM_BUDGET bytes in total."""
    cut = 0
    for s in summaries:
        payload = s.get("payload")
        if isinstance(payload, str) and len(payload) > PAYLOAD_LIMIT:
            s["payload"] = payload[:PAYLOAD_LIMIT] + f"...(cut, {len(payload)} characters)"
            cut += 1
    if cut:
        log.warning("%d payload(s) longer than %d characters were cut", cut, PAYLOAD_LIMIT)
    size = len(json.dumps(summaries, default=str))
    if size > XCOM_BUDGET:
        for s in summaries:
            s["payload"] = None
        log.warning("Payloads dropped: the list would be %d bytes in XCom (budget %d)", size, XCOM_BUDGET)
    return summaries
