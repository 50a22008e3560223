"""R3 helpers: a worker killed with SIGKILL mid-wait. The next try re-attaches to the FC task (exactly one execution); a
first try whose FC task ended Failed is invoked anew and never reported as a success.

Faithful yet simple: the worker is a real process running the task through the task SDK (``dag.test()``), killed
with SIGKILL while the operator waits. What the scheduler does for a lost worker is then done by hand: the task
instance (retries=1) goes to ``up_for_retry``. A second process continues the same DAG run as ``dag.test()``'s
loop does (``update_state``, try number + 1, ``_run_task``). The FC side is the emulator over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import ROOT

FUNCTION = "r3-held"

HELD = """
import json, os, time

def handler(event, context):
    spec = json.loads(event or b"{}")
    print("holding until released", flush=True)
    deadline = time.time() + 170
    while not os.path.exists(spec["release"]) and time.time() < deadline:
        time.sleep(0.1)
    if spec.get("fail"):
        raise RuntimeError("failed after release")
    return json.dumps({"released": True})
"""
"""Runs until the file ``event["release"]`` exists (the emulator runs functions on this machine): the FC task
outlives the killed worker for exactly as long as the test needs, however slow the machine."""


def deploy_held(emu: Any) -> None:
    emu.deploy(
        FUNCTION,
        source=HELD,
        timeout=180,
        async_invoke_config={"asyncTask": True, "maxAsyncRetryAttempts": 0},
    )


def worker(mode: str, dag_id: str, payload: dict[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability._r3_worker", mode, dag_id, FUNCTION, json.dumps(payload)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill reaches everything it started
    )


def wait(what: str, check: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def fc_executions(emu: Any, dag_id: str) -> dict[str, int]:
    return {k: v for k, v in emu.stats()["executions"].items() if k.startswith(f"{dag_id}-invoke-")}


def kill_mid_wait(emu: Any, dag_id: str, payload: dict[str, Any]) -> tuple[str, str]:
    """Start try 1, SIGKILL its process once the FC task runs and the operator polls; return (FC task id, output)."""
    proc = worker("first", dag_id, payload)
    try:
        (task_id,) = wait("the FC task to start", lambda: list(fc_executions(emu, dag_id)), timeout=90)
        wait("the operator to poll", lambda: emu_reads(emu, task_id) >= 2)  # it is in its wait loop
        assert proc.poll() is None, "the worker ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert "Invoking FC function" in out and "R3-WORKER first try ended" not in out
    return task_id, out


def emu_reads(emu: Any, task_id: str) -> int:
    """GetAsyncTask requests the emulator served for ``task_id``."""
    return sum(n for path, n in emu.stats()["paths"].items() if path.startswith("GET ") and task_id in path)


def lost_worker_is_up_for_retry(dag_id: str) -> None:
    """What the scheduler does when a running task's worker stops heartbeating (retries left: up_for_retry)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils import timezone
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        (ti,) = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id).all()
        assert (
            ti.state == TaskInstanceState.RUNNING and ti.try_number == 1
        )  # left behind by the killed worker
        ti.state = TaskInstanceState.UP_FOR_RETRY
        ti.end_date = timezone.utcnow()  # handle_failure sets it; the retry delay counts from it


def next_try(dag_id: str, payload: dict[str, Any], on_line: Callable[[str], None] = lambda line: None) -> str:
    """Run the next try in a new worker process; ``on_line`` sees its output as it comes."""
    proc = worker("next", dag_id, payload)
    lines = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            on_line(line)
            if "R3-WORKER" in line or "FC task" in line or "Invoking" in line:  # the story, for the test log
                print("  worker:", line[line.find("]") + 1 :].strip()[:200] if "]" in line else line.strip())
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:]
    return out


def no_stray_runs(airflow_db: None) -> None:
    """Each test owns its DAG id: drop an earlier session's run of it (the DB lives for the whole session)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for dr in session.query(DagRun).filter(DagRun.dag_id.like("rel_r3_%")).all():
            session.delete(dr)
