"""The "FC async tasks" plugin in a real Airflow 3.3 UI, driven in headless Chromium (``make test-browser``).

Debian's ``chromium`` and ``chromium-driver`` (no browser download), driven by selenium; the emulator in this
process, api-server, scheduler, dag-processor and triggerer as real processes on 127.0.0.1 (tests/airflow_processes.py)
with SimpleAuthManager users and a login page. A user logs in, opens the nav page, filters it, re-runs a failed
task, stops a running one, opens a deferred task instance's "FC async task" tab and stops its FC task there.
Screenshots go to tests/browser/results/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from airflow_fc_async.compat import ui_plugin_supported
from airflow_fc_async.core.models import TaskStatus
from tests.airflow_processes import AirflowCluster, deployment, fc_tasks

pytestmark = pytest.mark.skipif(not ui_plugin_supported(), reason="the UI plugin needs Airflow 3.1+")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")
USERS = {"admin": ("admin", "admin-pw"), "viewer": ("viewer", "viewer-pw")}
WAIT = 240.0  # seconds: generous, two busy cores

T = TypeVar("T")


def until(what: str, probe: Callable[[], T | None], timeout: float = WAIT, every: float = 0.5) -> T:
    end = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            value = probe()
            if value:
                return value
        except Exception as err:  # a stale element, a page still loading
            last = err
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last!r})")


@pytest.fixture(scope="module")
def browser_emulator() -> Iterator[Any]:
    from airflow_fc_async.emulator import Emulator

    with Emulator(configs=[HERE / "functions" / "s.yaml"], port=0) as emu:
        yield emu


@pytest.fixture(scope="module")
def cluster(browser_emulator: Any) -> Iterator[AirflowCluster]:
    secrets = Path(tempfile.mkdtemp(prefix="fc-ui-browser-users-"))
    (secrets / "passwords.json").write_text(json.dumps(dict(USERS.values())))
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(secrets / "passwords.json"),
        "AIRFLOW_CONN_FC_UI": browser_emulator.connection_json(),
        "AIRFLOW_CONN_FC_DEFAULT": "",  # none: what the pages show comes from fc_ui
    }
    try:
        with deployment(
            [HERE / "dags"],
            browser_emulator.connection_json(),
            PROCESSES,
            ("ui_browser_wait", "ui_browser_fail"),
            extra_env=env,
            prefix="fc-ui-browser-",
            login=USERS["admin"],
        ) as running:
            yield running
    finally:
        shutil.rmtree(secrets, ignore_errors=True)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"missing {missing}: `make test-browser` installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let selenium fetch a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    chrome.set_page_load_timeout(120)
    width, height = chrome.execute_script("return [window.innerWidth, window.innerHeight]")
    size = chrome.get_window_size()  # screenshots of a 1280x800 viewport
    chrome.set_window_size(size["width"] + 1280 - width, size["height"] + 800 - height)
    RESULTS.mkdir(exist_ok=True)
    try:
        yield chrome
    finally:
        chrome.quit()


def shot(driver: Any, name: str) -> None:
    driver.switch_to.default_content()
    driver.save_screenshot(str(RESULTS / f"{name}.png"))


def log_in(driver: Any, base: str, who: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(base + "/")
    user = until("the login form", lambda: driver.find_element(By.NAME, "username"))
    user.send_keys(USERS[who][0])
    password = driver.find_element(By.NAME, "password")
    password.send_keys(USERS[who][1])
    password.send_keys(Keys.ENTER)
    until(
        "the UI after the login", lambda: "/auth/" not in driver.current_url and driver.get_cookie("_token")
    )


def open_plugin_frame(driver: Any, url: str) -> None:
    """Open a UI page holding one of the plugin's iframes and switch into that frame."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    frame = until(
        "the plugin's iframe", lambda: driver.find_element(By.CSS_SELECTOR, "iframe[src*='/fc-async/']")
    )
    driver.switch_to.frame(frame)


def fc_task_of_run(
    cluster: AirflowCluster, emu: Any, function: str, dag_id: str, run_id: str, status: str
) -> Any:
    def probe() -> Any:
        tasks = fc_tasks(emu, function, dag_id, run_id)
        return tasks[0] if tasks and tasks[0].status.value == status else None

    return cluster.wait_for(f"the FC task of {run_id} {status}", probe, WAIT, every=0.5)


def row_of(driver: Any, task_id: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f"#t tbody tr[data-task-id='{task_id}']")


def click_in_row(driver: Any, task_id: str, label: str) -> None:
    """Click a row's button, finding the row anew if the table was redrawn between the find and the click."""
    from selenium.webdriver.common.by import By

    def probe() -> bool:
        row_of(driver, task_id).find_element(By.XPATH, f".//button[text()='{label}']").click()
        return True

    until(f"a click on {label} of {task_id}", probe, timeout=30)


def show(driver: Any, function: str, status: str = "", prefix: str = "") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    for name, value in (("conn_id", "fc_ui"), ("function", function), ("prefix", prefix)):
        box = driver.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    Select(driver.find_element(By.NAME, "status")).select_by_visible_text(status or "any")
    driver.find_element(By.ID, "go").click()
    until("the history to load", lambda: "tasks" in driver.find_element(By.ID, "msg").text)


def test_a_user_operates_fc_tasks_from_the_airflow_ui(
    cluster: AirflowCluster, browser_emulator: Any, driver: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    emu, tag = browser_emulator, uuid.uuid4().hex[:6]
    failing, stop_here, view_there = f"b-fail-{tag}", f"b-stop-{tag}", f"b-view-{tag}"
    cluster.trigger("ui_browser_fail", failing)
    cluster.trigger("ui_browser_wait", stop_here)
    cluster.trigger("ui_browser_wait", view_there)
    t0 = time.monotonic()
    log_in(driver, cluster.base, "admin")

    failed = fc_task_of_run(cluster, emu, "ui-fail", "ui_browser_fail", failing, "Failed")
    to_stop = fc_task_of_run(cluster, emu, "ui-wait", "ui_browser_wait", stop_here, "Running")
    cluster.wait_for(
        f"{failing} failed", lambda: cluster.ti_state("ui_browser_fail", failing) == "failed", WAIT
    )

    # the nav page: filtered to the failed tasks of ui-fail; the failed one links its task instance; Re-run
    open_plugin_frame(driver, cluster.base + "/plugin/fc-async-tasks")
    show(driver, "ui-fail", status="Failed")
    row = until("the failed task's row", lambda: row_of(driver, failed.task_id))
    cells = row.find_elements(By.TAG_NAME, "td")
    assert cells[1].text == "Failed"
    link = cells[6].find_element(By.TAG_NAME, "a")
    assert f"/dags/ui_browser_fail/runs/{failing}/tasks/invoke" in link.get_attribute("href")
    shown = {r.get_attribute("data-task-id") for r in driver.find_elements(By.CSS_SELECTOR, "#t tbody tr")}
    assert all(emu.scheduler.task("ui-fail", t).status is TaskStatus.FAILED for t in shown)
    shot(driver, "nav-failed-filter")
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[src*='/fc-async/']"))
    click_in_row(driver, failed.task_id, "Re-run")
    message = until(
        "the re-run message", lambda: driver.find_element(By.ID, "msg").text.startswith("Re-run started")
    )
    assert message
    new_id = driver.find_element(By.ID, "msg").text.split(": ", 1)[1]
    rerun = until("the re-run FC task", lambda: emu.scheduler.task("ui-fail", new_id))
    assert new_id != failed.task_id and rerun.payload == failed.payload

    # the nav page: the history of ui-wait (both runs' tasks running); one stopped with its Stop button
    cluster.wait_for(
        f"{view_there} deferred", lambda: cluster.ti_state("ui_browser_wait", view_there) == "deferred", WAIT
    )
    show(driver, "ui-wait")
    until("the running task's row", lambda: row_of(driver, to_stop.task_id))
    assert not row_of(driver, to_stop.task_id).find_elements(By.XPATH, ".//button[text()='Re-run']")
    shot(driver, "nav-running")
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[src*='/fc-async/']"))
    click_in_row(driver, to_stop.task_id, "Stop")
    until("the nav page's Stop to end the FC task", lambda: to_stop.status is TaskStatus.STOPPED)
    cluster.wait_for(
        f"{stop_here} to fail", lambda: cluster.ti_state("ui_browser_wait", stop_here) == "failed", WAIT
    )

    # the task instance's "FC async task" tab while it is deferred: live state, events, payload, log lines; Stop
    viewed = fc_task_of_run(cluster, emu, "ui-wait", "ui_browser_wait", view_there, "Running")
    assert cluster.ti_state("ui_browser_wait", view_there) == "deferred"
    open_plugin_frame(
        driver, f"{cluster.base}/dags/ui_browser_wait/runs/{view_there}/tasks/invoke/plugin/fc-async-task"
    )
    until("the FC task's state", lambda: "Running" in driver.find_element(By.ID, "info").text)
    info = driver.find_element(By.ID, "info").text
    assert viewed.task_id in info and "deferred" in info
    assert driver.find_element(By.ID, "conn").get_attribute("value") == "fc_ui"  # the trigger's connection
    assert json.loads(driver.find_element(By.ID, "payload").text) == {"seconds": 400}
    until("the function's log lines", lambda: "waited 2 s" in driver.find_element(By.ID, "logs").text)
    assert "Running" in driver.find_element(By.ID, "events").text
    shot(driver, "ti-view-deferred")
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[src*='/fc-async/']"))
    driver.find_element(By.ID, "stop").click()
    until("the view to show Stopped", lambda: "Stopped" in driver.find_element(By.ID, "info").text)
    assert viewed.status is TaskStatus.STOPPED
    cluster.wait_for(
        f"{view_there} to fail", lambda: cluster.ti_state("ui_browser_wait", view_there) == "failed", WAIT
    )
    shot(driver, "ti-view-stopped")

    # a viewer (DAG read, no edit) sees the same tab and page without any button
    driver.delete_all_cookies()
    log_in(driver, cluster.base, "viewer")
    open_plugin_frame(
        driver, f"{cluster.base}/dags/ui_browser_fail/runs/{failing}/tasks/invoke/plugin/fc-async-task"
    )
    until("the missing default connection", lambda: "fc_default" in driver.find_element(By.ID, "msg").text)
    conn = driver.find_element(By.ID, "conn")  # not deferred: no trigger names its connection; the user does
    conn.clear()
    conn.send_keys("fc_ui", Keys.TAB)
    until("the failed task's view", lambda: "Failed" in driver.find_element(By.ID, "info").text)
    assert driver.find_elements(By.CSS_SELECTOR, "#actions button") == []
    driver.switch_to.default_content()
    open_plugin_frame(driver, cluster.base + "/plugin/fc-async-tasks")
    show(driver, "ui-fail")
    until("the failed task's row", lambda: row_of(driver, failed.task_id))
    assert driver.find_elements(By.CSS_SELECTOR, "#t tbody button") == []
    print(f"\n[browser] scenario {time.monotonic() - t0:.1f} s after the deployment was up")
