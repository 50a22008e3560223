"""A real Airflow deployment for the long reliability tests, driven from pytest.

``airflow_cluster`` (module scope) starts ``airflow api-server``, ``scheduler``, ``dag-processor`` and
``triggerer`` (tests/airflow_processes.py): LocalExecutor on SQLite (Airflow 3 accepts that pair: SequentialExecutor
is gone and LocalExecutor is the default executor, ``airflow standalone`` runs the same set). The DAGs come from
``dags/``; the FC connection points at ``rel_emulator``, an :class:`Emulator` serving ``functions/s.yaml`` in this
test process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_processes import ROOT, AirflowCluster, deployment

HERE = Path(__file__).resolve().parent
FUNCTION = "long-wait"
PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")


@pytest.fixture(scope="module")
def rel_emulator() -> Iterator[Any]:
    """The FC 3.0 + MNS emulator the Airflow processes call over HTTP (function ``long-wait``, and the example
    functions for the example DAGs in ``dags/``)."""
    from airflow_fc_async.emulator import Emulator

    examples = ROOT / "example_dags" / "functions" / "s.yaml"
    with Emulator(configs=[HERE / "functions" / "s.yaml", examples], port=0) as emu:
        yield emu


@pytest.fixture(scope="module")
def airflow_cluster(rel_emulator: Any) -> Iterator[AirflowCluster]:
    """api-server, scheduler, dag-processor and triggerer of one temporary deployment, healthy, DAGs parsed."""
    with deployment(
        [HERE / "dags"],
        rel_emulator.connection_json(),
        PROCESSES,
        ("rel_fc_blocking", "rel_fc_deferrable"),
    ) as cluster:
        yield cluster
