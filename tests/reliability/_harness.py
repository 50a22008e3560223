"""Driving FcInvokeAsyncOperator many times at once without a scheduler: the operators' own code paths.

A "logical task" is one Airflow task instance: its tries run ``execute`` with a minimal context (ti, run_id,
task state store). A deferral is resumed the way the triggerer and the worker do it: the trigger's ``run()``
gives one event, then ``execute_complete`` gets it. A try that raises ``AirflowException`` (not
``AirflowFailException``) is tried again with the next try number and the same state store, as Airflow does
for a task with ``retries``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException
from airflow.sdk.exceptions import TaskDeferred

from airflow_fc_async.operators.fc import FcInvokeAsyncOperator

RUN_ID = "manual__2024-01-01T00:00:00+00:00"

ECHO_SOURCE = """
import json, time

def handler(event, context):
    spec = json.loads(event or b"{}")
    time.sleep(float(spec.get("sleep", 0)))
    return json.dumps({"i": spec.get("i"), "double": 2 * spec.get("i", 0)})
"""


def deploy_echo(emu: Any, name: str, queue: str, concurrency: int = 8) -> str:
    """Deploy ``name`` (returns {"i", "double"}) with an onSuccess destination to MNS queue ``queue``."""
    arn = f"acs:mns:{emu.region}:{emu.account_id}:/queues/{queue}/messages"
    emu.deploy(
        name,
        handler="index.handler",
        source=ECHO_SOURCE,
        timeout=30,
        instance_concurrency=concurrency,
        async_invoke_config={
            "asyncTask": True,
            "maxAsyncRetryAttempts": 0,
            "destinationConfig": {"onSuccess": {"destination": arn}},
        },
    )
    return arn


class FakeTI:
    """The task instance a running operator sees: ids, try number and XCom pushes."""

    def __init__(self, dag_id: str, task_id: str, try_number: int, map_index: int = -1) -> None:
        self.dag_id, self.task_id, self.try_number, self.map_index = dag_id, task_id, try_number, map_index
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.xcom[key] = json.loads(json.dumps(value))  # what a real XCom backend would store


class Store:
    """Airflow 3.3's task state store of one task instance (it outlives a try)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.values[key] = value


@dataclass
class Outcome:
    """One logical task: its final result or error, how many tries it took, its XCom pushes."""

    index: int
    result: dict[str, Any] | None = None
    error: str | None = None
    tries: int = 0
    deferred: bool = False
    xcom: dict[str, Any] = field(default_factory=dict)


def _run_trigger(trigger: Any) -> dict[str, Any]:
    async def first_event() -> dict[str, Any]:
        gen = trigger.run()
        try:
            event = await gen.__anext__()
        finally:
            await gen.aclose()
        return dict(event.payload)

    return asyncio.run(first_event())


def run_logical_task(
    make_op: Callable[[], FcInvokeAsyncOperator], index: int, dag_id: str, max_tries: int = 3
) -> Outcome:
    outcome = Outcome(index)
    store = Store()
    for try_number in range(1, max_tries + 1):
        op = make_op()
        ti = FakeTI(dag_id, op.task_id, try_number)
        context: dict[str, Any] = {"ti": ti, "run_id": RUN_ID, "task_state_store": store}
        outcome.tries = try_number
        try:
            try:
                outcome.result = op.execute(context)  # type: ignore[arg-type]
            except TaskDeferred as deferral:
                outcome.deferred = True
                event = _run_trigger(deferral.trigger)
                outcome.result = getattr(op, deferral.method_name)(context, event=event)
            outcome.error = None
            outcome.xcom.update(ti.xcom)
            return outcome
        except AirflowFailException as err:
            outcome.error = f"fail: {err}"
            outcome.xcom.update(ti.xcom)
            return outcome
        except AirflowException as err:
            outcome.error = f"retry: {err}"
            outcome.xcom.update(ti.xcom)
    return outcome


def run_many(
    make_op: Callable[[int], FcInvokeAsyncOperator], n: int, dag_id: str, workers: int = 40
) -> tuple[list[Outcome], float]:
    started = time.monotonic()
    lock = threading.Lock()
    done: list[Outcome] = []

    def one(i: int) -> None:
        out = run_logical_task(lambda: make_op(i), i, dag_id)
        with lock:
            done.append(out)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return sorted(done, key=lambda o: o.index), time.monotonic() - started
