"""Dead letters start a DAG, with real Airflow processes (scheduler, triggerer, dag-processor, api-server).

The producer DAG makes ``my-fc-job-watched`` fail (3 s timeout, one retry); FC's dead letter lands in
``fc-dead-letters``; the asset watcher in the triggerer turns it into an asset event; the scheduler starts
``example_fc_dead_letter_handler``, which alerts and re-runs the execution with a payload override: the re-run
succeeds. Printed: the time from the dead letter's enqueue to the handler run's creation.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from airflow_fc_async.core.mns import MnsClient

from .conftest import AirflowCluster

PRODUCER, HANDLER, QUEUE, FUNCTION = (
    "example_fc_dead_letter_producer",
    "example_fc_dead_letter_handler",
    "fc-dead-letters",
    "my-fc-job-watched",
)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_dead_letter_starts_the_handler_and_its_rerun_succeeds(
    airflow_cluster: AirflowCluster, rel_emulator: Any
) -> None:
    cluster = airflow_cluster
    for dag_id in (PRODUCER, HANDLER):
        cluster.wait_for(f"DAG {dag_id}", lambda d=dag_id: cluster.api("GET", f"/dags/{d}"), 300, 1.0)
        cluster.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
    # the watcher's trigger runs in the triggerer once the asset is scheduled on by an active DAG
    time.sleep(5)
    run_id = f"dl-{int(time.time())}"
    cluster.trigger(PRODUCER, run_id, {})
    cluster.wait_for(
        "the producer run", lambda: cluster.run_state(PRODUCER, run_id) in ("success", "failed"), 300, 1.0
    )
    assert cluster.run_state(PRODUCER, run_id) == "success"

    def dead_letter_enqueued() -> float | None:  # the record's timestamp: FC (the emulator) sent it then
        tasks = [t for t in rel_emulator.scheduler.tasks(FUNCTION) if str(t.status.value) == "Failed"]
        return max((t.end_ms or 0) / 1000.0 for t in tasks) if tasks else None

    def handler_runs() -> list[dict[str, Any]]:
        return list(cluster.api("GET", f"/dags/{HANDLER}/dagRuns")["dag_runs"])

    runs = cluster.wait_for("a handler run started by the dead letter", handler_runs, 300, 0.2)
    enqueued = cluster.wait_for("the failed FC task", dead_letter_enqueued, 60, 0.5)
    started = _ts(runs[0]["queued_at"] or runs[0]["run_after"])
    print(f"\n[dead letter] handler run created {started - enqueued:.1f} s after FC sent the dead letter")
    assert runs[0]["run_type"] == "asset_triggered"
    handler_run = runs[0]["dag_run_id"]
    cluster.wait_for(
        "the handler run",
        lambda: cluster.run_state(HANDLER, handler_run) in ("success", "failed"),
        300,
        1.0,
    )
    outcome = cluster.api(
        "GET", f"/dags/{HANDLER}/dagRuns/{handler_run}/taskInstances/record_outcome/xcomEntries/return_value"
    )["value"]
    assert cluster.run_state(HANDLER, handler_run) == "success", outcome
    assert len(outcome) == 1 and outcome[0]["status"] == "Succeeded", outcome
    # the dead letter was deleted after its asset event was stored; nothing else is left on the queue
    mns = MnsClient(rel_emulator.endpoint, rel_emulator.credentials)
    attrs = mns.get_queue_attributes(QUEUE)
    mns.close()
    assert int(attrs["ActiveMessages"]) + int(attrs["InactiveMessages"]) == 0, attrs
    time.sleep(3)
    assert len(handler_runs()) == 1, "one dead letter, one handler run"
