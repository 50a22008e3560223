"""The main job (`make demo`): the example DAGs against the emulator, on an embedded SQLite Airflow.

Starts `fc-emulator` with example_dags/functions/s.yaml on a free port, runs every example DAG with
`airflow dags test`, prints each run's task states and XCom results, and stops the emulator. A DAG tagged
`expect:failed` is meant to fail (the seed scenario); the job exits non-zero only when a run ends otherwise than
its DAG expects.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DAGS = ROOT / "example_dags"
FUNCTIONS = DAGS / "functions" / "s.yaml"
WORK = ROOT / ".demo"


def start_emulator(log_path: Path) -> tuple[subprocess.Popen[str], str]:
    """The emulator process and the connection JSON it prints on its ready line."""
    cmd = [sys.executable, "-m", "airflow_fc_async.emulator", "--config", str(FUNCTIONS), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True, cwd=ROOT)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                raise SystemExit(f"fc-emulator exited with {proc.returncode}; see {log_path}")
            continue
        match = re.search(r"AIRFLOW_CONN_FC_DEFAULT='?(\{.*\})'?", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise SystemExit(f"fc-emulator printed no ready line within 60 s; see {log_path}")


def seed_history(conn_json: str) -> None:
    """Last night's batch, for the re-run example: four `nightly-` documents, two of them hit a transient outage."""
    from airflow_fc_async.core.credentials import Credentials
    from airflow_fc_async.core.fc import FcClient

    extra = json.loads(conn_json)["extra"]
    client = FcClient(extra["fc_endpoint"], Credentials(extra["access_key_id"], extra["access_key_secret"]))
    run = time.strftime("%Y%m%d%H%M%S")
    for i in range(4):
        doc = {"name": f"night-{i}", "text": "lorem ipsum dolor sit amet " * (i + 1)}
        if i % 2:
            doc["flaky"] = run
        client.invoke_async("batch-job", doc, task_id=f"nightly-{run}-{i}")
    client.close()
    print("seeded last night's batch: 4 `nightly-` tasks of batch-job, 2 of them will fail (transient)")


def airflow_env(conn_json: str) -> dict[str, str]:
    home = WORK / "airflow"
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        AIRFLOW_CONN_FC_DEFAULT=conn_json,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return env


def airflow(env: dict[str, str], *args: str, log: Path | None = None, timeout: float = 300) -> int:
    out = log.open("w") if log else subprocess.DEVNULL
    exe = str(Path(sys.executable).with_name("airflow"))
    return subprocess.run(
        [exe, *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
    ).returncode


def example_dags(env: dict[str, str]) -> list[tuple[str, str]]:
    """(dag_id, expected state) of every example DAG, read with a DagBag in a child process (its env)."""
    code = (
        "import json\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        "bag = DagBag()\n"
        "assert not bag.import_errors, bag.import_errors\n"
        "print(json.dumps([[d, 'failed' if 'expect:failed' in (bag.dags[d].tags or []) else 'success']"
        " for d in sorted(bag.dags)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"the example DAGs do not import:\n{out.stderr[-3000:]}")
    return [tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]  # type: ignore[misc]


def summarise(env: dict[str, str]) -> list[dict[str, Any]]:
    """Task states and XCom return values of every run, read from the metadata DB in a child process."""
    code = r"""
import json
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
out = []
with create_session() as s:
    for dr in s.query(DagRun).order_by(DagRun.dag_id):
        tis = s.query(TaskInstance).filter_by(dag_id=dr.dag_id, run_id=dr.run_id).order_by(TaskInstance.task_id, TaskInstance.map_index)
        tasks = []
        for ti in tis:
            xc = s.query(XComModel).filter_by(dag_id=dr.dag_id, run_id=dr.run_id, task_id=ti.task_id, map_index=ti.map_index, key="return_value").first()
            tasks.append({"task": ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""), "state": str(ti.state), "try": ti.try_number, "xcom": xc.value if xc else None})
        out.append({"dag_id": dr.dag_id, "state": str(dr.state), "tasks": tasks})
print(json.dumps(out, default=str))
"""
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        print(res.stderr[-2000:], file=sys.stderr)
        return []
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def failure_reason(dag_id: str) -> str | None:
    """The last Airflow exception message in a DAG's log: why its failed task failed."""
    log = WORK / "logs" / f"{dag_id}.log"
    lines = (
        [ln for ln in log.read_text(errors="replace").splitlines() if "Exception: " in ln]
        if log.exists()
        else []
    )
    return lines[-1].split("Exception: ", 1)[1] if lines else None


def short(value: Any, limit: int = 110) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dag", action="append", help="run only this DAG id (repeatable)")
    args = parser.parse_args(argv)

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "logs").mkdir(parents=True)
    started = time.monotonic()
    emulator, conn_json = start_emulator(WORK / "logs" / "emulator.log")
    try:
        endpoint = json.loads(conn_json)["extra"]["fc_endpoint"]
        print(f"fc-emulator at {endpoint} with {FUNCTIONS.relative_to(ROOT)}")
        seed_history(conn_json)
        env = airflow_env(conn_json)
        if airflow(env, "db", "migrate", log=WORK / "logs" / "db-migrate.log"):
            raise SystemExit(f"airflow db migrate failed; see {WORK / 'logs' / 'db-migrate.log'}")
        dags = [d for d in example_dags(env) if not args.dag or d[0] in args.dag]
        expected = dict(dags)
        for dag_id, want in dags:
            t0 = time.monotonic()
            rc = airflow(env, "dags", "test", dag_id, log=WORK / "logs" / f"{dag_id}.log")
            print(f"  ran {dag_id:<32} exit {rc} in {time.monotonic() - t0:5.1f} s (expected: {want})")
        runs = summarise(env)
    finally:
        emulator.send_signal(signal.SIGTERM)
        try:
            emulator.wait(timeout=15)
        except subprocess.TimeoutExpired:
            emulator.kill()

    ok = True
    print("\nSummary")
    for run in runs:
        want = expected.get(run["dag_id"], "success")
        good = run["state"] == want
        ok &= good
        print(f"{'ok ' if good else 'BAD'} {run['dag_id']}: {run['state']} (expected {want})")
        for t in run["tasks"]:
            xcom = f"  xcom={short(t['xcom'])}" if t["xcom"] is not None else ""
            print(f"      {t['task']:<28} {t['state']:<10} try {t['try']}{xcom}")
        if run["state"] == "failed":
            print(f"      why: {short(failure_reason(run['dag_id']) or 'see the log', 300)}")
    missing = set(expected) - {r["dag_id"] for r in runs}
    for dag_id in sorted(missing):
        ok = False
        print(f"BAD {dag_id}: no run recorded; see {WORK / 'logs' / (dag_id + '.log')}")
    print(f"\n{len(runs)} runs in {time.monotonic() - started:.0f} s; task logs in {WORK / 'logs'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
