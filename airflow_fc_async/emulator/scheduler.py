"""Queues and instances: what FC does with an async invocation between the 202 and its first attempt, and
between a failed attempt and its retry; the functions, their async invoke configs and their tasks.

Per function: a heap of events ordered by the time they become ready (x-fc-async-delay, retry back-off) and up
to ``max_instances * instanceConcurrency`` worker threads (instances), started on demand, each running one
attempt at a time in its own process. An attempt and its outcome (expiry, success, retry, failure, stop, the
destination record) are the :class:`~.invocations.Invoker`'s; the functions' output is
:class:`~.invocation_logs.InvocationLogs`'. All task state changes happen under one lock; attempts run
outside it.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from airflow_fc_async.core.endpoints import function_arn
from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.emulator.config import AsyncInvokeConfigSpec, FunctionSpec
from airflow_fc_async.emulator.invocation_logs import InvocationLogs, LogSink
from airflow_fc_async.emulator.invocations import Deliver, Invoker
from airflow_fc_async.emulator.runtime import AttemptResult, Runtime
from airflow_fc_async.emulator.settings import Settings
from airflow_fc_async.emulator.task_index import Key, TaskIndex
from airflow_fc_async.emulator.tasks import Task
from airflow_fc_async.emulator.wire import ApiError, now_ms

__all__ = ["Deliver", "LogSink", "Scheduler"]

log = logging.getLogger(__name__)


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
        self._lock = threading.RLock()
        self._functions: dict[str, _Function] = {}
        self._tasks: dict[tuple[str, str], Task] = {}
        self._seq = itertools.count()
        self._closed = False
        self.records_built = 0
        """Task records (JSON) built for GetAsyncTask/ListAsyncTasks: a list page builds its own only."""
        self.function_logs = InvocationLogs(runtime)
        """The functions' output; its ``sink`` (set by the app) receives the lines of a ``logConfig``."""
        self.invoker = Invoker(
            settings,
            runtime,
            deliver,
            lock=self._lock,
            logs=self.function_logs,
            config_of=self._config_of,
            closed=lambda: self._closed,
        )

    @property
    def executions(self) -> Counter[str]:
        """Attempts started per task id."""
        return self.invoker.executions

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
                self.invoker.stopped(task)
        if attempt is not None:
            attempt.kill()

    # -- sync and logs --------------------------------------------------------------------------------------
    def invoke_sync(self, name: str, payload: bytes, request_id: str) -> AttemptResult:
        return self.invoker.invoke_sync(self.function(name).spec, payload, request_id)

    def logs(self, request_id: str) -> str:
        """Finished attempts' logs, then what a running attempt has printed so far."""
        return self.function_logs.logs(request_id)

    # -- instances -----------------------------------------------------------------------------------------
    def _worker(self, fn: _Function, slot: int) -> None:
        """One instance slot: takes the next ready event of its function and runs it, until shutdown."""
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
                if self.invoker.run(fn.spec, task, instance):
                    self._push(fn, task, time.monotonic() + self.settings.retry_delay)
            except Exception:  # a bug here must not kill the instance
                log.exception("emulator: task %s of %s failed unexpectedly", task.task_id, fn.spec.name)

    def _config_of(self, task: Task) -> AsyncInvokeConfigSpec:
        fn = self._functions.get(task.function)
        return self._config(fn, task.qualifier) if fn else AsyncInvokeConfigSpec()

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
