"""A DAG file's parse loads only what it needs then (P3): importing every operator, sensor and trigger module and
building each operator leaves the runtime-only core modules (models, progress, the wait policy, the status poller,
function logs, task ids, ...), the hooks and the operators' runtime parts (outcome, follower, destination record)
unloaded, and compiles no regular expression of the error tree; the operators and sensors alone load no trigger
module (``airflow.triggers.base`` is most of what the trigger modules cost). Checked in a fresh interpreter: this one
has them all."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import airflow_fc_async.core

PARSE_TIME_CORE = {"errors", "durations", "policies"}
"""The only core modules a DAG parse may load: the error tree (``except`` clauses), argument durations and the
policy constants (argument defaults such as hold times; stdlib only)."""

_CORE = {m.name for m in pkgutil.iter_modules(airflow_fc_async.core.__path__)}
RUNTIME_ONLY = [
    *(f"airflow_fc_async.core.{name}" for name in sorted(_CORE - PARSE_TIME_CORE)),
    *("airflow_fc_async.hooks.base", "airflow_fc_async.hooks.fc", "airflow_fc_async.hooks.mns"),
    # what a running operator composes (the XCom value and messages, the blocking wait, the record)
    *("airflow_fc_async.operators.outcome", "airflow_fc_async.operators.follower"),
    "airflow_fc_async.operators.destination_record",
    "airflow_fc_async.operators.reattach",  # the invoke operator's re-attach, imported in execute
    "airflow_fc_async.compat",  # the version branches: every one is taken where a task runs
]

_PARSE = """
import json, sys
try:
    import airflow.sdk  # what a DAG file imports first (Airflow 3)
except ImportError:  # Airflow 2
    import airflow
from airflow.providers.common.compat.sdk import BaseOperator, BaseSensorOperator
ours = ("airflow.triggers.base" not in sys.modules, "airflow_fc_async.triggers")  # Airflow 2 loads it itself
from airflow_fc_async.operators.config import FcAsyncInvokeConfigOperator
from airflow_fc_async.operators.fc import FcInvokeAsyncOperator
from airflow_fc_async.operators.history import FcListAsyncTasksOperator
from airflow_fc_async.operators.rerun import FcRerunAsyncTaskOperator
from airflow_fc_async.operators.stop import FcStopAsyncTaskOperator
from airflow_fc_async.sensors.fc import FcAsyncTaskSensor
from airflow_fc_async.sensors.mns import FcDestinationSensor
# before building any operator: building one may load Airflow's plugins, which load BaseTrigger (3.0)
triggers = sorted(m for m in sys.modules if (m == "airflow.triggers.base" and ours[0]) or m.startswith(ours[1]))

FcAsyncInvokeConfigOperator(task_id="config", function_name="fn", on_success="acs:mns:r:1:/queues/q/messages")
FcInvokeAsyncOperator(task_id="invoke", function_name="fn", payload={"n": 1}, poll_interval=5, max_wait=60,
                      destination_queue="q", stream_logs=True)
FcInvokeAsyncOperator(task_id="deferred", function_name="fn", deferrable=True)
FcListAsyncTasksOperator(task_id="history", function_name="fn", status="Failed")
FcRerunAsyncTaskOperator(task_id="rerun", function_name="fn", source_task_id="t1", payload_override={"n": 2})
FcStopAsyncTaskOperator(task_id="stop", function_name="fn", async_task_id="t1", timeout=30)
FcAsyncTaskSensor(task_id="sensor", function_name="fn", async_task_id="t1", poke_interval=5)
FcDestinationSensor(task_id="record", queue_name="q", request_id="r1")
import airflow_fc_async.triggers.fc, airflow_fc_async.triggers.mns
from airflow_fc_async.core import errors
print(json.dumps({
    "triggers": triggers,
    "loaded": sorted(m for m in json.loads(sys.argv[1]) if m in sys.modules),
    "patterns_compiled": errors._credential_patterns.cache_info().currsize,
}))
"""


def test_a_dag_parse_loads_no_runtime_only_module() -> None:
    assert "airflow_fc_async.core.models" in RUNTIME_ONLY and "airflow_fc_async.core.waiting" in RUNTIME_ONLY
    out = subprocess.run(
        [sys.executable, "-c", _PARSE, json.dumps(RUNTIME_ONLY)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    # BaseTrigger (pydantic models) is most of what the trigger modules cost: only deferring imports them
    assert found["triggers"] == [], f"the operators and sensors load trigger modules: {found['triggers']}"
    assert found["loaded"] == [], (
        f"loaded at DAG-parse time though only a running task needs them: {found['loaded']}"
    )
    assert found["patterns_compiled"] == 0, (
        "redact()'s patterns are compiled on the first error, not at import"
    )
