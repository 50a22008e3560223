"""``make ui``: the example DAGs in a real Airflow UI, against fc-emulator, until Ctrl-C.

Starts the emulator (example_dags/functions/s.yaml) and api-server, scheduler, dag-processor and triggerer on
127.0.0.1 (SQLite, LocalExecutor; the log servers are not started), through the same deployment harness as the
long reliability tests, then prints the URL and the login. Ctrl-C stops every process it started.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airflow_fc_async.emulator import Emulator  # noqa: E402
from tests.reliability_long.conftest import PROCESSES, AirflowCluster, airflow_env, free_port  # noqa: E402

USER, PASSWORD = "admin", "admin"


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="fc-ui-airflow-"))
    with Emulator(configs=[ROOT / "example_dags" / "functions" / "s.yaml"], port=0) as emu:
        port = free_port()
        env = airflow_env(home, ROOT / "example_dags", port, emu.connection_json())
        del env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"]  # a login page, as a user sees it
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = f"{USER}:admin"
        passwords = home / "passwords.json"
        passwords.write_text(f'{{"{USER}": "{PASSWORD}"}}')
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
        cluster = AirflowCluster(home, env, port)
        print(f"fc-emulator at {emu.endpoint}; migrating the Airflow DB in {home} ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            cwd=home,
            check=True,
            capture_output=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        try:
            for name in PROCESSES:
                cluster.start(name)
            end = time.monotonic() + 300
            while not _healthy(cluster) and time.monotonic() < end:
                time.sleep(1)
            print(
                f"\nAirflow UI: {cluster.base}  (login {USER} / {PASSWORD}); the FC page: {cluster.base}/plugin/fc-async-tasks"
                f"\nConsole of the emulator: {emu.endpoint}/_console/   Logs: {home}/proc-*.log\nCtrl-C stops all.",
                flush=True,
            )
            while all(p.poll() is None for p in cluster.procs.values()):
                time.sleep(1)
            print("an Airflow process exited:\n" + cluster.tails(), flush=True)
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
        finally:
            cluster.stop_all()
            shutil.rmtree(home, ignore_errors=True)


def _healthy(cluster: AirflowCluster) -> bool:
    try:
        return cluster.healthy()
    except Exception:
        return False


if __name__ == "__main__":
    main()
