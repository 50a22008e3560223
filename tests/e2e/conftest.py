"""End-to-end fixtures: a real Airflow metadata DB (SQLite), the emulator as the FC connection, dag.test()."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def reset_airflow_db() -> None:
    """A fresh metadata DB; the root logger is kept (Airflow 2's migrations reconfigure it: level WARN)."""
    import logging

    from airflow.utils import db

    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    db.resetdb()
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """A fresh metadata DB, once per session."""
    reset_airflow_db()


@pytest.fixture
def fc_conn(emu: Any, airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The emulator as connection ``fc_default`` (AIRFLOW_CONN_FC_DEFAULT holds its JSON)."""
    monkeypatch.setenv("AIRFLOW_CONN_FC_DEFAULT", emu.connection_json())
    yield emu


def dag_bag(**kwargs: Any) -> Any:
    """A ``DagBag`` (``airflow.dag_processing.dagbag`` on 3.1+, ``airflow.models.dagbag`` before)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2.x and 3.0
        from airflow.models.dagbag import DagBag
    return DagBag(**kwargs)


def run_dag(dag: Any, logical_date: Any = None) -> Any:
    """Serialize a DAG built in a test, then run it with ``dag.test()`` (triggers run in-process).

    With ``logical_date``, a second call deletes the first call's DAG run and creates it again under the same run
    id (what ``airflow dags test DAG DATE`` does).

    The version-dependent test helpers live here: 3.1+ syncs through ``sync_bag_to_db``, 3.0 through
    ``DagBag.sync_to_db(bundle)``; on 2.x ``dag.sync_to_db()`` is all ``dag.test()`` needs.
    """
    try:
        from airflow.dag_processing.bundles.manager import DagBundlesManager
    except ImportError:  # Airflow 2: no bundles
        dag.sync_to_db()
        return _airflow2_dag_test(dag, logical_date)
    DagBundlesManager().sync_bundles_to_db()  # the "dags-folder" bundle row the DAG refers to
    bag = dag_bag(collect_dags=False)
    bag.bag_dag(dag)
    try:
        from airflow.dag_processing.dagbag import sync_bag_to_db
    except ImportError:  # Airflow 3.0: the bag syncs itself; a DAG built in a test has no relative path yet
        dag.relative_fileloc = dag.relative_fileloc or dag.fileloc
        bag.sync_to_db("dags-folder", None)
    else:
        sync_bag_to_db(bag, bundle_name="dags-folder", bundle_version=None)
    if logical_date is None:
        return dag.test()
    return dag.test(logical_date=logical_date, run_after=logical_date)  # run_after names the run id on 3.x


def _airflow2_dag_test(dag: Any, logical_date: Any = None) -> Any:
    """``dag.test()`` on 2.x, where execution_timeout's AirflowTaskTimeout (a BaseException there) escaped it.

    The task instance has already been failed (up for retry) when it propagates; like any other task error in
    ``dag.test()`` it is logged and the run goes on.
    """
    from unittest import mock

    import airflow.models.dag as dag_module
    from airflow.exceptions import AirflowTaskTimeout

    run_task = dag_module._run_task

    def run_task_past_timeouts(**kwargs: Any) -> None:
        try:
            run_task(**kwargs)
        except AirflowTaskTimeout:
            dag_module.log.exception("Task timed out; ti=%s", kwargs.get("ti"))

    with mock.patch.object(dag_module, "_run_task", run_task_past_timeouts):
        return dag.test(execution_date=logical_date) if logical_date is not None else dag.test()


def task_instance(dr: Any, task_id: str) -> Any:
    return next(ti for ti in dr.get_task_instances() if ti.task_id == task_id)
