"""R4 and R5 against real Airflow processes (scheduler, triggerer, api-server, dag-processor; LocalExecutor).

R4: a user marks the waiting task failed, or clears it, through the REST API, in blocking and in deferrable mode:
the FC task must end Stopped, stopped by the provider (a StopAsyncTask request), not by its own 600 s timeout. The
time from the REST call to the emulator's Stopped event is printed (the issue's target: 10 s; Airflow's own share
is the worker heartbeat, ``[workers] min_heartbeat_interval`` = 5 s, and the triggerer's 1 s loop).

Found here and fixed: after a clear of a deferred task, the new try re-attached to the FC task the cleared try's
trigger was stopping (on_kill runs after the new try starts) and failed; a clear now starts a new FC task
(``clear_number`` in the task state store, tests/unit/test_operator_clear_reattach.py).

Airflow limitation, not covered by a test: a deferred task marked failed (or its run failed) before the triggerer
has started its trigger leaves the FC task running. The trigger row is deleted by ``Trigger.clean_unused`` without
ever running, so no ``on_kill`` is called anywhere; the window is the triggerer's pickup delay (about 1-2 s here,
longer when the triggerer starts cold). The tests act only after the triggerer has polled the FC task once.

R5: the triggerer is SIGKILLed while a deferred task waits and started again: the task completes, no stop request
is sent, the FC function runs exactly once.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from airflow_fc_async.core.models import TaskStatus
from tests.airflow_processes import (
    AirflowCluster,
    fc_tasks,
    running_fc_task,
    stop_requests,
    user_action_stops,
)

from .conftest import FUNCTION

STOP_TARGET_S = (
    10.0  # the figure: printed and reported, not asserted (wall clock on a shared machine)
)
RUN_SECONDS = 300


@pytest.mark.parametrize("action", ["mark_failed", "clear"])
@pytest.mark.parametrize("mode", ["blocking", "deferrable"])
def test_r4_user_action_stops_the_fc_task(
    airflow_cluster: AirflowCluster, rel_emulator: Any, mode: str, action: str
) -> None:
    elapsed = user_action_stops(
        airflow_cluster, rel_emulator, FUNCTION, f"rel_fc_{mode}", mode, action, RUN_SECONDS
    )
    verdict = "within" if elapsed <= STOP_TARGET_S else "OVER"
    print(
        f"\n[reliability] R4 {mode:10s} {action:11s}: FC task Stopped {elapsed:.2f} s after the REST call "
        f"({verdict} the {STOP_TARGET_S:g} s target)"
    )


def test_r5_triggerer_killed_and_restarted_mid_wait(
    airflow_cluster: AirflowCluster, rel_emulator: Any
) -> None:
    cluster, emu = airflow_cluster, rel_emulator
    dag_id = "rel_fc_deferrable"
    run_id = f"r5-{uuid.uuid4().hex[:8]}"
    # Long enough to outlive the restart: a new triggerer adopts the trigger once the dead one's heartbeat is
    # older than [triggerer] triggerer_health_check_threshold (30 s).
    cluster.trigger(dag_id, run_id, {"seconds": 75})
    task = running_fc_task(cluster, emu, FUNCTION, dag_id, run_id, "deferred")
    stops_before = stop_requests(emu)

    t_kill = time.monotonic()
    cluster.kill("triggerer")  # SIGKILL to its process group: the supervisor and the trigger runner
    time.sleep(2)
    assert task.status is TaskStatus.RUNNING
    cluster.start("triggerer")
    logs = cluster.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=invoke"
    cluster.wait_for(  # one trigger log per triggerer job that ran the trigger: the new one adopted it
        "the new triggerer to adopt the trigger",
        lambda: len(list(logs.glob("attempt=1.log.trigger.*"))) >= 2,
        180,
    )
    adopted = time.monotonic() - t_kill
    assert task.status is TaskStatus.RUNNING, "the FC task ended before the new triggerer adopted the trigger"
    cluster.wait_for(
        f"task instance of {run_id} success", lambda: cluster.ti_state(dag_id, run_id) == "success", 240, 1.0
    )
    print(
        f"\n[reliability] R5 triggerer SIGKILL + restart: trigger adopted by the new triggerer {adopted:.1f} s and "
        f"task instance succeeded {time.monotonic() - t_kill:.1f} s after the kill; FC task {task.status.value}"
    )
    assert task.status is TaskStatus.SUCCEEDED
    assert stop_requests(emu) == stops_before, "a StopAsyncTask request was sent across the triggerer restart"
    assert [t.task_id for t in fc_tasks(emu, FUNCTION, dag_id, run_id)] == [task.task_id], (
        "invoked more than once"
    )
    assert emu.stats()["executions"].get(task.task_id) == 1
    xcom = cluster.api(
        "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/invoke/xcomEntries/return_value"
    )
    assert "Succeeded" in str(xcom["value"]), xcom
