"""Unit-test isolation from the rest of the session."""

from __future__ import annotations

import threading

import pytest

from airflow_fc_async.core.destination_receiver import stop_receivers


@pytest.fixture(autouse=True)
def _no_background_http() -> None:
    """Stop MNS receiver threads left by earlier end-to-end tests before a unit test patches HTTP.

    ``responses`` patches HTTP for the whole process: a receiver still polling in the background would show up
    in a unit test's recorded calls (and fail on the patched transport).
    """
    if any(t.name.startswith("mns-receiver-") for t in threading.enumerate()):
        stop_receivers(timeout=45)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("mns-receiver-") and t.is_alive()]
    assert not alive, f"receiver threads still running: {alive}"
