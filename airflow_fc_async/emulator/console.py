"""Read-only console pages under ``/_console/``: what the "FC async task" extra link opens against the emulator.

The real FC console needs a login; these pages need none, so they only read: GET and HEAD are served, any other
method is refused (405) and nothing here touches the scheduler's state. Every value is HTML-escaped (payloads
and logs are whatever a function or a caller wrote), payloads and logs are cut to a size a browser shows at once,
and the pages carry a CSP without scripts. A foreign Host header (DNS rebinding) or an Origin header is refused
before any route, by the router's browser guard (guard.py), for these pages too.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from urllib.parse import quote, unquote

from airflow_fc_async.core.endpoints import EMULATOR_CONSOLE_PREFIX, emulator_console_task_pattern
from airflow_fc_async.emulator.scheduler import Scheduler
from airflow_fc_async.emulator.settings import Settings
from airflow_fc_async.emulator.tasks import Task
from airflow_fc_async.emulator.wire import ApiError, Request, Response

__all__ = ["MAX_SHOWN_BYTES", "Console", "is_console_path"]

MAX_SHOWN_BYTES = 16 * 1024
"""Payload, return payload and log text are cut to this many bytes on a page (the size is shown)."""
_MAX_LISTED = 100
_TASK_ROUTE = emulator_console_task_pattern()
_HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
    "pre{background:#f5f5f5;padding:8px;white-space:pre-wrap;word-break:break-all;max-width:100em}"
    ".note{color:#777}"
)


def is_console_path(path: str) -> bool:
    return path == EMULATOR_CONSOLE_PREFIX or path.startswith(EMULATOR_CONSOLE_PREFIX + "/")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _time(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + " UTC" if ms else "-"


def _cut(text: str, *, tail: bool = False) -> str:
    """``text`` escaped in a <pre>; over MAX_SHOWN_BYTES only its head (or tail), with its size."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_SHOWN_BYTES:
        return f"<pre>{_e(text)}</pre>"
    part = raw[-MAX_SHOWN_BYTES:] if tail else raw[:MAX_SHOWN_BYTES]
    which = "last" if tail else "first"
    shown = part.decode("utf-8", "ignore")
    return f"<pre>{_e(shown)}</pre><p class=note>{which} {MAX_SHOWN_BYTES} of {len(raw)} bytes shown</p>"


def _page(title: str, body: str, *, refresh: bool = False) -> Response:
    meta = '<meta http-equiv="refresh" content="2">' if refresh else ""
    doc = (
        f"<!doctype html><html><head><meta charset=utf-8>{meta}<title>{_e(title)} - fc-emulator</title>"
        f"<style>{_STYLE}</style></head><body><p class=note><a href='{EMULATOR_CONSOLE_PREFIX}/'>fc-emulator "
        f"console</a> (read-only)</p><h1>{_e(title)}</h1>{body}</body></html>"
    )
    return Response(200, doc.encode("utf-8"), dict(_HEADERS))


def _error(status: int, message: str) -> Response:
    response = _page(f"{status}", f"<p>{_e(message)}</p>")
    response.status = status
    return response


def _task_href(task: Task) -> str:
    return (
        f"{EMULATOR_CONSOLE_PREFIX}/functions/{quote(task.function, safe='')}/async-tasks/"
        f"{quote(task.task_id, safe='')}?qualifier={quote(task.qualifier, safe='')}"
    )


class Console:
    """Request -> HTML response; reads the scheduler (snapshots under its lock) and the function logs."""

    def __init__(self, settings: Settings, scheduler: Scheduler, logs: Callable[[str], str]) -> None:
        self.settings = settings
        self.scheduler = scheduler
        self.logs = logs

    def __call__(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            response = _error(405, "the console is read-only: GET only")
            response.headers["allow"] = "GET, HEAD"
            return response
        sub = request.path[len(EMULATOR_CONSOLE_PREFIX) :].strip("/")
        try:
            if sub == "":
                return self._index()
            m = _TASK_ROUTE.match(request.path)
            if m:
                return self._task(unquote(m["function"]), unquote(m["task_id"]))
            parts = sub.split("/")
            if len(parts) == 3 and parts[0] == "functions" and parts[2] == "async-tasks":
                return self._tasks(unquote(parts[1]))
        except ApiError as err:
            return _error(err.status, err.message)
        return _error(404, f"no console page {request.path}")

    def _index(self) -> Response:
        rows = "".join(
            f"<li><a href='{EMULATOR_CONSOLE_PREFIX}/functions/{quote(name, safe='')}/async-tasks'>{_e(name)}"
            "</a></li>"
            for name in self.scheduler.function_names()
        )
        return _page("Functions", f"<ul>{rows}</ul>" if rows else "<p>No function is deployed.</p>")

    def _tasks(self, function: str) -> Response:
        tasks = sorted(self.scheduler.tasks(function), key=lambda t: t.created_ms, reverse=True)
        rows = []
        for task in tasks[:_MAX_LISTED]:
            snap = self.scheduler.snapshot(task, include_payload=False)
            rows.append(
                f"<tr><td><a href='{_e(_task_href(task))}'>{_e(snap['taskId'])}</a></td>"
                f"<td>{_e(snap['status'])}</td><td>{_time(snap['startedTime'])}</td>"
                f"<td>{_time(snap['endTime'])}</td><td>{_e(snap['alreadyRetriedTimes'])}</td></tr>"
            )
        more = f"<p class=note>newest {_MAX_LISTED} of {len(tasks)}</p>" if len(tasks) > _MAX_LISTED else ""
        table = (
            "<table><tr><th>task id</th><th>status</th><th>started</th><th>ended</th><th>retries</th></tr>"
            + "".join(rows)
            + "</table>"
            if rows
            else "<p>No async task yet.</p>"
        )
        return _page(f"Async tasks of {function}", table + more)

    def _task(self, function: str, task_id: str) -> Response:
        task = self.scheduler.task(function, task_id)
        snap = self.scheduler.snapshot(task)
        fields = [
            ("function", function),
            ("qualifier", snap["qualifier"]),
            ("status", snap["status"]),
            ("request id", snap["requestId"]),
            ("started", _time(snap["startedTime"])),
            ("ended", _time(snap["endTime"])),
            ("duration", f"{snap['durationMs']} ms"),
            ("retries", snap["alreadyRetriedTimes"]),
            ("error", snap["taskErrorMessage"] or "-"),
            ("destination status", snap["destinationStatus"] or "-"),
        ]
        info = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in fields)
        events = "".join(
            f"<tr><td>{_e(ev['eventId'])}</td><td>{_time(ev['timestamp'])}</td><td>{_e(ev['status'])}</td>"
            f"<td>{_e(ev['eventDetail'])}</td></tr>"
            for ev in snap["events"]
        )
        logs = self.logs(snap["requestId"])
        body = (
            f"<table>{info}</table><h2>Events</h2><table><tr><th>#</th><th>time</th><th>status</th>"
            f"<th>detail</th></tr>{events}</table><h2>Payload</h2>{_cut(snap['taskPayload'])}"
            f"<h2>Return payload</h2>{_cut(snap['returnPayload'])}"
            f"<h2>Function log</h2>{_cut(logs, tail=True) if logs else '<p class=note>nothing printed yet</p>'}"
        )
        return _page(f"Async task {task_id}", body, refresh=not task.terminal)
