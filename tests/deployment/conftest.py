"""A production-shaped Airflow 3 deployment for the deployment tier (``make test-deployment``).

PostgreSQL metadata DB, CeleryExecutor with a Redis broker (results in PostgreSQL), ``api-server``, ``scheduler``,
``dag-processor``, two Celery workers (``worker-1``, ``worker-2``, 8 slots each) and two triggerers
(``triggerer-1``, ``triggerer-2``), every one its own process group in one temporary AIRFLOW_HOME
(tests/airflow_processes.py), all on loopback. The FC connection points at an :class:`Emulator` in this test
process serving the example functions and ``functions/s.yaml``. The DAGs: every example DAG and ``dags/``.

Timing settings that matter: ``[scheduler] task_instance_heartbeat_timeout`` = 30 s (a SIGKILLed worker's task
is failed and retried after it; default 300 s) and ``[triggerer] triggerer_health_check_threshold`` = 20 s (the
other triggerer adopts a dead one's triggers after it; default 30 s); ``[workers] execution_api_timeout`` = 60 s
(default 5 s; too short for a loaded 2-core machine).

The tier prints one summary line at the end of the session (``pytest_terminal_summary``):
``deployment: executor=CeleryExecutor workers=2 triggerers=2 db=postgresql runs=R/R records=K/K stopped=S/S
readopted=T/T``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_processes import ROOT, AirflowCluster, deployment, task_steps
from tests.deployment import services

HERE = Path(__file__).resolve().parent
EXAMPLES = ROOT / "example_dags"
FUNCTION = "dep-wait"
WORKERS = ("worker-1", "worker-2")
TRIGGERERS = ("triggerer-1", "triggerer-2")

SUMMARY: dict[str, list[int]] = {k: [0, 0] for k in ("runs", "records", "stopped", "readopted")}
"""``name -> [right, all]`` for the summary line; every test adds what it checked."""


def count(name: str, right: int, total: int) -> None:
    SUMMARY[name][0] += right
    SUMMARY[name][1] += total


EXITS: list[tuple[float, float]] = []
"""Per deferral exit: seconds from "Pausing task as DEFERRED" to the task process's last line ("::endgroup::",
after the defer and extra-link calls through the supervisor), and from there to the worker's "Workload finished"
(the process's exit and the supervisor's wrap-up)."""


def deferral_exits(home: Path) -> list[tuple[float, float]]:
    """Every deferral exit of the deployment (see ``EXITS``), from the task logs and the workers' supervisor lines."""
    return [
        (s.last_line - s.paused, s.finished - s.last_line) for s in task_steps(home) if s.paused is not None
    ]


def _spread(values: list[float]) -> str:
    values = sorted(values)
    n = len(values)
    return f"p50 {values[n // 2]:.2f} s, p90 {values[int(n * 0.9)]:.2f} s, max {values[-1]:.2f} s"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if EXITS:
        terminalreporter.write_line(
            f"deployment: {len(EXITS)} deferral exits (Pausing task as DEFERRED -> Workload finished): "
            f"{_spread([a + b for a, b in EXITS])}; of which the calls up to the task's last line "
            f"{_spread([a for a, _ in EXITS])}, the process exit after it {_spread([b for _, b in EXITS])}"
        )
    if not any(total for _, total in SUMMARY.values()):
        return
    parts = " ".join(f"{k}={right}/{total}" for k, (right, total) in SUMMARY.items())
    terminalreporter.write_line(
        f"deployment: executor=CeleryExecutor workers={len(WORKERS)} triggerers={len(TRIGGERERS)} "
        f"db=postgresql {parts}"
    )


class Deployment:
    """The cluster, its emulator and its metadata DB (read directly where the REST API has no answer)."""

    def __init__(self, cluster: AirflowCluster, emu: Any, db_url: str) -> None:
        self.cluster = cluster
        self.emu = emu
        self.db_url = db_url.replace("+psycopg2", "")
        self.triggerer_jobs: dict[str, int] = {}

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg2

        with contextlib.closing(psycopg2.connect(self.db_url)) as conn, conn.cursor() as cur:
            cur.execute(query, args)
            return list(cur.fetchall())

    def restart_triggerer(self, name: str) -> None:
        """Start a killed triggerer again and learn its new job id."""
        before = self.running_triggerer_jobs()
        self.cluster.start(name)
        new = self.cluster.wait_for(
            f"{name}'s new job", lambda: self.running_triggerer_jobs() - before, 180, 1.0
        )
        self.triggerer_jobs[name] = max(new)

    def running_triggerer_jobs(self) -> set[int]:
        rows = self.sql("SELECT id FROM job WHERE job_type = 'TriggererJob' AND state = 'running'")
        return {int(r[0]) for r in rows}

    def triggers_by_job(self) -> dict[int | None, int]:
        return {r[0]: int(r[1]) for r in self.sql("SELECT triggerer_id, count(*) FROM trigger GROUP BY 1")}


def _seed_history(connection_json: str) -> None:
    """The example re-run DAG's history (run_demo's seeding: four ``nightly-`` tasks, two failing once)."""
    spec = importlib.util.spec_from_file_location("fc_run_demo", EXAMPLES / "run_demo.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.seed_history(connection_json)


@pytest.fixture(scope="session")
def dep() -> Iterator[Deployment]:
    """The whole deployment, healthy, every DAG parsed, both triggerers' job ids known."""
    lacking = services.missing()
    assert not lacking, f"the deployment tier needs {lacking} (Debian packages; .ci/run installs them)"
    from airflow_fc_async.emulator import Emulator

    with (
        services.postgres() as db_url,
        services.redis() as broker,
        Emulator(configs=[EXAMPLES / "functions" / "s.yaml", HERE / "functions" / "s.yaml"], port=0) as emu,
    ):
        conn = emu.connection_json()
        _seed_history(conn)
        env = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "8",
            "AIRFLOW__CORE__PARALLELISM": "64",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "20",
            # A worker's calls to the api-server (one uvicorn worker here) time out after 5 s by default: on a
            # loaded 2-core machine that failed tasks before they started ("ReadTimeout", executor event failed).
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            # A worker's supervisor notices its task process's exit only at its next heartbeat tick when the
            # process closed its sockets just before it could be reaped (tests/repro/defer_exit_race.py): up to
            # 5 s by default, and a deferral exit that slow widens Airflow's defer-exit race. 1 s bounds it.
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        }
        dag_ids = [
            "dep_fc_mapped",
            "dep_fc_blocking",
            "dep_fc_deferrable",
            "dep_fc_retry",
            *(p.stem for p in EXAMPLES.glob("example_*.py")),
        ]
        examples = list(EXAMPLES.glob("example_*.py"))
        processes = ("api-server", "scheduler", "dag-processor", "triggerer-1", *WORKERS)
        with deployment(
            [HERE / "dags", *examples], conn, processes, dag_ids, env, prefix="fc-deploy-airflow-"
        ) as cluster:
            d = Deployment(cluster, emu, db_url)
            first = cluster.wait_for("triggerer-1's job", d.running_triggerer_jobs, 120)
            d.triggerer_jobs["triggerer-1"] = max(first)
            d.restart_triggerer("triggerer-2")
            print(f"[deployment] triggerer jobs {json.dumps(d.triggerer_jobs)}")
            try:
                yield d
            finally:
                EXITS.extend(deferral_exits(cluster.home))
