"""The "FC async tasks" plugin app (Airflow 3.1+, mounted by the API server under ``/fc-async``).

Who may do what is Airflow's auth manager's decision, as for the DAG itself: a row or a task is shown when the
user may read the DAG whose task instance started it (found by :func:`owners_of`), Stop and Re-run need edit
permission on that DAG's task instances. An FC task no DAG started needs edit permission on the FC connection
(whoever may edit it holds its keys anyway: the admin of that account). Every endpoint needs a logged-in user
(Airflow's ``get_user``: the bearer token, or the UI's session cookie). A state-changing request carries either the
JWT in the ``Authorization`` header or, from the page (Airflow 3.3 keeps the JWT in an httponly cookie the page
cannot read), the :data:`CSRF_HEADER` header, which no cross-origin page can send without a CORS preflight the API
server does not grant; a browser's ``Sec-Fetch-Site`` must then say same-origin (CSRF).
The task-instance view (``/ti``) reads the FC task a task instance pushed (ui/task_instance.py) under that DAG's
permissions (with a connection the caller picks, only when the id is provably that task instance's, as above). The connection's secret never leaves the hook: answers carry task fields only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import (
    ConnectionDetails,
    DagAccessEntity,
    DagDetails,
)
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.models import AsyncTask
from airflow_fc_async.hooks.fc import FcHook
from airflow_fc_async.ui.owners import TaskInstanceRef, owners_of
from airflow_fc_async.ui.pages import CSRF_HEADER, CSRF_VALUE, NAV_PAGE, TI_PAGE
from airflow_fc_async.ui.task_instance import TiFcTask, fc_task_of

__all__ = ["CSRF_HEADER", "CSRF_VALUE", "MAX_PAYLOAD_CHARS", "app"]

MAX_PAYLOAD_CHARS = 16 * 1024
"""Payloads are cut to this many characters in an answer (with a flag and the full size)."""
MAX_PAGE = 100
_LOG_PAGES = 5  # GetLogs pages per view refresh

app = FastAPI(title="FC async tasks", docs_url=None, redoc_url=None, openapi_url=None)


def _can_dag(user: Any, method: str, dag_id: str) -> bool:
    entity = DagAccessEntity.TASK_INSTANCE
    return bool(
        get_auth_manager().is_authorized_dag(
            method=method,  # type: ignore[arg-type]
            access_entity=entity,
            details=DagDetails(id=dag_id),
            user=user,
        )
    )


def _is_account_admin(user: Any, conn_id: str) -> bool:
    return bool(
        get_auth_manager().is_authorized_connection(
            method="PUT", details=ConnectionDetails(conn_id=conn_id), user=user
        )
    )


def _guard(text: str | None, *, tail: bool = False) -> dict[str, Any]:
    value = text or ""
    return {
        "text": value[-MAX_PAYLOAD_CHARS:] if tail else value[:MAX_PAYLOAD_CHARS],
        "size": len(value),
        "truncated": len(value) > MAX_PAYLOAD_CHARS,
    }


def _ti_url(ref: TaskInstanceRef) -> str:
    from urllib.parse import quote

    url = f"/dags/{quote(ref.dag_id, safe='')}/runs/{quote(ref.run_id, safe='')}/tasks/{quote(ref.task_id, safe='')}"
    return url + (f"/mapped/{ref.map_index}" if ref.map_index >= 0 else "")


def _row(task: AsyncTask, owner: TaskInstanceRef | None, can_edit: bool) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "status": task.status.value,
        "started": task.started_time.isoformat() if task.started_time else None,
        "ended": task.end_time.isoformat() if task.end_time else None,
        "duration_ms": task.duration_ms,
        "retries": task.retried_times,
        "error": task.error_message or "",
        "task_instance": None
        if owner is None
        else {
            "dag_id": owner.dag_id,
            "run_id": owner.run_id,
            "task_id": owner.task_id,
            "map_index": owner.map_index,
            "url": _ti_url(owner),
        },
        "terminal": task.is_terminal,
        "can_edit": can_edit,
    }


@contextmanager
def _hook(conn_id: str) -> Iterator[FcHook]:
    """A hook for one request, closed after it."""
    hook = FcHook(fc_conn_id=conn_id)
    try:
        yield hook
    finally:
        hook.close()


def _stop(conn_id: str, function: str, task_id: str, qualifier: str) -> dict[str, Any]:
    with _hook(conn_id) as hook:
        _fc_call(hook.stop_async_task, function, task_id, qualifier=qualifier)
    return {"stopped": task_id}


def _rerun(conn_id: str, function: str, task_id: str, qualifier: str) -> dict[str, Any]:
    with _hook(conn_id) as hook:
        inv = _fc_call(hook.rerun_async_task, function, task_id, qualifier=qualifier)
    return {"task_id": inv.task_id, "request_id": inv.request_id}


def _fc_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except FcError as err:
        raise HTTPException(502, f"FC refused: {err}") from err
    except Exception as err:  # an unknown connection, a connection without a key, ...
        if type(err).__name__ == "AirflowNotFoundException":
            raise HTTPException(404, str(err)) from err
        raise


def _rights(user: Any, conn_id: str, fc_task_id: str) -> tuple[TaskInstanceRef | None, bool, bool]:
    """``(owner, can_read, can_edit)`` of one FC task for this user."""
    owner = owners_of([fc_task_id]).get(fc_task_id)
    if owner is None:
        admin = _is_account_admin(user, conn_id)
        return None, admin, admin
    return owner, _can_dag(user, "GET", owner.dag_id), _can_dag(user, "PUT", owner.dag_id)


def _serve_page(path: str, html: str, name: str) -> None:
    """Serve one of the plugin's pages (``ui/pages.py``) to any logged-in user; the page calls the API."""

    def page(user: GetUserDep) -> str:
        return html

    page.__name__ = name
    app.get(path, response_class=HTMLResponse)(page)


_serve_page("/", NAV_PAGE, "nav_page")
_serve_page("/ti", TI_PAGE, "ti_page")


@app.get("/api/tasks")
def list_tasks(
    user: GetUserDep,
    function: Annotated[str, Query(min_length=1)],
    conn_id: str = "fc_default",
    qualifier: str | None = None,
    prefix: str | None = None,
    status: str | None = None,
    started_after: datetime | None = None,
    started_before: datetime | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 25,
) -> dict[str, Any]:
    """One page of the function's history, newest first, only the rows this user may read."""
    with _hook(conn_id) as hook:
        tasks = _fc_call(
            lambda: list(
                hook.list_async_tasks(
                    function,
                    qualifier=qualifier or None,
                    prefix=prefix or None,
                    status=status or None,
                    started_after=started_after,
                    started_before=started_before,
                    limit=offset + limit + 1,
                )
            )
        )
    page, more = tasks[offset : offset + limit], len(tasks) > offset + limit
    owners = owners_of(t.task_id for t in page)
    admin: bool | None = None
    rows = []
    for task in page:
        owner = owners.get(task.task_id)
        if owner is None:
            if admin is None:
                admin = _is_account_admin(user, conn_id)
            if admin:
                rows.append(_row(task, None, True))
        elif _can_dag(user, "GET", owner.dag_id):
            rows.append(_row(task, owner, _can_dag(user, "PUT", owner.dag_id)))
    return {
        "tasks": rows,
        "offset": offset,
        "limit": limit,
        "has_more": more,
        "hidden": len(page) - len(rows),
    }


@app.get("/api/task")
def get_task(
    user: GetUserDep, function: str, task_id: str, conn_id: str = "fc_default", qualifier: str = "LATEST"
) -> dict[str, Any]:
    """One task: state, events, payloads (size-guarded); 403 unless the user may read it."""
    owner, can_read, can_edit = _rights(user, conn_id, task_id)
    if not can_read:
        raise HTTPException(403, "you may not read this FC task")
    with _hook(conn_id) as hook:
        task = _fc_call(hook.get_async_task, function, task_id, qualifier=qualifier)
    return _detail(task, owner, can_edit)


def _detail(task: AsyncTask, owner: TaskInstanceRef | None, can_edit: bool) -> dict[str, Any]:
    out = _row(task, owner, can_edit)
    out.update(
        request_id=task.request_id,
        destination_status=task.destination_status or "",
        events=[
            {"status": e.status, "detail": e.detail, "time": e.timestamp.isoformat() if e.timestamp else None}
            for e in task.events
        ],
        payload=_guard(task.payload),
        return_payload=_guard(task.return_payload),
    )
    return out


def _function_logs(hook: FcHook, task: AsyncTask, function: str, qualifier: str) -> dict[str, Any]:
    """The function's log lines of the task's request (the last MAX_PAYLOAD_CHARS), when it has a logConfig."""
    try:
        cursor = hook.function_log_cursor(function, task.request_id, qualifier=qualifier)
        if cursor is None:
            return {"configured": False, **_guard("")}
        lines = hook.read_function_logs(cursor, task, max_pages=_LOG_PAGES)
    except FcError as err:  # a logstore error is shown, never fails the view
        return {"configured": True, "error": str(err), **_guard("")}
    return {"configured": True, **_guard("\n".join(lines), tail=True)}


def _map_index(value: str) -> int:
    """The UI fills ``{MAP_INDEX}`` for a mapped task instance only; anything else is an unmapped one."""
    try:
        return int(value)
    except ValueError:
        return -1


class TiRef(BaseModel):
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1
    conn_id: str = "fc_default"


def _ti_fc_task(user: Any, ref: TiRef, method: str) -> tuple[TiFcTask, str]:
    """The task instance's FC task and its connection; 403 unless the user may ``method`` the DAG's tasks."""
    if not _can_dag(user, method, ref.dag_id):
        raise HTTPException(403, f"you may not {'change' if method == 'PUT' else 'read'} this DAG's tasks")
    found = fc_task_of(ref.dag_id, ref.run_id, ref.task_id, ref.map_index)
    if found is None:
        raise HTTPException(404, "this task instance has started no FC async task (yet)")
    if found.conn_id is not None:  # the trigger's: the DAG's own connection
        return found, found.conn_id
    # the caller's connection: as on the nav page, an id the operator did not provably generate for this very
    # task instance (a custom async_task_id, a link naming another task) is for that connection's editors only
    this = TaskInstanceRef(ref.dag_id, ref.run_id, ref.task_id, ref.map_index)
    if owners_of([found.task_id]).get(found.task_id) != this and not _is_account_admin(user, ref.conn_id):
        raise HTTPException(
            403, f"FC task {found.task_id} is not provably this task instance's: connection editors only"
        )
    return found, ref.conn_id


@app.get("/api/ti")
def get_ti_task(
    user: GetUserDep,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: str = "-1",
    conn_id: str = "fc_default",
) -> dict[str, Any]:
    """The FC task of one task instance: state, events, payloads, function log lines, destination record."""
    ref = TiRef(
        dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=_map_index(map_index), conn_id=conn_id
    )
    found, conn = _ti_fc_task(user, ref, "GET")
    with _hook(conn) as hook:
        task = _fc_call(hook.get_async_task, found.function, found.task_id, qualifier=found.qualifier)
        logs = _function_logs(hook, task, found.function, found.qualifier)
    owner = TaskInstanceRef(ref.dag_id, ref.run_id, ref.task_id, ref.map_index)
    out = _detail(task, owner, _can_dag(user, "PUT", ref.dag_id))
    record = found.destination_record
    out.update(
        function=found.function,
        qualifier=found.qualifier,
        conn_id=conn,
        ti_state=found.ti_state,
        logs=logs,
        destination_record=None if record is None else _guard(json.dumps(record, indent=1, default=str)),
    )
    return out


class TaskAction(BaseModel):
    function: str
    task_id: str
    conn_id: str = "fc_default"
    qualifier: str = "LATEST"


def _not_cross_site(request: Request, user: GetUserDep) -> None:
    """CSRF: a cookie-authenticated POST needs the page's custom header (a form cannot set one) and no
    cross-origin fetch metadata; a bearer token is not ambient, so it needs neither. After the login check
    (``user``): an unauthenticated request is a 401 first."""
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return
    if request.headers.get(CSRF_HEADER) != CSRF_VALUE:
        raise HTTPException(
            403,
            f"a state-changing request needs an Authorization: Bearer header or {CSRF_HEADER}: {CSRF_VALUE}",
        )
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, "a cross-origin state-changing request is refused")


def _editable(user: Any, body: TaskAction) -> None:
    _, _, can_edit = _rights(user, body.conn_id, body.task_id)
    if not can_edit:
        raise HTTPException(403, "you may not change this FC task")


@app.post("/api/stop", dependencies=[Depends(_not_cross_site)])
def stop_task(user: GetUserDep, body: TaskAction) -> dict[str, Any]:
    _editable(user, body)
    return _stop(body.conn_id, body.function, body.task_id, body.qualifier)


@app.post("/api/rerun", dependencies=[Depends(_not_cross_site)])
def rerun_task(user: GetUserDep, body: TaskAction) -> dict[str, Any]:
    _editable(user, body)
    return _rerun(body.conn_id, body.function, body.task_id, body.qualifier)


@app.post("/api/ti/stop", dependencies=[Depends(_not_cross_site)])
def stop_ti_task(user: GetUserDep, ref: TiRef) -> dict[str, Any]:
    found, conn = _ti_fc_task(user, ref, "PUT")
    return _stop(conn, found.function, found.task_id, found.qualifier)


@app.post("/api/ti/rerun", dependencies=[Depends(_not_cross_site)])
def rerun_ti_task(user: GetUserDep, ref: TiRef) -> dict[str, Any]:
    found, conn = _ti_fc_task(user, ref, "PUT")
    return _rerun(conn, found.function, found.task_id, found.qualifier)
