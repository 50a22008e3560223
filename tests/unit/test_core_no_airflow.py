"""The protocol core (and the emulator) import no Airflow: checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

_SCRIPT = """
import importlib, json, pkgutil, sys
pkg = importlib.import_module(sys.argv[1])
names = [pkg.__name__]
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
    names.append(info.name)
airflow = sorted(m for m in sys.modules if m.split(".")[0] == "airflow")
print(json.dumps({"imported": names, "airflow": airflow}))
"""


def _imports(package: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, package],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_core_imports_no_airflow() -> None:
    result = _imports("airflow_fc_async.core")
    assert {
        "airflow_fc_async.core.fc",
        "airflow_fc_async.core.mns",
        "airflow_fc_async.core.validation",
        "airflow_fc_async.core.http",
        "airflow_fc_async.core.transport",
    } <= set(result["imported"])
    assert result["airflow"] == []


def test_emulator_imports_no_airflow() -> None:
    result = _imports("airflow_fc_async.emulator")
    assert len(result["imported"]) > 1
    assert result["airflow"] == []


def test_core_does_not_import_aiohttp_until_an_async_client_sends() -> None:
    code = (
        "import sys, airflow_fc_async.core.fc, airflow_fc_async.core.mns; "
        "from airflow_fc_async.core.fc import AsyncFcClient; from airflow_fc_async.core.credentials import Credentials; "
        "AsyncFcClient('http://127.0.0.1:1', Credentials('a', 'b')); print('aiohttp' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
