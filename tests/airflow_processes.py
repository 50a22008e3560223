"""Real Airflow processes driven from pytest: the harness of tests/reliability_long/ and tests/deployment/.

:class:`AirflowCluster` starts named Airflow commands (``api-server``, ``scheduler``, ``triggerer-2``,
``worker-1``, ...) as separate process groups in one temporary AIRFLOW_HOME, waits on them, kills them, and makes
the REST calls (/api/v2; SimpleAuthManager with ``simple_auth_manager_all_admins``, so no token) the tests need.
:func:`deployment` runs ``airflow db migrate`` and brings a set of processes up until healthy with its DAGs parsed.
The helpers below it read the emulator's FC tasks of one task instance.

Every process writes to ``<AIRFLOW_HOME>/proc-<name>.log``; a failed wait prints the tails. Teardown sends SIGTERM
to each process group, then SIGKILL to what is left.

Log servers: Airflow 3.3.2's worker and trigger log servers bind every interface (``serve_logs`` runs uvicorn on
``host=""``) on fixed default ports (8793, 8794). Every process here is started with ``--skip-serve-logs``: the
processes share one logs folder, which the api-server reads (as on one machine, or with a shared log volume).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from airflow_fc_async.core.models import TaskStatus
from airflow_fc_async.core.task_ids import task_id_prefix

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 300.0
TERMINAL = ("Succeeded", "Failed", "Stopped", "Expired", "Invalid")

T = TypeVar("T")


def free_port() -> int:
    """A free loopback port (for servers whose URL must be known before they start, so port 0 cannot do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def command(name: str, port: int) -> list[str]:
    """The ``airflow`` arguments of a process name: ``api-server``, ``scheduler``, ``dag-processor``,
    ``triggerer[-N]``, ``worker-N`` (a Celery worker)."""
    kind = name.rsplit("-", 1)[0] if name[-1].isdigit() else name
    if kind == "api-server":
        return [kind, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if kind == "scheduler":
        return [kind, "--skip-serve-logs"]
    if kind == "triggerer":
        return [kind, "--skip-serve-logs"]
    if kind == "worker":
        return ["celery", "worker", "--celery-hostname", f"{name}@127.0.0.1", "--skip-serve-logs"]
    return [kind]


class AirflowCluster:
    """The Airflow processes of one test module, and the REST calls the tests make."""

    def __init__(self, home: Path, env: dict[str, str], port: int) -> None:
        self.home = home
        self.env = env
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.expected_down: set[str] = set()  # killed on purpose, not a failure
        self.http = requests.Session()

    # -- processes ---------------------------------------------------------------------------------------------
    def log_path(self, name: str) -> Path:
        return self.home / f"proc-{name}.log"

    def start(self, name: str) -> None:
        self.expected_down.discard(name)
        with open(self.log_path(name), "ab") as log:
            log.write(f"\n=== start {name} at {time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *command(name, self.port)],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: workers and runners die with it
            )

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal the process group of ``name`` and wait for its leader to exit."""
        proc = self.procs[name]
        self.expected_down.add(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def owner_of(self, pid: int) -> str | None:
        """The process name whose leader ``pid`` descends from (e.g. the Celery worker running a task: Airflow's
        supervisor puts the task process in a process group of its own, so its parents are followed)."""
        leaders = {proc.pid: name for name, proc in self.procs.items()}
        while pid > 1:
            if pid in leaders:
                return leaders[pid]
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return None
            pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: the parent's pid
        return None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, end - time.monotonic()))
        for proc in self.procs.values():  # SIGKILL the group: leaders and any child left behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    def tails(self, lines: int = 40) -> str:
        out = []
        for name in self.procs:
            path = self.log_path(name)
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} (last {lines} lines) ---\n" + "\n".join(text))
        return "\n".join(out)

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
        """Poll ``probe`` until it returns something truthy; fail with the process log tails after ``timeout``."""
        end = time.monotonic() + timeout
        while True:
            try:
                value = probe()
            except (requests.RequestException, ValueError):
                value = None
            if value:
                return value
            if time.monotonic() > end:
                pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{self.tails()}")
            for name, proc in self.procs.items():
                if proc.poll() is not None and name not in self.expected_down:
                    pytest.fail(f"airflow {name} exited with {proc.returncode}\n{self.tails()}")
            time.sleep(every)

    # -- REST API (/api/v2) ------------------------------------------------------------------------------------
    def login(self, username: str, password: str) -> None:
        """Send a user's JWT with every REST call (SimpleAuthManager with users, not all admins)."""
        resp = self.http.post(
            f"{self.base}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        resp.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(4):
            resp = self.http.request(method, f"{self.base}/api/v2{path}", timeout=30, **kwargs)
            # SQLite under several writers: the api-server rolls the request back and answers 500 "Database
            # error" (seen on a PATCH of a DAG run's state while the scheduler wrote); the request is safe to repeat.
            if resp.status_code != 500 or "Database error" not in resp.text or attempt == 3:
                break
            time.sleep(1.0 + attempt)
        if resp.status_code >= 400:
            raise AssertionError(f"{method} {path} -> {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def healthy(self) -> bool:
        health = self.api("GET", "/monitor/health")
        return all(
            (health.get(part) or {}).get("status") == "healthy"
            for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
        )

    def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None) -> None:
        self.api(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            json={"dag_run_id": run_id, "logical_date": None, "conf": conf or {}},
        )

    def unpause(self, dag_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def ti(self, dag_id: str, run_id: str, task_id: str = "invoke", map_index: int = -1) -> dict[str, Any]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        result: dict[str, Any] = self.api("GET", path if map_index < 0 else f"{path}/{map_index}")
        return result

    def tis(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (mapped ones one by one)."""
        out: list[dict[str, Any]] = self.api(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000}
        )["task_instances"]
        return out

    def ti_state(self, dag_id: str, run_id: str, task_id: str = "invoke") -> str | None:
        state = self.ti(dag_id, run_id, task_id).get("state")
        return str(state) if state else None

    def task_log_items(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """The task log the api-server serves (what the UI shows): its structured events, the sources header
        (``sources``: the worker's file and one ``.trigger.<triggerer id>.log`` per triggerer that ran it) first."""
        resp = self.http.get(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
            timeout=60,
        )
        if resp.status_code == 404:  # a task instance that never started has no log
            return []
        resp.raise_for_status()
        content = resp.json().get("content")
        items = []
        for item in content if isinstance(content, list) else [content]:
            if isinstance(item, dict):
                items.append(item)
            elif item is not None:
                items.append({"event": str(item)})
        return items

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        """The task log the api-server serves (what the UI shows), as text, one event a line."""
        return log_text(self.task_log_items(dag_id, run_id, task_id, try_number, map_index))

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """An XCom value, or None when the task instance pushed none."""
        path = f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        resp = self.http.get(path, params={"map_index": map_index}, timeout=30)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()["value"]

    def mark_failed(self, dag_id: str, run_id: str, task_id: str = "invoke") -> None:
        self.api(
            "PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json={"new_state": "failed"}
        )

    def clear(self, dag_id: str, run_id: str, task_id: str = "invoke") -> None:
        self.api(
            "POST",
            f"/dags/{dag_id}/clearTaskInstances",
            json={"dry_run": False, "dag_run_id": run_id, "task_ids": [task_id], "only_failed": False},
        )

    def fail_run(self, dag_id: str, run_id: str) -> None:
        self.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}", json={"state": "failed"})

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"])


def log_text(items: list[dict[str, Any]]) -> str:
    """A served log's events as text, one a line (what :meth:`AirflowCluster.task_log` returns)."""
    return "\n".join(str(item.get("event", "")) for item in items)


def airflow_env(
    home: Path, dags: Path, port: int, connection_json: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The processes' environment: this one without any AIRFLOW_* setting of the test session, plus ours.

    LocalExecutor on SQLite unless ``extra`` says otherwise (Airflow 3 accepts that pair).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": "reliability-tests-jwt-secret-0123456789abcdef",
            "AIRFLOW__API__SECRET_KEY": "reliability-tests-secret-key",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_FC_DEFAULT": connection_json,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        }
    )
    env.update(extra or {})
    return env


@contextlib.contextmanager
def deployment(
    dag_sources: Iterable[Path],
    connection_json: str,
    processes: Iterable[str],
    dag_ids: Iterable[str],
    extra_env: dict[str, str] | None = None,
    prefix: str = "fc-rel-airflow-",
    login: tuple[str, str] | None = None,
) -> Iterator[AirflowCluster]:
    """A temporary deployment: DAG files copied from ``dag_sources`` (folders or files), DB migrated, every
    process started, healthy and ``dag_ids`` parsed; stopped (and its home removed) on exit. ``login``: the
    REST calls go as this user (when ``extra_env`` turns off SimpleAuthManager's all-admins mode)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    dags = home / "dags"
    dags.mkdir()
    for src in dag_sources:
        if src.is_dir():
            shutil.copytree(src, dags, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dags / src.name)
    port = free_port()
    cluster = AirflowCluster(home, airflow_env(home, dags, port, connection_json, extra_env), port)
    t0 = time.monotonic()
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=cluster.env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
        )
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        for name in processes:
            cluster.start(name)
        cluster.wait_for("a healthy deployment", cluster.healthy, START_TIMEOUT, every=1.0)
        if login:
            cluster.login(*login)
        for dag_id in dag_ids:
            cluster.wait_for(
                f"DAG {dag_id}", lambda d=dag_id: cluster.api("GET", f"/dags/{d}"), START_TIMEOUT, 1.0
            )
        print(f"\n[airflow] deployment up in {time.monotonic() - t0:.1f} s ({home})")
        yield cluster
    finally:
        cluster.stop_all()
        if os.environ.get("KEEP_RELIABILITY_HOME") != "1":
            shutil.rmtree(home, ignore_errors=True)


# -- the emulator's view of one task instance ------------------------------------------------------------------
def fc_tasks(
    emu: Any, function: str, dag_id: str, run_id: str, task: str = "invoke", map_index: int = -1
) -> list[Any]:
    """The emulator's FC tasks of one task instance, oldest first.

    Matched by the readable part of the generated id and any hash: the hash also folds in the DAG run's marker
    (``compat.dag_run_marker``), which only the task's own context knows; run ids are unique per test.
    """
    readable = task_id_prefix(dag_id, task, run_id, map_index).rsplit("-", 1)[0]
    ours = re.compile(re.escape(readable) + r"-[0-9a-f]{10}-t\d+")
    tasks = [t for t in emu.scheduler.tasks(function) if ours.fullmatch(t.task_id)]
    return sorted(tasks, key=lambda t: t.created_ms)


def stop_requests(emu: Any) -> int:
    return int(emu.stats()["requests"].get("StopAsyncTask", 0))


def event_time(task: Any, status: TaskStatus) -> float | None:
    """Epoch seconds of the task's first event with ``status``."""
    for event in list(task.events):
        if event["status"] == status.value:
            return float(event["timestamp"]) / 1000.0
    return None


def task_reads(emu: Any, task_id: str) -> int:
    """GetAsyncTask requests for one FC task so far."""
    return sum(
        n for path, n in emu.stats()["paths"].items() if path.startswith("GET ") and path.endswith(task_id)
    )


def running_fc_task(
    cluster: AirflowCluster, emu: Any, function: str, dag_id: str, run_id: str, ti_state: str, nth: int = 0
) -> Any:
    """Wait until the run's ``nth`` FC task runs and the task instance is in ``ti_state``; return the FC task.

    In deferrable mode also until the triggerer has read the FC task: a user action on a deferred task whose
    trigger the triggerer has not started yet stops nothing (Airflow deletes the unstarted trigger row).
    """
    task = cluster.wait_for(
        f"FC task #{nth + 1} of {run_id} to run",
        lambda: next(
            (
                t
                for t in fc_tasks(emu, function, dag_id, run_id)[nth : nth + 1]
                if t.status is TaskStatus.RUNNING
            ),
            None,
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


def settle(cluster: AirflowCluster, emu: Any, function: str, dag_id: str, run_id: str, wait: float) -> None:
    """End the run (a cleared task runs again) and wait until no FC task of it is active."""
    if cluster.run_state(dag_id, run_id) not in ("failed", "success"):
        cluster.fail_run(dag_id, run_id)
    cluster.wait_for(
        f"every FC task of {run_id} to end",
        lambda: all(t.status.value in TERMINAL for t in fc_tasks(emu, function, dag_id, run_id)),
        wait,
    )
    cluster.wait_for(
        f"task instance of {run_id} to leave running/deferred",
        lambda: cluster.ti_state(dag_id, run_id) not in ("running", "deferred", "queued", "scheduled"),
        wait,
    )


def user_action_stops(
    cluster: AirflowCluster,
    emu: Any,
    function: str,
    dag_id: str,
    mode: str,
    action: str,
    run_seconds: float,
    stop_wait: float = 60.0,
) -> float:
    """R4: a user marks the waiting task failed, or clears it, through the REST API; its FC task must end
    Stopped by a StopAsyncTask request (``stop_wait`` is far below the function's own run). Returns the seconds
    from the REST call to the emulator's Stopped event. A cleared task runs again with a new FC task."""
    import uuid

    run_id = f"r4-{mode}-{action}-{uuid.uuid4().hex[:8]}"
    ti_state = "running" if mode == "blocking" else "deferred"
    cluster.trigger(dag_id, run_id, {"seconds": run_seconds})
    task = running_fc_task(cluster, emu, function, dag_id, run_id, ti_state)
    stops_before = stop_requests(emu)

    t0 = time.time()
    if action == "mark_failed":
        cluster.mark_failed(dag_id, run_id)
    else:
        cluster.clear(dag_id, run_id)
    cluster.wait_for(
        f"FC task {task.task_id} Stopped", lambda: task.status is TaskStatus.STOPPED, stop_wait, every=0.05
    )
    stopped_at = event_time(task, TaskStatus.STOPPED)
    assert stopped_at is not None
    assert stop_requests(emu) > stops_before, "the FC task ended Stopped without a StopAsyncTask request"
    assert emu.stats()["executions"].get(task.task_id) == 1

    if action == "clear":
        # The cleared task instance runs again: a new try invokes a new FC task (the stopped one is not reused).
        again = running_fc_task(cluster, emu, function, dag_id, run_id, ti_state, 1)
        assert again.task_id != task.task_id
        assert fc_tasks(emu, function, dag_id, run_id)[0].task_id == task.task_id
    else:
        assert cluster.ti_state(dag_id, run_id) == "failed"
    settle(cluster, emu, function, dag_id, run_id, stop_wait)
    return stopped_at - t0


# -- task process steps: from a step's log lines to its supervisor's "Workload finished" --------------------------
_FINISHED = re.compile(r"^(\S+) .*Workload finished.*final_state=(\w+).*workload_id=(\S+)")


@dataclass(frozen=True)
class TaskStep:
    """One task process's step (the first run, or a resumed one) of a deployment, in epoch seconds."""

    ti_id: str
    paused: float | None  # "Pausing task as DEFERRED" (None: the step did not defer)
    last_line: float  # its last "::endgroup::": the task process's last line
    finished: float  # the supervisor's "Workload finished" of that process
    state: str  # the final_state that line reports


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def task_steps(home: Path, dag_id: str = "*") -> list[TaskStep]:
    """Every step of ``dag_id``'s task logs matched with its supervisor's "Workload finished" (any ``proc-*.log``:
    Celery workers, or the scheduler's LocalExecutor): the first such line of that task instance at or after the
    step's last line. A step starts at "::group::Pre Execute"; a step killed before its last line has none."""
    steps: list[tuple[str, float | None, float]] = []
    for path in (home / "logs").glob(f"dag_id={dag_id}/**/attempt=*.log"):
        ti_id, paused, last = "", None, 0.0
        for line in path.read_text(errors="replace").splitlines():
            if '"::group::Pre Execute"' in line:
                if last:
                    steps.append((ti_id, paused, last))
                paused, last = None, 0.0
            elif "Pausing task as DEFERRED" in line:
                rec = json.loads(line)
                ti_id, paused = rec["ti_id"], _epoch(rec["timestamp"])
            elif '"::endgroup::"' in line:
                rec = json.loads(line)
                ti_id, last = rec["ti_id"], _epoch(rec["timestamp"])
        if last:
            steps.append((ti_id, paused, last))
    finished: dict[str, list[tuple[float, str]]] = {}
    for log in home.glob("proc-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if match := _FINISHED.match(line):
                finished.setdefault(match.group(3), []).append((_epoch(match.group(1)), match.group(2)))
    out = []
    for ti_id, paused, last in sorted(steps, key=lambda step: step[2]):
        later = sorted(f for f in finished.get(ti_id, []) if f[0] >= last)
        if later:
            finished[ti_id].remove(later[0])  # each "Workload finished" ends one step
            out.append(TaskStep(ti_id, paused, last, later[0][0], later[0][1]))
    return out
