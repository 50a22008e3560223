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
from airflow_fc_async.core.task_ids import task_id_prefix

from .conftest import FUNCTION, AirflowCluster

STOP_TARGET_S = (
    10.0  # the figure: printed and reported, not asserted (wall clock on a shared machine)
)
STOP_WAIT_S = (
    60.0  # far below the function's own 300 s run: Stopped within it can only come from a stop request
)
RUN_SECONDS = 300


def fc_tasks(emu: Any, dag_id: str, run_id: str) -> list[Any]:
    """The emulator's FC tasks of one DAG run's ``invoke`` task instance, oldest first."""
    prefix = task_id_prefix(dag_id, "invoke", run_id)
    tasks = [t for t in emu.scheduler.tasks(FUNCTION) if t.task_id.startswith(prefix)]
    return sorted(tasks, key=lambda t: t.created_ms)


def stop_requests(emu: Any) -> int:
    return int(emu.stats()["requests"].get("StopAsyncTask", 0))


def event_time(task: Any, status: TaskStatus) -> float | None:
    """Epoch seconds of the task's first event with ``status``."""
    for event in list(task.events):
        if event["status"] == status.value:
            return float(event["timestamp"]) / 1000.0
    return None


def running_fc_task(
    cluster: AirflowCluster, emu: Any, dag_id: str, run_id: str, ti_state: str, nth: int = 0
) -> Any:
    """Wait until the run's ``nth`` FC task runs and the task instance is in ``ti_state``; return the FC task.

    In deferrable mode also until the triggerer has read the FC task: a user action on a deferred task whose
    trigger the triggerer has not started yet stops nothing (see the module docstring).
    """
    task = cluster.wait_for(
        f"FC task #{nth + 1} of {run_id} to run",
        lambda: next(
            (t for t in fc_tasks(emu, dag_id, run_id)[nth : nth + 1] if t.status is TaskStatus.RUNNING), None
        ),
        240,
    )
    cluster.wait_for(
        f"task instance of {run_id} {ti_state}", lambda: cluster.ti_state(dag_id, run_id) == ti_state, 120
    )
    if ti_state == "deferred":
        reads = task_reads(emu, task.task_id)
        cluster.wait_for(
            f"the triggerer to poll {task.task_id}", lambda: task_reads(emu, task.task_id) > reads, 120
        )
    return task


def task_reads(emu: Any, task_id: str) -> int:
    """GetAsyncTask requests for one FC task so far."""
    return sum(
        n for path, n in emu.stats()["paths"].items() if path.startswith("GET ") and path.endswith(task_id)
    )


def settle(cluster: AirflowCluster, emu: Any, dag_id: str, run_id: str) -> None:
    """End the run (a cleared task runs again) and wait until no FC task of it is active."""
    if cluster.run_state(dag_id, run_id) not in ("failed", "success"):
        cluster.fail_run(dag_id, run_id)
    cluster.wait_for(
        f"every FC task of {run_id} to end",
        lambda: all(
            t.status.value in ("Succeeded", "Failed", "Stopped", "Expired", "Invalid")
            for t in fc_tasks(emu, dag_id, run_id)
        ),
        STOP_WAIT_S,
    )
    cluster.wait_for(
        f"task instance of {run_id} to leave running/deferred",
        lambda: cluster.ti_state(dag_id, run_id) not in ("running", "deferred", "queued", "scheduled"),
        STOP_WAIT_S,
    )


@pytest.mark.parametrize("action", ["mark_failed", "clear"])
@pytest.mark.parametrize("mode", ["blocking", "deferrable"])
def test_r4_user_action_stops_the_fc_task(
    airflow_cluster: AirflowCluster, rel_emulator: Any, mode: str, action: str
) -> None:
    cluster, emu = airflow_cluster, rel_emulator
    dag_id = f"rel_fc_{mode}"
    run_id = f"r4-{mode}-{action}-{uuid.uuid4().hex[:8]}"
    cluster.trigger(dag_id, run_id, {"seconds": RUN_SECONDS})
    task = running_fc_task(cluster, emu, dag_id, run_id, "running" if mode == "blocking" else "deferred")
    stops_before = stop_requests(emu)

    t0 = time.time()
    if action == "mark_failed":
        cluster.mark_failed(dag_id, run_id)
    else:
        cluster.clear(dag_id, run_id)
    cluster.wait_for(
        f"FC task {task.task_id} Stopped", lambda: task.status is TaskStatus.STOPPED, STOP_WAIT_S, every=0.05
    )
    stopped_at = event_time(task, TaskStatus.STOPPED)
    assert stopped_at is not None
    elapsed = stopped_at - t0
    verdict = "within" if elapsed <= STOP_TARGET_S else "OVER"
    print(
        f"\n[reliability] R4 {mode:10s} {action:11s}: FC task Stopped {elapsed:.2f} s after the REST call "
        f"({verdict} the {STOP_TARGET_S:g} s target)"
    )
    assert stop_requests(emu) > stops_before, "the FC task ended Stopped without a StopAsyncTask request"
    assert emu.stats()["executions"].get(task.task_id) == 1

    if action == "clear":
        # The cleared task instance runs again: a new try invokes a new FC task (the stopped one is not reused).
        again = running_fc_task(
            cluster, emu, dag_id, run_id, "running" if mode == "blocking" else "deferred", 1
        )
        assert again.task_id != task.task_id and fc_tasks(emu, dag_id, run_id)[0].task_id == task.task_id
    else:
        assert cluster.ti_state(dag_id, run_id) == "failed"
    settle(cluster, emu, dag_id, run_id)


def test_r5_triggerer_killed_and_restarted_mid_wait(
    airflow_cluster: AirflowCluster, rel_emulator: Any
) -> None:
    cluster, emu = airflow_cluster, rel_emulator
    dag_id = "rel_fc_deferrable"
    run_id = f"r5-{uuid.uuid4().hex[:8]}"
    # Long enough to outlive the restart: a new triggerer adopts the trigger once the dead one's heartbeat is
    # older than [triggerer] triggerer_health_check_threshold (30 s).
    cluster.trigger(dag_id, run_id, {"seconds": 75})
    task = running_fc_task(cluster, emu, dag_id, run_id, "deferred")
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
    assert [t.task_id for t in fc_tasks(emu, dag_id, run_id)] == [task.task_id], "invoked more than once"
    assert emu.stats()["executions"].get(task.task_id) == 1
    xcom = cluster.api(
        "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/invoke/xcomEntries/return_value"
    )
    assert "Succeeded" in str(xcom["value"]), xcom
