"""Queues, instances, retries, expiry, stops and destinations: what FC does between 202 and the record.

Per function: a heap of events ordered by the time they become ready (x-fc-async-delay, retry back-off) and up
to ``max_instances * instanceConcurrency`` worker threads, started on demand, each running one attempt at a time
in its own process. All task state changes happen under one lock; attempts run outside it.
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_fc_async.core.endpoints import function_arn
from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.emulator.config import AsyncInvokeConfigSpec, FunctionSpec
from airflow_fc_async.emulator.runtime import Attempt, AttemptResult, Runtime
from airflow_fc_async.emulator.settings import Settings
from airflow_fc_async.emulator.task_index import Key, TaskIndex
from airflow_fc_async.emulator.tasks import Task, destination_record, now_ms
from airflow_fc_async.emulator.wire import ApiError

__all__ = ["Deliver", "Scheduler"]

log = logging.getLogger(__name__)

Deliver = Callable[[str, str], str | None]
"""``deliver(destination_arn, body) -> None`` on success or an error text."""

LogSink = Callable[[FunctionSpec, str, str, str], None]
"""``sink(spec, request_id, instance_id, line)``: one log line of a function with a ``logConfig`` (SLS rows)."""


@dataclass
class _Shipping:
    """A running attempt whose output is being shipped line by line: how much of its log file went out."""

    spec: FunctionSpec
    instance: str
    sent: int = 0


@dataclass
class _Function:
    spec: FunctionSpec
    arn: str
    heap: list[tuple[float, int, Task]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    workers: int = 0
    idle: int = 0
    configs: dict[str, AsyncInvokeConfigSpec] = field(default_factory=dict)
    created: str = ""
    index: TaskIndex = field(default_factory=TaskIndex)


class Scheduler:
    """The functions, their async configs and their tasks."""

    def __init__(self, settings: Settings, runtime: Runtime, deliver: Deliver) -> None:
        self.settings = settings
        self.runtime = runtime
        self.deliver = deliver
        self._lock = threading.RLock()
        self._functions: dict[str, _Function] = {}
        self._tasks: dict[tuple[str, str], Task] = {}
        self._seq = itertools.count()
        self._closed = False
        self._logs: dict[str, list[str]] = {}
        self.executions: Counter[str] = Counter()
        self.records_built = 0
        """Task records (JSON) built for GetAsyncTask/ListAsyncTasks: a list page builds its own only."""
        self.log_sink: LogSink | None = None
        self._shipping: dict[str, _Shipping] = {}

    # -- functions and configs ------------------------------------------------------------------------------
    def deploy(self, spec: FunctionSpec) -> None:
        """Add or replace a function (queued events of a replaced one run with the new code)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            fn = self._functions.get(spec.name)
            if fn is None:
                fn = _Function(spec, function_arn(self.settings.region, self.settings.account_id, spec.name))
                fn.created = stamp
                self._functions[spec.name] = fn
            fn.spec = spec
            if spec.async_config is not None:
                spec.async_config.created_time = spec.async_config.created_time or stamp
                spec.async_config.last_modified_time = stamp
                fn.configs[spec.async_qualifier] = spec.async_config

    def function(self, name: str) -> _Function:
        with self._lock:
            fn = self._functions.get(name)
        if fn is None:
            raise ApiError(404, "FunctionNotFound", f"function '{name}' does not exist")
        return fn

    def function_names(self) -> list[str]:
        with self._lock:
            return sorted(self._functions)

    def put_config(self, name: str, qualifier: str, config: AsyncInvokeConfigSpec) -> AsyncInvokeConfigSpec:
        fn = self.function(name)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            old = fn.configs.get(qualifier)
            config.created_time = old.created_time if old else stamp
            config.last_modified_time = stamp
            fn.configs[qualifier] = config
        return config

    def get_config(self, name: str, qualifier: str) -> AsyncInvokeConfigSpec:
        fn = self.function(name)
        with self._lock:
            config = fn.configs.get(qualifier)
        if config is None:
            raise ApiError(
                404, "AsyncConfigNotExists", f"async invoke config of '{name}' ({qualifier}) does not exist"
            )
        return config

    def delete_config(self, name: str, qualifier: str) -> None:
        fn = self.function(name)
        with self._lock:
            if fn.configs.pop(qualifier, None) is None:
                raise ApiError(
                    404,
                    "AsyncConfigNotExists",
                    f"async invoke config of '{name}' ({qualifier}) does not exist",
                )

    def all_configs(self) -> list[tuple[str, str, AsyncInvokeConfigSpec]]:
        with self._lock:
            return [
                (n, q, c) for n, fn in sorted(self._functions.items()) for q, c in sorted(fn.configs.items())
            ]

    def _config(self, fn: _Function, qualifier: str) -> AsyncInvokeConfigSpec:
        return fn.configs.get(qualifier) or fn.configs.get("LATEST") or AsyncInvokeConfigSpec()

    # -- invocations ----------------------------------------------------------------------------------------
    def submit(
        self,
        name: str,
        task_id: str,
        payload: bytes,
        request_id: str,
        *,
        qualifier: str = "LATEST",
        delay: float = 0,
    ) -> Task:
        fn = self.function(name)
        with self._lock:
            if (name, task_id) in self._tasks:  # 409 is documented; GUESS: the code name
                raise ApiError(
                    409, "AsyncTaskAlreadyExists", f"async task '{task_id}' of '{name}' already exists"
                )
            config = self._config(fn, qualifier)
            task = Task(
                task_id, name, fn.arn, qualifier, request_id, payload, now_ms(), visible=config.async_task
            )
            task.event(TaskStatus.ENQUEUED, "Enqueued" + (f" (delayed {delay:g}s)" if delay else ""))
            self._tasks[(name, task_id)] = task
            if task.visible:
                fn.index.add(task)
                task.on_status = fn.index.moved
        self._push(fn, task, time.monotonic() + delay)
        return task

    def _push(self, fn: _Function, task: Task, ready_at: float) -> None:
        with fn.cond:
            heapq.heappush(fn.heap, (ready_at, next(self._seq), task))
            fn.cond.notify()
            self._spawn(fn)

    def _spawn(self, fn: _Function) -> None:
        """Start a worker when events wait and none is idle (called under ``fn.cond``). A worker that takes an
        event calls it too: otherwise delayed events, all pushed while one worker idled, would run one by one."""
        cap = self.settings.max_instances * fn.spec.instance_concurrency
        if fn.heap and fn.idle == 0 and fn.workers < cap and not self._closed:
            slot = fn.workers
            fn.workers += 1
            threading.Thread(
                target=self._worker, args=(fn, slot), name=f"fc-{fn.spec.name}-{slot}", daemon=True
            ).start()

    def task(self, name: str, task_id: str) -> Task:
        self.function(name)
        with self._lock:
            task = self._tasks.get((name, task_id))
        if task is None or not task.visible:
            raise ApiError(404, "AsyncTaskNotFound", f"async task '{task_id}' of '{name}' does not exist")
        return task

    def tasks(self, name: str) -> list[Task]:
        self.function(name)
        with self._lock:
            return [t for (n, _), t in self._tasks.items() if n == name and t.visible]

    def snapshot(self, task: Task, include_payload: bool = True) -> dict[str, Any]:
        with self._lock:
            self.records_built += 1
            return task.to_json(include_payload)

    def list_page(
        self,
        name: str,
        limit: int,
        *,
        newest_first: bool,
        after: Key | None = None,
        begin: int | None = None,
        end: int | None = None,
        statuses: set[TaskStatus] | None = None,
        prefix: str = "",
        qualifier: str | None = None,
        include_payload: bool = False,
    ) -> tuple[list[dict[str, Any]], Key | None]:
        """One ListAsyncTasks page: the records of up to ``limit`` tasks in list order, and the cursor of the
        next page (None on the last). Builds only the page's records (``records_built``)."""
        fn = self.function(name)
        keep = None if qualifier is None else (lambda t: t.qualifier == qualifier)
        with self._lock:
            found = itertools.islice(
                fn.index.select(
                    newest_first=newest_first,
                    begin=begin,
                    end=end,
                    after=after,
                    statuses=statuses or (),
                    prefix=prefix,
                    keep=keep,
                ),
                limit + 1,
            )
            page = list(found)
            more = len(page) > limit
            page = page[:limit]
            self.records_built += len(page)
            records = [t.to_json(include_payload) for t in page]
        return records, ((page[-1].created_ms, page[-1].task_id) if more else None)

    def stop(self, name: str, task_id: str) -> None:
        task = self.task(name, task_id)
        with self._lock:
            if task.terminal or task.status is TaskStatus.STOPPING:  # GUESS: 400 InvalidArgument
                raise ApiError(
                    400,
                    "InvalidArgument",
                    f"async task '{task_id}' is {task.status.value} and cannot be stopped",
                )
            task.stop_requested = True
            attempt = task.attempt
            task.event(TaskStatus.STOPPING, "Stop requested")
            if attempt is None:  # queued or waiting for a retry: it never runs again
                self._finish_stopped(task)
        if attempt is not None:
            attempt.kill()

    # -- sync ----------------------------------------------------------------------------------------------
    def invoke_sync(self, name: str, payload: bytes, request_id: str) -> AttemptResult:
        fn = self.function(name)
        result = self.runtime.run(self._meta(fn, request_id, "sync", 0), payload, fn.spec.timeout)
        self._log(request_id, result.logs)
        return result

    # -- logs ----------------------------------------------------------------------------------------------
    def logs(self, request_id: str) -> str:
        """Finished attempts' logs, then what a running attempt has printed so far."""
        with self._lock:
            done = "".join(self._logs.get(request_id, ()))
        live = self.runtime.live_log(request_id)
        return done + (f"FC Invoke Start RequestId: {request_id}\n{live}" if live else "")

    def ship_logs(self) -> None:
        """Hand the complete lines running attempts printed since the last call to the log sink (GetLogs calls
        this first, so a reader sees lines while the function runs; each line goes out once)."""
        with self._lock:
            running = list(self._shipping.items())
        for request_id, shipping in running:
            self._ship(request_id, shipping, self.runtime.live_log(request_id), final=False)

    def _ship(self, request_id: str, shipping: _Shipping, text: str, *, final: bool) -> None:
        sink = self.log_sink
        with self._lock:  # the offset moves and the lines go out under the lock: order kept, none twice
            new = text[shipping.sent :]
            if not final:
                new = new[: new.rfind("\n") + 1]
            shipping.sent += len(new)
            if sink is not None:
                for line in new.splitlines():
                    sink(shipping.spec, request_id, shipping.instance, line)

    def _ship_start(self, spec: FunctionSpec, request_id: str, instance: str) -> _Shipping | None:
        if self.log_sink is None or spec.log_config is None:
            return None
        shipping = _Shipping(spec, instance)
        self.log_sink(spec, request_id, instance, f"FC Invoke Start RequestId: {request_id}")
        with self._lock:
            self._shipping[request_id] = shipping
        return shipping

    def _ship_end(self, request_id: str, shipping: _Shipping | None, result: AttemptResult) -> None:
        if shipping is None or self.log_sink is None:
            return
        end = f"FC Invoke End RequestId: {request_id}"
        if not result.ok and result.kind != "killed":
            end += f", Error: {result.error.get('errorMessage') or result.kind}"
        with self._lock:
            self._shipping.pop(request_id, None)
            self._ship(request_id, shipping, result.logs, final=True)
            self.log_sink(shipping.spec, request_id, shipping.instance, end)

    def _log(self, request_id: str, text: str) -> None:
        with self._lock:
            self._logs.setdefault(request_id, []).append(
                f"FC Invoke Start RequestId: {request_id}\n{text}FC Invoke End RequestId: {request_id}\n"
            )

    # -- workers -------------------------------------------------------------------------------------------
    def _worker(self, fn: _Function, slot: int) -> None:
        instance = f"c-{fn.spec.name}-{slot // fn.spec.instance_concurrency:03d}"
        while True:
            with fn.cond:
                fn.idle += 1
                try:
                    while True:
                        if self._closed:
                            return
                        now = time.monotonic()
                        if fn.heap and fn.heap[0][0] <= now:
                            task = heapq.heappop(fn.heap)[2]
                            break
                        fn.cond.wait(fn.heap[0][0] - now if fn.heap else None)
                finally:
                    fn.idle -= 1
                self._spawn(fn)
            try:
                self._run(fn, task, instance)
            except Exception:  # a bug here must not kill the instance
                log.exception("emulator: task %s of %s failed unexpectedly", task.task_id, fn.spec.name)

    def _meta(self, fn: _Function, request_id: str, instance: str, retry: int) -> dict[str, Any]:
        spec = fn.spec
        return {
            "function_name": spec.name,
            "handler": spec.handler,
            "runtime": spec.runtime,
            "memory_size": spec.memory_size,
            "timeout": spec.timeout,
            "code_dir": str(spec.code_dir),
            "environment": {
                **spec.environment,
                "FC_FUNCTION_NAME": spec.name,
                "FC_FUNCTION_HANDLER": spec.handler,
                "FC_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
                "FC_REGION": self.settings.region,
                "FC_ACCOUNT_ID": self.settings.account_id,
                "FC_INSTANCE_ID": instance,
                "FC_EMULATOR": "1",
            },
            "request_id": request_id,
            "region": self.settings.region,
            "account_id": self.settings.account_id,
            "instance_id": instance,
            "retry_count": retry,
        }

    def _run(self, fn: _Function, task: Task, instance: str) -> None:
        config = self._config(fn, task.qualifier)
        with self._lock:
            if task.terminal or task.stop_requested:
                return
            if now_ms() - task.created_ms > config.max_async_event_age_in_seconds * 1000:
                task.end_ms = now_ms()
                task.error_message = f"the event is older than maxAsyncEventAgeInSeconds ({config.max_async_event_age_in_seconds})"
                task.event(TaskStatus.EXPIRED, "Expired: " + task.error_message)
                # GUESS: the condition of an expired event (undocumented)
                self._destination(task, config, success=False, condition="EventExpired", response="")
                return
            task.event(TaskStatus.DEQUEUED, f"Dequeued (attempt {task.invocations + 1})")
            task.attempt = Attempt()
            task.instance_id = instance
            task.invocations += 1
            self.executions[task.task_id] += 1
            task.event(TaskStatus.RUNNING, f"Function invoked on instance {instance}")
            attempt = task.attempt
        shipping = self._ship_start(fn.spec, task.request_id, instance)
        result = self.runtime.run(
            self._meta(fn, task.request_id, instance, task.retried), task.payload, fn.spec.timeout, attempt
        )
        self._ship_end(task.request_id, shipping, result)
        self._log(task.request_id, result.logs)
        retry = False
        with self._lock:
            task.attempt = None
            task.duration_ms = result.duration_ms
            if result.kind == "killed" or task.stop_requested:
                self._finish_stopped(task)
            elif result.ok:
                task.end_ms = now_ms()
                task.return_payload = result.payload.decode("utf-8", "replace")
                task.error_message = ""
                task.event(TaskStatus.SUCCEEDED, "Function succeeded")
                self._destination(task, config, success=True, condition="", response=task.return_payload)
            else:
                task.return_payload = result.error_payload().decode("utf-8")
                message = result.error.get("errorMessage", "")
                # taskErrorMessage "UnhandledInvocationError" for a raised exception: the value of the API
                # reference's example (AsyncTask.taskErrorMessage; FC 2.0 StatefulAsyncInvocation
                # .invocationErrorMessage, https://www.alibabacloud.com/help/en/functioncompute/api-fc-open-2021-04-06-struct-statefulasyncinvocation)
                # and FC's x-fc-error-type for an unhandled error. GUESS: the timeout/crash message itself.
                task.error_message = (
                    message if result.kind in ("timeout", "crash") else "UnhandledInvocationError"
                )
                if task.retried < config.max_async_retry_attempts and not self._closed:
                    task.retried += 1
                    task.event(TaskStatus.RETRYING, f"Attempt {task.invocations} failed: {message}; retrying")
                    retry = True
                else:
                    task.end_ms = now_ms()
                    task.event(TaskStatus.FAILED, f"Attempt {task.invocations} failed: {message}")
                    body = (
                        json.dumps({"errorMessage": message}, separators=(",", ":"))
                        if result.kind == "timeout"
                        else task.return_payload
                    )
                    # condition/functionError "InvocationError": the documented sample record (a timed-out
                    # task, https://help.aliyun.com/en/functioncompute/fc/use-cases/best-practices-for-asynchronous-tasks);
                    # GUESS: the same value for a raised exception (no list of conditions is documented).
                    self._destination(task, config, success=False, condition="InvocationError", response=body)
        if retry:
            self._push(fn, task, time.monotonic() + self.settings.retry_delay)

    def _finish_stopped(self, task: Task) -> None:
        task.end_ms = now_ms()
        task.error_message = task.error_message or "the task was stopped"
        task.event(TaskStatus.STOPPED, "Stopped")
        fn = self._functions.get(task.function)
        config = self._config(fn, task.qualifier) if fn else AsyncInvokeConfigSpec()
        # GUESS: a stopped task goes to onFailure (FC 2.0 evidence) with this condition (undocumented)
        self._destination(task, config, success=False, condition="TaskStopped", response="")

    def _destination(
        self, task: Task, config: AsyncInvokeConfigSpec, *, success: bool, condition: str, response: str
    ) -> None:
        arn = config.on_success if success else config.on_failure
        if not arn:
            return
        record = destination_record(task, success=success, condition=condition, response_payload=response)
        body = json.dumps(record, separators=(",", ":"))
        if self.settings.base64_destinations:
            body = base64.b64encode(body.encode("utf-8")).decode("ascii")
        error = self.deliver(arn, body)
        task.destination_status = "Failed" if error else "Succeeded"
        detail = f"Destination {'onSuccess' if success else 'onFailure'} {arn}: " + (error or "delivered")
        status = task.status
        task.event(status, detail)  # GUESS: a second event with the task's status records the delivery

    # -- stats and shutdown ----------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        with self._lock:
            return Counter(t.status.value for t in self._tasks.values())

    def reset_stats(self) -> None:
        with self._lock:
            self.executions.clear()
            self.records_built = 0

    def shutdown(self) -> None:
        self._closed = True
        for fn in list(self._functions.values()):
            with fn.cond:
                fn.cond.notify_all()
        self.runtime.shutdown()
