"""R3 (long): a worker killed with SIGKILL mid-wait while its FC task goes on to fail: the next try invokes anew
(its own task id) and is never reported as a success. Mechanics: tests/reliability/sigkill.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.hooks.fc import FcHook
from tests.e2e.conftest import airflow_db, fc_conn  # noqa: F401  (fixtures)
from tests.reliability.sigkill import (
    FUNCTION,
    deploy_held,
    fc_executions,
    kill_mid_wait,
    lost_worker_is_up_for_retry,
    next_try,
    no_stray_runs,
    wait,
)

_stray = pytest.fixture(autouse=True)(no_stray_runs)


@pytest.mark.usefixtures("fc_conn", "airflow_db")
def test_a_killed_try_whose_fc_task_failed_is_invoked_anew_never_a_success(emu: Any, tmp_path: Path) -> None:
    dag_id = "rel_r3_sigkill_failed"
    deploy_held(emu)
    release = tmp_path / "release"
    payload = {"release": str(release), "fail": True}
    task_id, _ = kill_mid_wait(emu, dag_id, payload)
    release.touch()  # the orphaned FC task now fails
    wait(
        "the FC task to fail", lambda: FcHook().get_async_task(FUNCTION, task_id).status is TaskStatus.FAILED
    )
    lost_worker_is_up_for_retry(dag_id)
    out = next_try(dag_id, payload)  # try 2's own task is released at once: it fails too
    runs = fc_executions(emu, dag_id)
    print(f"\nR3 SIGKILL, then FC failed: executions {runs}")
    assert "R3-WORKER try 2 ended: failed" in out, out[-3000:]
    assert f"FC task {task_id} of an earlier try ended Failed" in out  # seen, not reused
    assert sorted(k.rsplit("-", 1)[1] for k in runs) == ["t1", "t2"]  # a second invocation, try 2's id
    assert set(runs.values()) == {1}
