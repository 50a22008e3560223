"""R1: N invocations through FcInvokeAsyncOperator while the emulator injects faults (shared by the quick and
the long run). Half the tasks wait blocking in the worker, half defer to the trigger."""

from __future__ import annotations

import collections
import os
from typing import Any

from airflow_fc_async.emulator import Emulator
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from tests.reliability._harness import deploy_echo, run_many

FUNCTION = "rel-echo"
QUEUE = "rel-results"
CONN_ID = "fc_reliability"

# 20% throttling / server errors, 5% connection resets (half before the server acts, half after), on every
# FC and MNS action; plus latency: 0.05 s on every request and 1.5 s spikes on every read of one task in ten.
FAULTS: list[dict[str, Any]] = [
    {"rates": {"429": 0.07, "500": 0.07, "503": 0.06, "reset_before": 0.025, "reset_after": 0.025}},
    {"latency": 0.05},
    {"action": "GetAsyncTask", "path": r"-r1-\d*7-manual", "latency": 1.5},
]


def run_r1(n: int, dag_id: str, seed: int = 8) -> None:
    with Emulator(port=0, retry_delay=0.2, max_instances=8) as emu:
        deploy_echo(emu, FUNCTION, QUEUE)
        emu.queues.ensure(QUEUE)
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = emu.connection_json()
        try:
            _run(emu, n, dag_id, seed)
        finally:
            os.environ.pop(f"AIRFLOW_CONN_{CONN_ID.upper()}", None)


def _run(emu: Emulator, n: int, dag_id: str, seed: int) -> None:
    emu.inject_faults(FAULTS, seed=seed)

    def make_op(i: int) -> FcInvokeAsyncOperator:
        return FcInvokeAsyncOperator(
            task_id=f"r1-{i}",
            function_name=FUNCTION,
            payload={"i": i, "sleep": 0.3},
            fc_conn_id=CONN_ID,
            poll_interval=1,
            deferrable=i % 2 == 1,
            destination_queue=QUEUE,
            destination_timeout=90,
        )

    outcomes, seconds = run_many(make_op, n, dag_id)
    stats = emu.stats()
    emu.clear_faults()
    leftover = len(emu.queues.get(QUEUE).messages)

    right = [
        o
        for o in outcomes
        if o.result is not None
        and o.result["status"] == "Succeeded"
        and o.result["return_payload"] == {"i": o.index, "double": 2 * o.index}
    ]
    executions = {k: v for k, v in stats["executions"].items() if k.startswith(f"{dag_id}-r1-")}

    def record_id(record: Any) -> Any:
        return ((record or {}).get("requestContext") or {}).get("requestId")

    # in XCom under "destination_record" and in the return value, with the right request id and payload
    records = [
        o
        for o in outcomes
        if o.result is not None
        and record_id(o.result.get("destination_record")) == o.result["request_id"]
        and record_id(o.xcom.get("destination_record")) == o.result["request_id"]
        and o.xcom["destination_record"]["responsePayload"] == {"i": o.index, "double": 2 * o.index}
    ]
    tries = collections.Counter(o.tries for o in outcomes)
    faults = sum(stats["faults"].values())
    print(
        f"\nR1 {n} invocations through the operator ({sum(o.deferred for o in outcomes)} deferred) in "
        f"{seconds:.1f} s: {len(right)}/{n} right results; emulator executions {sum(executions.values())} "
        f"over {len(executions)} task ids (max {max(executions.values(), default=0)} per id); "
        f"destination records in XCom {len(records)}/{n}; faults injected {faults} "
        f"({dict(sorted(stats['faults'].items()))}); Airflow tries per task {dict(sorted(tries.items()))}; "
        f"left in the queue {leftover}"
    )
    failed = [(o.index, o.tries, o.error) for o in outcomes if o not in right]
    assert not failed, failed[:5]
    assert faults >= n // 4  # the faults did happen
    assert len(executions) == n and set(executions.values()) == {1}  # exactly one execution per task
    assert len(records) == n  # no destination record lost
