"""What the functions print, per request id: the logs of finished attempts (``x-fc-log-result``, the admin
API), and the lines of a function with a ``logConfig`` shipped to the SLS log sink while it runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from airflow_fc_async.emulator.config import FunctionSpec
from airflow_fc_async.emulator.runtime import AttemptResult, Runtime

__all__ = ["InvocationLogs", "LogSink"]

LogSink = Callable[[FunctionSpec, str, str, str], None]
"""``sink(spec, request_id, instance_id, line)``: one log line of a function with a ``logConfig`` (SLS rows)."""


@dataclass
class _Shipping:
    """A running attempt whose output is being shipped line by line: how much of its log file went out."""

    spec: FunctionSpec
    instance: str
    sent: int = 0


def _start_line(request_id: str) -> str:
    return f"FC Invoke Start RequestId: {request_id}"


class InvocationLogs:
    """The logs of every attempt, and the shipping of running attempts' lines to :attr:`sink`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.sink: LogSink | None = None
        self._lock = threading.RLock()
        self._done: dict[str, list[str]] = {}
        self._shipping: dict[str, _Shipping] = {}

    def logs(self, request_id: str) -> str:
        """Finished attempts' logs, then what a running attempt has printed so far."""
        with self._lock:
            done = "".join(self._done.get(request_id, ()))
        live = self.runtime.live_log(request_id)
        return done + (f"{_start_line(request_id)}\n{live}" if live else "")

    def record(self, request_id: str, text: str) -> None:
        """Keep a finished attempt's output, between its Start and End lines."""
        with self._lock:
            self._done.setdefault(request_id, []).append(
                f"{_start_line(request_id)}\n{text}FC Invoke End RequestId: {request_id}\n"
            )

    def ship_logs(self) -> None:
        """Hand the complete lines running attempts printed since the last call to the log sink (GetLogs calls
        this first, so a reader sees lines while the function runs; each line goes out once)."""
        with self._lock:
            running = list(self._shipping.items())
        for request_id, shipping in running:
            self._ship(request_id, shipping, self.runtime.live_log(request_id), final=False)

    def ship_start(self, spec: FunctionSpec, request_id: str, instance: str) -> _Shipping | None:
        """An attempt starts on ``instance``: its Start line goes out, and its lines from now on."""
        if self.sink is None or spec.log_config is None:
            return None
        shipping = _Shipping(spec, instance)
        self.sink(spec, request_id, instance, _start_line(request_id))
        with self._lock:
            self._shipping[request_id] = shipping
        return shipping

    def ship_end(self, request_id: str, shipping: _Shipping | None, result: AttemptResult) -> None:
        """The attempt ended: the rest of its output, then its End line (with the error, if it failed)."""
        if shipping is None or self.sink is None:
            return
        end = f"FC Invoke End RequestId: {request_id}"
        if not result.ok and result.kind != "killed":
            end += f", Error: {result.error.get('errorMessage') or result.kind}"
        with self._lock:
            self._shipping.pop(request_id, None)
            self._ship(request_id, shipping, result.logs, final=True)
            self.sink(shipping.spec, request_id, shipping.instance, end)

    def _ship(self, request_id: str, shipping: _Shipping, text: str, *, final: bool) -> None:
        sink = self.sink
        with self._lock:  # the offset moves and the lines go out under the lock: order kept, none twice
            new = text[shipping.sent :]
            if not final:
                new = new[: new.rfind("\n") + 1]
            shipping.sent += len(new)
            if sink is not None:
                for line in new.splitlines():
                    sink(shipping.spec, request_id, shipping.instance, line)
