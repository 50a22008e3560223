"""Reliability fixtures: the session emulator as connection ``fc_default``; e2e's Airflow DB fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import airflow_db, fc_conn  # noqa: F401  (fixtures shared with the e2e tests)


@pytest.fixture
def conn(emu: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The session emulator as ``fc_default`` (no metadata DB needed: operators run with a minimal context)."""
    monkeypatch.setenv("AIRFLOW_CONN_FC_DEFAULT", emu.connection_json())
    yield emu
