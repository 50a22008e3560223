"""The "FC async tasks" plugin app inside Airflow's real API app (SimpleAuthManager), against the emulator.

Who may read, stop and re-run is the auth manager's decision: viewer (DAG read), user (DAG edit), admin, and a
viewer without rights on DAG ``ui_owned`` (tests/e2e/ui_auth.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pendulum
import pytest

from airflow_fc_async.compat import ui_plugin_supported
from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.ui.pages import CSRF_HEADER, CSRF_VALUE
from tests.e2e.conftest import run_dag, task_instance
from tests.emulator.conftest import unique, wait_for, wait_terminal

pytestmark = pytest.mark.skipif(not ui_plugin_supported(), reason="the UI plugin needs Airflow 3.1+")

ROLES = {"admin": "ADMIN", "user": "USER", "viewer": "VIEWER", "stranger": "VIEWER"}


@pytest.fixture(scope="module")
def client(airflow_db: None) -> Iterator[Any]:
    from airflow.configuration import conf
    from fastapi.testclient import TestClient

    conf.set("core", "auth_manager", "tests.e2e.ui_auth.DagScopedAuthManager")
    conf.set("core", "simple_auth_manager_users", ",".join(f"{u}:{r.lower()}" for u, r in ROLES.items()))
    from airflow.api_fastapi.app import create_app, purge_cached_app

    purge_cached_app()
    with TestClient(create_app("core")) as test_client:
        yield test_client


def token(who: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    assert type(get_auth_manager()).__name__ == "DagScopedAuthManager"
    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=who, role=ROLES[who]))


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(who)}"}


def page_post(client: Any, path: str, body: Any, who: str, csrf: bool = True, **headers: str) -> Any:
    """A POST as the plugin's page sends it: the UI's session cookie (the JWT), and its CSRF header."""
    client.cookies.set("_token", token(who))
    try:
        return client.post(path, json=body, headers=headers | ({CSRF_HEADER: CSRF_VALUE} if csrf else {}))
    finally:
        client.cookies.clear()


@pytest.fixture
def owned(fc_conn: Any) -> str:
    """The FC task id of a finished task instance of DAG ``ui_owned`` (the operator's own deterministic id)."""
    with_dag = pytest.importorskip("airflow.providers.common.compat.sdk").DAG
    with with_dag("ui_owned", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        FcInvokeAsyncOperator(task_id="invoke", function_name="echo", payload={"n": 1}, poll_interval=1)
    dr = run_dag(dag)
    assert dr.state == "success"
    return task_instance(dr, "invoke").xcom_pull(task_ids="invoke")["task_id"]


def test_every_endpoint_refuses_an_unauthenticated_request(client: Any) -> None:
    for method, path in [
        ("GET", "/fc-async/"),
        ("GET", "/fc-async/api/tasks?function=echo"),
        ("GET", "/fc-async/api/task?function=echo&task_id=x"),
        ("POST", "/fc-async/api/stop"),
        ("POST", "/fc-async/api/rerun"),
    ]:
        reply = client.request(method, path, json={"function": "echo", "task_id": "x"})
        assert reply.status_code == 401, (method, path, reply.text)
    bad = client.get("/fc-async/api/tasks?function=echo", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code in (401, 403)


def test_the_nav_page_is_offered_and_served(client: Any) -> None:
    plugins = client.get("/api/v2/plugins", headers=auth("admin")).json()["plugins"]
    ours = next(p for p in plugins if p["name"] == "fc_async_tasks")
    assert (
        ours["external_views"][0]["href"] == "/fc-async/"
        and ours["external_views"][0]["destination"] == "nav"
    )
    page = client.get("/fc-async/", headers=auth("viewer"))
    assert page.status_code == 200 and "FC async tasks" in page.text and "innerHTML" not in page.text


def test_rows_follow_dag_permissions_and_link_the_task_instance(
    client: Any, owned: str, fc_conn: Any
) -> None:
    fc = FcClient(fc_conn.endpoint, fc_conn.credentials)
    foreign = unique("foreign")
    fc.invoke_async("echo", {"f": 1}, task_id=foreign)
    wait_terminal(fc, "echo", foreign)
    for who, sees_foreign, can_edit in [
        ("viewer", False, False),
        ("user", False, True),
        ("admin", True, True),
    ]:
        page = client.get("/fc-async/api/tasks?function=echo&limit=100", headers=auth(who)).json()
        rows = {r["task_id"]: r for r in page["tasks"]}
        assert rows[owned]["task_instance"]["dag_id"] == "ui_owned", who
        assert rows[owned]["task_instance"]["url"].startswith("/dags/ui_owned/runs/")
        assert rows[owned]["can_edit"] is can_edit, who
        assert (foreign in rows) is sees_foreign, who
        assert rows[owned]["status"] == "Succeeded" and rows[owned]["duration_ms"] is not None
    # a look-alike id (our shape, a hash that is not this task instance's) is not ours: admin only
    assert (
        client.get(f"/fc-async/api/task?function=echo&task_id={foreign}", headers=auth("user")).status_code
        == 403
    )
    detail = client.get(f"/fc-async/api/task?function=echo&task_id={owned}", headers=auth("viewer")).json()
    assert detail["payload"]["text"] == '{"n":1}' and detail["events"] and detail["terminal"] is True
    assert fc_conn.settings.access_key_secret not in str(detail)
    fc.close()


def test_filters_by_prefix_and_status(client: Any, fc_conn: Any) -> None:
    fc = FcClient(fc_conn.endpoint, fc_conn.credentials)
    base = unique("flt")
    fc.invoke_async("echo", {}, task_id=base + "-ok")
    fc.invoke_async("failer", {}, task_id=base + "-bad")
    wait_terminal(fc, "echo", base + "-ok")
    wait_terminal(fc, "failer", base + "-bad", timeout=60)
    ok = client.get(f"/fc-async/api/tasks?function=echo&prefix={base}", headers=auth("admin")).json()
    assert [r["task_id"] for r in ok["tasks"]] == [base + "-ok"]
    failed = client.get(
        f"/fc-async/api/tasks?function=failer&prefix={base}&status=Failed", headers=auth("admin")
    ).json()
    assert [r["task_id"] for r in failed["tasks"]] == [base + "-bad"]
    none = client.get(
        f"/fc-async/api/tasks?function=failer&prefix={base}&status=Succeeded", headers=auth("admin")
    ).json()
    assert none["tasks"] == []
    later = pendulum.now("UTC").add(hours=1).isoformat()
    after = client.get(
        "/fc-async/api/tasks",
        params={"function": "echo", "prefix": base, "started_after": later},
        headers=auth("admin"),
    ).json()
    assert after["tasks"] == []
    page1 = client.get("/fc-async/api/tasks?function=echo&limit=1", headers=auth("admin")).json()
    assert len(page1["tasks"]) <= 1 and page1["has_more"] is True
    fc.close()


def test_stop_and_rerun_need_edit_rights_and_a_bearer_header(client: Any, owned: str, fc_conn: Any) -> None:
    fc = FcClient(fc_conn.endpoint, fc_conn.credentials)
    running = unique("ui-stop")
    fc.invoke_async("sleeper", {"seconds": 60}, task_id=running)
    try:
        wait_for(lambda: fc.get_async_task("sleeper", running).status is TaskStatus.RUNNING, 60)
        body = {"function": "sleeper", "task_id": running}
        # the UI's session cookie alone (what a cross-site form would carry) is refused: CSRF
        assert page_post(client, "/fc-async/api/stop", body, "admin", csrf=False).status_code == 403
        cross = page_post(client, "/fc-async/api/stop", body, "admin", **{"Sec-Fetch-Site": "same-site"})
        assert cross.status_code == 403
        assert client.post("/fc-async/api/stop", json=body, headers=auth("user")).status_code == 403
        assert page_post(client, "/fc-async/api/stop", body, "user").status_code == 403
        assert not fc.get_async_task("sleeper", running).is_terminal
        # the page's own request: the cookie, its CSRF header, same-origin fetch metadata
        stopped = page_post(client, "/fc-async/api/stop", body, "admin", **{"Sec-Fetch-Site": "same-origin"})
        assert stopped.status_code == 200, stopped.text
        assert wait_terminal(fc, "sleeper", running, timeout=60).status is TaskStatus.STOPPED
    finally:
        if not fc.get_async_task("sleeper", running).is_terminal:
            fc.stop_async_task("sleeper", running)
    rerun = {"function": "echo", "task_id": owned}
    assert client.post("/fc-async/api/rerun", json=rerun, headers=auth("viewer")).status_code == 403
    reply = client.post("/fc-async/api/rerun", json=rerun, headers=auth("user"))
    assert reply.status_code == 200, reply.text
    new_id = reply.json()["task_id"]
    assert new_id != owned and wait_terminal(fc, "echo", new_id).payload == '{"n":1}'
    fc.close()


# -- the task-instance view ----------------------------------------------------------------------------------
def ti_query(dag_id: str, run_id: str, task_id: str, map_index: str = "{MAP_INDEX}") -> dict[str, str]:
    """The view's query as the UI sends it: ``{MAP_INDEX}`` is left unfilled for an unmapped task instance."""
    return {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}


def test_the_task_instance_view_is_offered_with_the_ui_placeholders(client: Any) -> None:
    plugins = client.get("/api/v2/plugins", headers=auth("admin")).json()["plugins"]
    view = next(v for v in next(p for p in plugins if p["name"] == "fc_async_tasks")["external_views"] if
                v["destination"] == "task_instance")  # fmt: skip
    assert view["href"].startswith("/fc-async/ti?")
    assert all(f"{{{k}}}" in view["href"] for k in ("DAG_ID", "RUN_ID", "TASK_ID", "MAP_INDEX"))
    page = client.get("/fc-async/ti?dag_id=d&run_id=r&task_id=t", headers=auth("viewer"))
    assert page.status_code == 200 and "api/ti?" in page.text and "innerHTML" not in page.text
    assert client.get("/fc-async/ti").status_code == 401
    assert client.get("/fc-async/api/ti", params=ti_query("d", "r", "t")).status_code == 401
    for path in ("/fc-async/api/ti/stop", "/fc-async/api/ti/rerun"):
        assert client.post(path, json={"dag_id": "d", "run_id": "r", "task_id": "t"}).status_code == 401


def test_the_view_shows_a_finished_task_its_logs_and_its_destination_record(
    client: Any, fc_conn: Any
) -> None:
    from airflow.providers.common.compat.sdk import DAG

    with DAG("ui_ti_done", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        FcInvokeAsyncOperator(
            task_id="logs", function_name="log-lines", payload={"count": 3, "seconds": 0.3}, poll_interval=1
        )
        FcInvokeAsyncOperator(
            task_id="dest", function_name="echo", payload={"d": 1}, destination_queue="fc-test-echo",
            poll_interval=1,
        )  # fmt: skip
        FcInvokeAsyncOperator(
            task_id="big", function_name="echo", payload={"x": "a" * 20000}, poll_interval=1
        )
    dr = run_dag(dag)
    assert dr.state == "success"
    logs_result = task_instance(dr, "logs").xcom_pull(task_ids="logs")
    got = client.get(
        "/fc-async/api/ti", params=ti_query("ui_ti_done", dr.run_id, "logs"), headers=auth("viewer")
    )
    assert got.status_code == 200, got.text
    view = got.json()
    assert view["task_id"] == logs_result["task_id"] and view["function"] == "log-lines"
    assert view["status"] == "Succeeded" and view["terminal"] is True and view["ti_state"] == "success"
    assert view["payload"]["text"] == '{"count":3,"seconds":0.3}' and not view["payload"]["truncated"]
    assert [e["status"] for e in view["events"]][-1] == "Succeeded"
    assert view["logs"]["configured"] is True
    assert [f"log line {i:03d} of 3" in view["logs"]["text"] for i in (1, 2, 3)] == [True] * 3
    assert view["destination_record"] is None  # no destination queue on this task
    assert view["can_edit"] is False and view["task_instance"]["dag_id"] == "ui_ti_done"
    assert fc_conn.settings.access_key_secret not in got.text
    assert (
        client.get(
            "/fc-async/api/ti", params=ti_query("ui_ti_done", dr.run_id, "logs"), headers=auth("user")
        ).json()["can_edit"]
        is True
    )

    dest = client.get(
        "/fc-async/api/ti", params=ti_query("ui_ti_done", dr.run_id, "dest"), headers=auth("viewer")
    )
    dest_view = dest.json()
    assert dest_view["logs"]["configured"] is False  # echo has no logConfig
    assert dest_view["destination_record"] is not None, dest.text
    assert dest_view["request_id"] in dest_view["destination_record"]["text"]

    from airflow_fc_async.ui.api import MAX_PAYLOAD_CHARS

    big = client.get(
        "/fc-async/api/ti", params=ti_query("ui_ti_done", dr.run_id, "big"), headers=auth("viewer")
    ).json()
    for key in ("payload", "return_payload"):  # echo returns its event: both over the guard
        assert big[key]["truncated"] is True and big[key]["size"] == len('{"x":""}') + 20000, key
        assert len(big[key]["text"]) == MAX_PAYLOAD_CHARS and big[key]["text"].startswith('{"x":"aaa')

    missing = client.get(
        "/fc-async/api/ti", params=ti_query("ui_ti_done", dr.run_id, "nope"), headers=auth("admin")
    )
    assert missing.status_code == 404


def test_a_user_without_rights_on_the_dag_reads_nothing(client: Any, owned: str) -> None:
    from airflow.models.dagrun import DagRun

    run_id = DagRun.find(dag_id="ui_owned")[-1].run_id
    query = ti_query("ui_owned", run_id, "invoke")
    assert client.get("/fc-async/api/ti", params=query, headers=auth("viewer")).status_code == 200
    assert client.get("/fc-async/api/ti", params=query, headers=auth("stranger")).status_code == 403
    refused = client.post("/fc-async/api/ti/rerun", json=query | {"map_index": -1}, headers=auth("stranger"))
    assert refused.status_code == 403
    page = client.get("/fc-async/api/tasks?function=echo&limit=100", headers=auth("stranger")).json()
    assert owned not in {r["task_id"] for r in page["tasks"]} and page["hidden"] >= 1
    assert (
        client.get(f"/fc-async/api/task?function=echo&task_id={owned}", headers=auth("stranger")).status_code
        == 403
    )


def test_a_custom_task_id_on_a_chosen_connection_is_for_connection_editors(client: Any, fc_conn: Any) -> None:
    """The id came from the DAG (async_task_id), the connection from the caller: the nav page's rule applies."""
    from airflow.providers.common.compat.sdk import DAG

    custom = unique("ui-custom")
    with DAG("ui_ti_custom", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        FcInvokeAsyncOperator(task_id="invoke", function_name="echo", async_task_id=custom, poll_interval=1)
    dr = run_dag(dag)
    assert dr.state == "success"
    query = ti_query("ui_ti_custom", dr.run_id, "invoke")
    for who, status in [("viewer", 403), ("user", 403), ("admin", 200)]:
        got = client.get("/fc-async/api/ti", params=query, headers=auth(who))
        assert got.status_code == status, (who, got.text)
    assert client.get("/fc-async/api/ti", params=query, headers=auth("admin")).json()["task_id"] == custom
    refused = client.post("/fc-async/api/ti/rerun", json=query | {"map_index": -1}, headers=auth("user"))
    assert refused.status_code == 403


def test_the_view_follows_a_running_task_and_stops_and_reruns_it(client: Any, fc_conn: Any) -> None:
    """``dag.test()`` runs in this thread (it sets signal handlers); a second thread acts as the user."""
    import threading

    from airflow.models.dagrun import DagRun
    from airflow.providers.common.compat.sdk import DAG

    with DAG("ui_ti_running", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")) as dag:
        FcInvokeAsyncOperator(
            task_id="invoke", function_name="sleeper", payload={"seconds": 60}, poll_interval=1
        )
    fc = FcClient(fc_conn.endpoint, fc_conn.credentials)
    seen: dict[str, Any] = {}

    def user_acts() -> None:
        try:
            run_id = wait_for(
                lambda: next((r.run_id for r in DagRun.find(dag_id="ui_ti_running")), None), 180
            )
            query = seen["query"] = ti_query("ui_ti_running", run_id, "invoke")

            def running() -> Any:
                got = client.get("/fc-async/api/ti", params=query, headers=auth("viewer"))
                return got.json() if got.status_code == 200 and got.json()["status"] == "Running" else None

            seen["live"] = wait_for(running, 180, interval=0.5)
            body = query | {"map_index": -1}
            seen["cookie_only"] = page_post(
                client, "/fc-async/api/ti/stop", body, "admin", csrf=False
            ).status_code
            seen["viewer"] = client.post(
                "/fc-async/api/ti/stop", json=body, headers=auth("viewer")
            ).status_code
            seen["still_running"] = not fc.get_async_task("sleeper", seen["live"]["task_id"]).is_terminal
            seen["user"] = client.post("/fc-async/api/ti/stop", json=body, headers=auth("user")).json()
        except BaseException as err:  # the task still ends: stopped below, or by its 60 s
            seen["error"] = err
            for task in fc_conn.scheduler.tasks("sleeper"):
                if not task.terminal:
                    fc.stop_async_task("sleeper", task.task_id)

    actor = threading.Thread(target=user_acts, daemon=True)
    actor.start()
    dr = run_dag(dag)
    actor.join(60)
    new_id = None
    try:
        assert "error" not in seen, seen.get("error")
        live = seen["live"]
        assert (
            live["terminal"] is False
            and live["return_payload"]["text"] == ""
            and live["ti_state"] == "running"
        )
        assert seen["cookie_only"] == 403 and seen["viewer"] == 403 and seen["still_running"] is True
        assert seen["user"] == {"stopped": live["task_id"]}
        assert wait_terminal(fc, "sleeper", live["task_id"], timeout=60).status is TaskStatus.STOPPED
        assert dr.state == "failed"
        after = client.get("/fc-async/api/ti", params=seen["query"], headers=auth("viewer")).json()
        assert after["status"] == "Stopped" and after["terminal"] is True and after["ti_state"] == "failed"
        rerun = client.post(
            "/fc-async/api/ti/rerun", json=seen["query"] | {"map_index": -1}, headers=auth("user")
        )
        assert rerun.status_code == 200, rerun.text
        new_id = rerun.json()["task_id"]
        assert new_id != live["task_id"]
        assert fc.get_async_task("sleeper", new_id).payload == '{"seconds":60}'
    finally:
        if new_id:
            fc.stop_async_task("sleeper", new_id)
        fc.close()
