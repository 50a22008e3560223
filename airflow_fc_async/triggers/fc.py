"""FcAsyncTaskTrigger: follows one FC async task in the triggerer and fires exactly one event.

Event payloads (``status``):

- ``success``: the task Succeeded (the operator reads it once more for its return payload);
- ``failure``: it ended Failed, Stopped, Expired or Invalid;
- ``timeout``: ``timeout_at`` passed first (the operator stops the task);
- ``error``: a permanent API error (404, 403, ...), ``retryable`` False.

The event stays small (Airflow logs it whole, "Trigger fired event", and stores it in the metadata DB): ids,
statuses and counts. A terminal event's ``task`` holds the task's scalar fields in wire form (ids, status, times,
``alreadyRetriedTimes``, the error message cut to 500 characters), never its payloads or its event list; the
operator reads the task again for its return payload. ``progress`` is the tracker state, ``lines_logged`` the
number of lines logged here. Those lines are not in the event: the triggerer writes them into the task's log live
(Airflow 2.6+ serves the trigger's log as part of the task log), so ``execute_complete`` does not repeat them.
Transient errors (throttling, 5xx, connection) are logged and retried within the deadline.

After its first read the trigger joins its loop's shared status poller
(:mod:`~airflow_fc_async.core.status_poller`): with 2 or more tasks of the same function watched, one
ListAsyncTasks scan per tick serves them all and the trigger reads its own task only when no scan showed it
within its WaitPolicy gap.

Push (:mod:`~airflow_fc_async.core.push_completion`): when the function's async invoke config sends records to
MNS queues on both success and failure (read once per function per triggerer, cached), the trigger also waits
for its task's record through the triggerer's receiver of that queue; the record ends the wait with one
GetAsyncTask read that confirms the terminal status (the event says ``ended_by: "destination_record"``), and the
poll above runs on ``WaitPolicy.behind_push()`` as a slow fallback for a lost or late record (``ended_by:
"status_poll"``). With ``started_after`` (epoch seconds no later than the task's ``startedTime``, given by the
operator) the trigger joins the shared poller at once, without a first read of its own.

With ``logs`` (a :class:`~airflow_fc_async.core.function_logs.LogCursor` state, from ``stream_logs``), the
function's new log lines are read from SLS after every status read and logged here in the triggerer (so in the
task log, live); after the terminal status it keeps reading for at most ``log_wait`` seconds until the last
attempt's End line. A GetLogs error is logged and never changes the event.

With ``destination_queue``, a terminal event also carries ``destination``: after the end the trigger waits for
the task's destination record through its triggerer's one receiver per queue
(:mod:`~airflow_fc_async.core.destination_receiver`), which serves every deferred task of that triggerer, and
puts the claim in the event (``{"claim": {record, queue, message_id, receipt_handle, ...}}``, the record's
payloads dropped past ``fc_event.MAX_RECORD_BYTES``), or why there is none (``{"claim": None, "reason": ...}``). The
message stays held (``destination_hold`` s) and the worker deletes it once the record is stored. A triggerer
killed in between loses nothing: the hold ends, the trigger re-runs on another triggerer and receives it again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_fc_async.core.errors import FcError

if TYPE_CHECKING:  # the rest is imported where it runs: a DAG file that imports this module needs none of it
    from airflow_fc_async.core.function_logs import LogCursor
    from airflow_fc_async.core.models import AsyncTask
    from airflow_fc_async.core.progress import ProgressTracker
    from airflow_fc_async.core.push_completion import AsyncRecordSignal
    from airflow_fc_async.core.status_poller import TaskWatch
    from airflow_fc_async.core.waiting import Deadline, WaitPolicy
    from airflow_fc_async.triggers.fc_event import RecordClaim

__all__ = ["FcAsyncTaskTrigger"]


class FcAsyncTaskTrigger(BaseTrigger):
    """Poll an FC async task until it ends, ``timeout_at`` passes or a permanent error occurs.

    :param function_name: the FC function.
    :param async_task_id: the FC async task id (``task_id`` is taken by ``BaseTrigger``: the Airflow task id).
    :param qualifier: version or alias.
    :param fc_conn_id: the Airflow connection (read in the triggerer, asynchronously; never a secret here).
    :param poll_interval: the longest gap between two reads, seconds (the WaitPolicy backs off to it).
    :param timeout_at: epoch seconds after which a ``timeout`` event fires; None waits without a limit.
    :param stop_on_kill: stop the FC task when a user kills the deferred Airflow task.
    :param progress: the ProgressTracker state so far (so no line is logged twice).
    :param request_id: the invocation's request id, echoed in the event.
    :param logs: the function-log cursor state (``stream_logs``); None reads no function logs.
    :param log_wait: seconds to keep reading function logs after the end, for the last End line.
    :param destination_queue: the MNS queue of the function's destination: wait for the record after the end.
    :param destination_timeout: seconds to wait for it (plus ``destination_hold`` when FC reports it delivered:
        a killed triggerer's hold may still hide it).
    :param destination_hold: seconds the record's message stays invisible for the worker's delete.
    :param started_after: epoch seconds at or before the task's ``startedTime`` (the operator's first read): the
        shared poller can list the task before this trigger read it.
    """

    def __init__(
        self,
        function_name: str,
        async_task_id: str,
        qualifier: str = "LATEST",
        fc_conn_id: str = "fc_default",
        poll_interval: float = 15.0,
        timeout_at: float | None = None,
        stop_on_kill: bool = True,
        progress: dict[str, Any] | None = None,
        request_id: str | None = None,
        logs: dict[str, Any] | None = None,
        log_wait: float = 30.0,
        destination_queue: str | None = None,
        destination_timeout: float = 30.0,
        destination_hold: int = 120,
        started_after: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.function_name = function_name
        self.async_task_id = async_task_id
        self.qualifier = qualifier
        self.fc_conn_id = fc_conn_id
        self.poll_interval = float(poll_interval)
        self.timeout_at = timeout_at
        self.stop_on_kill = stop_on_kill
        self.progress = dict(progress or {})
        self.request_id = request_id
        self.logs = dict(logs) if logs else None
        self.log_wait = float(log_wait)
        self.destination_queue = destination_queue
        self.destination_timeout = float(destination_timeout)
        self.destination_hold = int(destination_hold)
        self.started_after = started_after

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "function_name": self.function_name,
                "async_task_id": self.async_task_id,
                "qualifier": self.qualifier,
                "fc_conn_id": self.fc_conn_id,
                "poll_interval": self.poll_interval,
                "timeout_at": self.timeout_at,
                "stop_on_kill": self.stop_on_kill,
                "progress": self.progress,
                "request_id": self.request_id,
                "logs": self.logs,
                "log_wait": self.log_wait,
                "destination_queue": self.destination_queue,
                "destination_timeout": self.destination_timeout,
                "destination_hold": self.destination_hold,
                "started_after": self.started_after,
            },
        )

    def _hook(self) -> Any:
        hook = self.__dict__.get("_fc_hook")
        if hook is None:
            from airflow_fc_async.hooks.fc import FcHook

            hook = self.__dict__["_fc_hook"] = FcHook(fc_conn_id=self.fc_conn_id)
        return hook

    def _event(self, status: str, lines: list[str], tracker: ProgressTracker, **extra: Any) -> TriggerEvent:
        payload: dict[str, Any] = {
            "status": status,
            "function_name": self.function_name,
            "qualifier": self.qualifier,
            "async_task_id": self.async_task_id,
            "request_id": self.request_id,
            "lines_logged": len(lines),
            "progress": tracker.to_dict(),
        }
        payload.update(extra)
        return TriggerEvent(payload)  # type: ignore[no-untyped-call]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_fc_async.core.function_logs import LogCursor
        from airflow_fc_async.core.models import AsyncTask
        from airflow_fc_async.core.progress import ProgressTracker
        from airflow_fc_async.core.status_poller import Sighting
        from airflow_fc_async.core.waiting import Deadline, WaitPolicy
        from airflow_fc_async.triggers.fc_event import event_task

        tracker = ProgressTracker.from_dict(self.progress)
        lines: list[str] = []
        cursor = LogCursor.from_dict(self.logs) if self.logs else None
        remaining = None if self.timeout_at is None else max(0.0, self.timeout_at - time.time())
        policy = WaitPolicy.for_poll_interval(self.poll_interval)
        deadline = Deadline(remaining, time.monotonic())
        reads = 0
        watch: TaskWatch | None = None  # this loop's shared status poller, after the first read
        asked = False
        task: AsyncTask | None = None
        push: AsyncRecordSignal | None = None  # the destination record as the end signal (push_completion)
        try:
            push = await self._push(self.request_id, deadline)
            if push is not None:
                policy = policy.behind_push()
                if self.started_after is not None:
                    asked, watch = True, await self._watch(self._expected(), policy, push=True)
            while True:
                if deadline.expired():
                    self.log.info("FC task %s: no end within the deadline", self.async_task_id)
                    yield self._event("timeout", lines, tracker, message="the deadline passed")
                    return
                delay = deadline.sleep_for(policy, reads)
                listed: AsyncTask | None = None
                pushed = False
                if watch is not None:
                    if push is not None:
                        sighting, pushed = await push.first(watch.wait(delay))
                    else:
                        sighting = await watch.wait(delay)
                    if sighting is Sighting.UNCHANGED and not pushed:  # a shared scan showed it: no read
                        if cursor is not None and task is not None:
                            await self._read_logs(cursor, task, lines)
                        continue
                    listed = sighting if isinstance(sighting, AsyncTask) else None
                elif push is not None:
                    pushed = await push.wait(delay)
                elif math.isfinite(delay) and delay > 0:
                    await asyncio.sleep(delay)
                if pushed and listed is not None and not listed.is_terminal:
                    listed = None  # the record says it ended: confirm with a read of our own
                if listed is not None and listed.is_terminal and not listed.is_successful:
                    listed = listed if listed.error_message else None  # no message listed: read the task
                try:
                    if listed is None:
                        reads += 1
                    task = listed or await self._hook().aget_async_task(
                        self.function_name, self.async_task_id, qualifier=self.qualifier
                    )
                except FcError as err:
                    if err.retryable:
                        self.log.warning("Transient error reading FC task %s: %s", self.async_task_id, err)
                        continue
                    self.log.error("Permanent error reading FC task %s: %s", self.async_task_id, err)
                    yield self._event("error", lines, tracker, message=str(err), retryable=False)
                    return
                if pushed and push is not None and not task.is_terminal:
                    # a record before the terminal status: no push is left to wait for, poll as usual
                    self.log.info(
                        "FC task %s: destination record before the end; polling", self.async_task_id
                    )
                    policy = WaitPolicy.for_poll_interval(self.poll_interval)
                    await push.aclose()
                    push, pushed = None, False
                if watch is not None and listed is None:
                    watch.observed(task)
                elif not asked and not task.is_terminal:
                    if push is None and self.request_id is None and task.request_id:
                        push = await self._push(task.request_id, deadline)
                        policy = policy.behind_push() if push is not None else policy
                    asked, watch = True, await self._watch(task, policy, push=push is not None)
                for line in tracker.update(task):
                    self.log.info("FC task %s: %s", self.async_task_id, line)
                    lines.append(line)
                if cursor is not None:
                    await self._read_logs(cursor, task, lines)
                if task.is_terminal:
                    if cursor is not None:
                        await self._drain_logs(cursor, task, lines)
                    status = "success" if task.is_successful else "failure"
                    extra: dict[str, Any] = {"ended_by": "destination_record" if pushed else "status_poll"}
                    if self.destination_queue:
                        claims = self._record_claim()
                        extra["destination"] = await claims.event(
                            task, task.request_id or self.request_id, push
                        )
                    yield self._event(
                        status, lines, tracker, task=event_task(task), task_status=task.status.value, **extra
                    )
                    return
        except asyncio.CancelledError as exc:
            # Airflow 3.3+ calls on_kill for user actions; before it, the cancel itself may be one
            from airflow_fc_async import compat

            if self.stop_on_kill and await compat.cancel_stops_remote_work(exc, self.task_instance):
                await self._stop("the deferred Airflow task was cancelled")
            raise
        finally:  # also runs when a caller takes one event and closes the generator (dag.test does)
            if watch is not None:
                watch.close()
            if push is not None:
                await push.aclose()
            await self._close_hook()

    async def _push(self, request_id: str | None, deadline: Deadline) -> AsyncRecordSignal | None:
        """The record signal when the function's destinations push every end (None: poll only)."""
        if not request_id:
            return None
        from airflow_fc_async.core.push_completion import AsyncRecordSignal, apush_route

        try:
            route = await apush_route(await self._hook().aget_conn(), self.function_name, self.qualifier)
            if route is None:
                return None
            client = await self._hook_mns().aget_conn()
        except Exception as err:  # push is an optimisation: the poll alone still ends the wait
            self.log.info("FC task %s: no push completion (%s); polling", self.async_task_id, err)
            return None
        remaining = deadline.remaining()
        return AsyncRecordSignal(
            client,
            route,
            request_id,
            function_name=self.function_name,
            timeout=remaining if math.isfinite(remaining) else None,
            claim_queue=self.destination_queue,
            hold_seconds=self.destination_hold,
        )

    def _expected(self) -> AsyncTask:
        """The task as known before any read: enough for the shared poller to place its list window."""
        from airflow_fc_async.core.models import AsyncTask

        started_ms = int(float(self.started_after or 0) * 1000)
        return AsyncTask.from_json(
            {"taskId": self.async_task_id, "status": "Enqueued", "startedTime": started_ms}
        )

    def _record_claim(self) -> RecordClaim:
        from airflow_fc_async.triggers.fc_event import RecordClaim

        async def read_task() -> AsyncTask:
            task: AsyncTask = await self._hook().aget_async_task(
                self.function_name, self.async_task_id, qualifier=self.qualifier
            )
            return task

        return RecordClaim(
            str(self.destination_queue),
            self.function_name,
            self.destination_timeout,
            self.destination_hold,
            self._hook_mns,
            read_task,
            self.log,
        )

    def _hook_mns(self) -> Any:
        hook = self.__dict__.get("_mns_hook")
        if hook is None:
            from airflow_fc_async.hooks.mns import MnsHook

            hook = self.__dict__["_mns_hook"] = MnsHook(fc_conn_id=self.fc_conn_id)
        return hook

    async def _watch(self, task: AsyncTask, policy: WaitPolicy, *, push: bool) -> TaskWatch | None:
        """Register with this loop's shared status poller (None: the task has no startedTime to list by);
        ``push``: the record ends the wait, the scan is the fallback."""
        from airflow_fc_async.core.status_poller import watch_task

        if task.started_time is None:
            return None
        client = await self._hook().aget_conn()
        return await watch_task(client, self.function_name, task, policy, qualifier=self.qualifier, push=push)

    async def _read_logs(self, cursor: LogCursor, task: AsyncTask, lines: list[str]) -> None:
        """New function log lines: logged here (counted for the event); an error is logged, never raised."""
        try:
            new = await self._hook().aread_function_logs(cursor, task)
        except FcError as err:
            self._log_errors = getattr(self, "_log_errors", 0) + 1
            if self._log_errors == 1 or self._log_errors % 10 == 0:
                self.log.warning(
                    "Reading function logs from SLS failed (%d so far; the task goes on): %s",
                    self._log_errors,
                    err,
                )
            return
        for line in new:
            self.log.info("FC task %s: %s", self.async_task_id, line)
        lines.extend(new)

    async def _drain_logs(self, cursor: LogCursor, task: AsyncTask, lines: list[str]) -> None:
        deadline = time.monotonic() + self.log_wait
        while cursor.ready and not cursor.complete(task) and time.monotonic() < deadline:
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            await self._read_logs(cursor, task, lines)

    async def on_kill(self) -> None:
        """A user killed the deferred task (Airflow 3.3+): stop the FC task when asked to."""
        if self.stop_on_kill:
            await self._stop("the deferred Airflow task was killed by a user")

    async def _stop(self, why: str) -> None:
        try:
            await self._hook().astop_async_task(
                self.function_name, self.async_task_id, qualifier=self.qualifier
            )
            self.log.info("Stopped FC task %s: %s", self.async_task_id, why)
        except Exception as err:
            self.log.warning("Could not stop FC task %s (%s): %s", self.async_task_id, why, err)

    async def cleanup(self) -> None:
        """Release the HTTP session; never stops the FC task (cleanup also runs on a triggerer restart)."""
        await self._close_hook()

    async def _close_hook(self) -> None:
        for name in ("_fc_hook", "_mns_hook"):
            hook = self.__dict__.pop(name, None)
            if hook is not None and hasattr(hook, "aclose"):
                try:
                    await hook.aclose()
                except Exception as err:  # best effort
                    self.log.debug("Closing the %s hook failed: %s", name, err)
