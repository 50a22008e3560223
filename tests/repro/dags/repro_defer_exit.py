"""Airflow's defer-exit race, without this provider: a deferring task whose process lingers after the deferral.

``execute`` registers an exit handler that sleeps ``exit_delay`` seconds (standing in for whatever keeps a worker
process alive after it defers: threads joined at exit, log flushing, pools closing), then defers to a trigger that
fires at once. Airflow's own operator base and trigger only.
"""

from __future__ import annotations

import atexit
import time
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import DAG, BaseOperator


class SlowExitDeferral(BaseOperator):
    def __init__(self, exit_delay: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.exit_delay = exit_delay

    def execute(self, context: Any) -> None:
        if self.exit_delay:
            atexit.register(
                time.sleep, self.exit_delay
            )  # runs in the task process's exit, after the deferral
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=0)), method_name="done")

    def done(self, context: Any, event: Any = None) -> str:
        return "resumed"


for dag_id, delay in (("repro_defer_exit_fast", 0.0), ("repro_defer_exit_slow", 6.0)):
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["repro"]) as dag:
        SlowExitDeferral(task_id="defer", exit_delay=delay)
    globals()[dag_id] = dag
