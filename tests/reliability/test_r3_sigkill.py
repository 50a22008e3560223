"""R3: a worker killed with SIGKILL mid-wait; the next try re-attaches to the FC task: exactly one execution.

How (see tests/reliability/sigkill.py): the worker is a real process running the task through the task SDK
(``dag.test()``), killed with SIGKILL while the operator waits; the scheduler's part for a lost worker (the task
instance, retries=1, goes up_for_retry) is done by hand; a second process continues the same DAG run the way
``dag.test()``'s loop does. The killed-then-failed variant runs in ``make reliability``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.hooks.fc import FcHook
from tests.reliability.sigkill import (
    FUNCTION,
    deploy_held,
    fc_executions,
    kill_mid_wait,
    lost_worker_is_up_for_retry,
    next_try,
    no_stray_runs,
)

_stray = pytest.fixture(autouse=True)(no_stray_runs)


def test_a_worker_killed_mid_wait_the_next_try_reattaches_and_fc_runs_once(
    emu: Any, fc_conn: Any, airflow_db: None, tmp_path: Path
) -> None:
    dag_id = "rel_r3_sigkill"
    deploy_held(emu)
    release = tmp_path / "release"
    payload = {"release": str(release)}
    task_id, _ = kill_mid_wait(emu, dag_id, payload)
    assert FcHook().get_async_task(FUNCTION, task_id).status is TaskStatus.RUNNING  # FC goes on alone
    lost_worker_is_up_for_retry(dag_id)

    def release_once_reattached(line: str) -> None:
        if "Re-attaching to FC task" in line:
            release.touch()  # the FC task may end now: try 2 follows it

    out = next_try(dag_id, payload, release_once_reattached)
    print(f"\nR3 SIGKILL mid-wait: executions {fc_executions(emu, dag_id)}")
    assert "R3-WORKER running try 2" in out and "R3-WORKER try 2 ended: success" in out, out[-3000:]
    assert f"Re-attaching to FC task {task_id} of an earlier try (Running" in out
    assert fc_executions(emu, dag_id) == {task_id: 1}  # exactly one execution, the first try's
    assert task_id.endswith("-t1")
