"""Runs one attempt of a function in its own process and reports how it ended.

A forkserver context with the runner preloaded makes an attempt cost a fork (a few ms) instead of an interpreter
start, and keeps the server's threads out of the child. A crash, a kill or a timeout of the child never reaches
the server: the parent only waits on a pipe and the process sentinel.
"""

from __future__ import annotations

import contextlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import context as _mp_context
from multiprocessing import forkserver, popen_forkserver, reduction, spawn, util
from typing import Any

from airflow_fc_async.emulator import _runner

__all__ = ["SLEEP_RUNTIME", "Attempt", "AttemptResult", "Runtime", "timeout_message"]

_RUNNER = "airflow_fc_async.emulator._runner"

SLEEP_RUNTIME = "emulator-sleep"
"""A built-in runtime for load tests (not an FC runtime): an attempt waits ``{"sleep": seconds}`` of its event and
returns the event, without a process or any CPU, so a benchmark can keep 1000 tasks running on 2 cores. It honours
the function's timeout and StopAsyncTask like a process; its handler and code are ignored."""


class _Popen(popen_forkserver.Popen):
    """popen_forkserver.Popen without re-importing ``__main__`` in the child.

    The stock one makes every child import the parent's main script (pytest's, the CLI's, a user's unguarded
    script): slow, and wrong for an attempt that only needs the runner. Same steps as the stdlib's ``_launch``
    otherwise (CPython 3.11-3.13).
    """

    def _launch(self, process_obj: Any) -> None:
        prep_data = spawn.get_preparation_data(process_obj._name)
        prep_data.pop("init_main_from_path", None)
        prep_data.pop("init_main_from_name", None)
        buf = io.BytesIO()
        _mp_context.set_spawning_popen(self)
        try:
            reduction.dump(prep_data, buf)
            reduction.dump(process_obj, buf)
        finally:
            _mp_context.set_spawning_popen(None)
        self.sentinel, w = forkserver.connect_to_new_process(self._fds)  # type: ignore[attr-defined]
        _parent_w = os.dup(w)
        self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))  # type: ignore[attr-defined]
        with open(w, "wb", closefd=True) as f:
            f.write(buf.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)


class _Process(multiprocessing.context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _Popen(process_obj)


def timeout_message(timeout: float, peak_mb: float) -> str:
    """FC's wording for a timed-out invocation."""
    return f"Function timed out after {timeout:g} seconds (maxMemoryUsage: {peak_mb:.0f}MB)"


@dataclass
class AttemptResult:
    """How one attempt ended: ``kind`` is success, error (the handler raised), timeout, killed or crash."""

    kind: str
    payload: bytes = b""
    error: dict[str, Any] = field(default_factory=dict)
    duration_ms: int = 0
    peak_mb: float = 0.0
    logs: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "success"

    def error_payload(self) -> bytes:
        """The body FC shows for a failed attempt (returnPayload, destination responsePayload)."""
        import json

        return json.dumps(self.error, separators=(",", ":")).encode("utf-8") if self.error else b""


class Attempt:
    """A running attempt that can be killed from another thread (StopAsyncTask, shutdown)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: Any = None
        self._stopped = threading.Event()
        self.killed = False

    def _attach(self, proc: Any) -> bool:
        with self._lock:
            self._proc = proc
            return not self.killed

    def kill(self) -> None:
        with self._lock:
            self.killed = True
            proc = self._proc
        self._stopped.set()
        if proc is not None and proc.is_alive():
            proc.kill()


def _peak_rss_mb(pid: int | None) -> float:
    """VmHWM of a live process (read before a kill); 0 when unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


class Runtime:
    """Starts attempts; ``shutdown()`` kills every one still running."""

    def __init__(self) -> None:
        self._forkserver = "forkserver" in multiprocessing.get_all_start_methods()
        self._ctx: Any = multiprocessing.get_context("forkserver" if self._forkserver else "spawn")
        if self._forkserver:
            self._ctx.set_forkserver_preload([_RUNNER])
        self._running: set[Attempt] = set()
        self._live: dict[str, str] = {}
        self._lock = threading.Lock()
        self._closed = False

    def run(
        self, meta: dict[str, Any], event: bytes, timeout: float, attempt: Attempt | None = None
    ) -> AttemptResult:
        """Run ``meta['handler']`` on ``event`` in a fresh process; block until it ends, times out or is killed."""
        attempt = attempt or Attempt()
        if meta.get("runtime") == SLEEP_RUNTIME:
            return self._sleep(event, timeout, attempt)
        fd, log_path = tempfile.mkstemp(prefix="fc-emu-", suffix=".log")
        os.close(fd)
        reader, writer = self._ctx.Pipe(duplex=False)
        process_class = _Process if self._forkserver else self._ctx.Process
        proc = process_class(target=_runner.run_attempt, args=(meta, event, log_path, writer), daemon=True)
        with self._lock:
            if self._closed:
                attempt.killed = True
            self._running.add(attempt)
            self._live[meta["request_id"]] = log_path
        started = time.monotonic()
        try:
            if attempt.killed:
                return AttemptResult(kind="killed")
            proc.start()
            writer.close()
            if not attempt._attach(proc):
                proc.kill()
            outcome = None
            ready = multiprocessing.connection.wait([reader, proc.sentinel], timeout=timeout)
            if reader in ready:
                try:
                    outcome = reader.recv()
                except (EOFError, OSError):
                    outcome = None
            duration_ms = int((time.monotonic() - started) * 1000)
            if outcome is None:
                peak = _peak_rss_mb(proc.pid)
                timed_out = not ready and not attempt.killed
                proc.kill()
                proc.join(5)
                if attempt.killed:
                    return AttemptResult(kind="killed", duration_ms=duration_ms, logs=_read(log_path))
                if timed_out:
                    msg = timeout_message(timeout, peak or 8.0)
                    return AttemptResult(
                        kind="timeout",
                        error={"errorMessage": msg},
                        duration_ms=duration_ms,
                        peak_mb=peak,
                        logs=_read(log_path),
                    )
                msg = f"Process exited unexpectedly before completing request (exit code {proc.exitcode})"
                return AttemptResult(
                    kind="crash",
                    error={"errorMessage": msg, "errorType": "ProcessExited"},
                    duration_ms=duration_ms,
                    logs=_read(log_path),
                )
            proc.join(5)
            kind, value, peak = outcome
            logs = _read(log_path)
            if kind == "ok":
                return AttemptResult(
                    kind="success", payload=value, duration_ms=duration_ms, peak_mb=peak, logs=logs
                )
            return AttemptResult(kind="error", error=value, duration_ms=duration_ms, peak_mb=peak, logs=logs)
        finally:
            reader.close()
            with self._lock:
                self._running.discard(attempt)
                if self._live.get(meta["request_id"]) == log_path:
                    del self._live[meta["request_id"]]
            with contextlib.suppress(OSError):
                os.unlink(log_path)

    def _sleep(self, event: bytes, timeout: float, attempt: Attempt) -> AttemptResult:
        """The ``emulator-sleep`` runtime: wait the event's ``sleep`` seconds (a timeout or a kill ends it)."""
        try:
            seconds = float(json.loads(event or b"{}").get("sleep", 0))
        except (ValueError, TypeError, AttributeError):
            seconds = 0.0
        with self._lock:
            if self._closed:
                attempt.killed = True
            self._running.add(attempt)
        started = time.monotonic()
        try:
            killed = attempt.killed or attempt._stopped.wait(min(seconds, timeout))
            duration_ms = int((time.monotonic() - started) * 1000)
            if killed:
                return AttemptResult(kind="killed", duration_ms=duration_ms)
            if seconds > timeout:
                msg = timeout_message(timeout, 0.0)
                return AttemptResult(kind="timeout", error={"errorMessage": msg}, duration_ms=duration_ms)
            return AttemptResult(kind="success", payload=event, duration_ms=duration_ms)
        finally:
            with self._lock:
                self._running.discard(attempt)

    def live_log(self, request_id: str) -> str:
        """What a running attempt of ``request_id`` printed so far ('' when none runs)."""
        with self._lock:
            path = self._live.get(request_id)
        return _read(path) if path else ""

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            running = list(self._running)
        for attempt in running:
            attempt.kill()


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""
