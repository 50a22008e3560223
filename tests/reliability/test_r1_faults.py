"""R1 (quick): 40 invocations through the operators under injected faults; 200 run in `make reliability`."""

from __future__ import annotations

from tests.reliability.faults import run_r1


def test_40_invocations_under_faults_run_once_each_and_lose_nothing() -> None:
    run_r1(40, "rel_r1_quick")
