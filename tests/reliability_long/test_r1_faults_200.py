"""R1 (long): 200 invocations through the operators under injected faults (`make reliability`)."""

from __future__ import annotations

import pytest

from tests.reliability.faults import run_r1


@pytest.mark.timeout(900)
def test_200_invocations_under_faults_run_once_each_and_lose_nothing() -> None:
    run_r1(200, "rel_r1_long")
