"""Shared fixtures. Airflow's environment is set here, before anything imports airflow."""

from __future__ import annotations

import os
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="fc-async-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "example_dags"))
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AIRFLOW_HOME}/airflow.db")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
# One fernet key for the whole session: every process and every config reload encrypts trigger kwargs alike (the
# example dead-letter handler's asset-watcher trigger row, written by one test, is decrypted by later DAG syncs).
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", "ZmMtYXN5bmMtdGVzdHMtZml4ZWQtZmVybmV0LWtleSE=")
if version("apache-airflow").startswith(
    "2."
):  # 2.x's unit-test config says LocalExecutor, which refuses SQLite
    os.environ.setdefault("AIRFLOW__CORE__EXECUTOR", "SequentialExecutor")

from hypothesis import HealthCheck, settings  # noqa: E402

# The machines are small and shared: never fail a property test on the time it took.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


# --- emulator fixtures (engineer B) -------------------------------------------------------------------------------
import pytest  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def emulator():
    """One FC 3.0 + MNS emulator for the session, serving tests/fixtures/functions/s.yaml on a free port.

    Functions: echo (returns its event), sleeper (sleeps event["seconds"], prints numbered lines), failer (raises,
    1 retry), timeout-fn (1 s timeout, 1 retry, MNS destination fc-test-timeout). Retries wait 0.2 s.
    """
    from airflow_fc_async.emulator import Emulator

    with Emulator(configs=[FIXTURES / "functions" / "s.yaml"], port=0, retry_delay=0.2) as emu:
        yield emu


@pytest.fixture
def emu(emulator):
    """The session emulator with faults cleared before and after the test (stats are left alone: read deltas)."""
    emulator.clear_faults()
    yield emulator
    emulator.clear_faults()
