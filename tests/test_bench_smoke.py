"""Each benchmark at its smallest scale writes its JSON with the figures, ratios, machine and versions.

Only the shape of the results is checked, never a speed (``make bench`` runs the full sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE = [
    ("p1_trigger_fleet", ["--scale", "0.005"]),
    ("p1_push", ["--scale", "0.005", "--drop", "0.5"]),
    ("p2_client_cost", ["--rounds", "2", "--calls", "5"]),
    ("p3_parse_cost", ["--rounds", "1", "--modules", "airflow_fc_async.triggers.mns"]),
    ("p4_shared_queue", ["--scale", "0.02", "--naive-limit", "2"]),
    ("p5_process_fleet", ["--scale", "0.04", "--trigger-mode", "deferred-core", "--timeout", "90"]),
]


def _run(name: str, args: list[str], out: Path) -> dict:
    env = dict(os.environ, FC_BENCH_RESULTS=str(out))
    env.pop("AIRFLOW_CONN_FC_DEFAULT", None)
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,  # generous: the load average here reaches 20+
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "written:" in proc.stdout  # the table was printed
    return json.loads((out / f"{name}.json").read_text())


def _common(result: dict, name: str) -> None:
    assert result["benchmark"] == name
    assert {"cores", "nproc", "python", "platform"} <= set(result["machine"])
    assert result["machine"]["nproc"] >= 1
    assert {"apache-airflow", "airflow-fc-async", "alibabacloud-fc20230330"} <= set(result["versions"])
    assert result["versions"]["airflow-fc-async"]


@pytest.mark.parametrize(("name", "args"), SMOKE, ids=[n for n, _ in SMOKE])
def test_benchmark_writes_its_result(name: str, args: list[str], tmp_path: Path) -> None:
    result = _run(name, args, tmp_path)
    _common(result, name)
    if name == "p1_trigger_fleet":
        for mode in ("trigger", "fixed_poll", "trigger_hog"):
            fig = result[mode]
            assert fig["statuses"] == {"success": result["tasks"]}
            for key in ("lag_p50_s", "lag_p99_s", "status_reads_per_task", "cpu_seconds", "peak_rss_mb"):
                assert fig[key] >= 0
            assert len(fig["load"]["load_at_start"]) == 3 and fig["cpu_hog"] == (mode == "trigger_hog")
            assert fig["loop_lag"]["samples"] >= 1 and fig["emulator_cpu_seconds"] >= 0
            assert "GetAsyncTask" in fig["server"]["latency_ms"]  # the server's own time per request
        assert set(result["load_at_phase_start"]) == {"trigger", "fixed_poll", "trigger_hog"}
        assert set(result["ratios"]) >= {"lag_p50", "lag_p99", "reads_per_task", "cpu_seconds", "peak_rss"}
        assert result["trigger"]["tasks_over_max_reads"] == 0  # the WaitPolicy bound holds by construction
    elif name == "p1_push":
        for mode in ("push", "push_drop"):
            fig = result[mode]
            assert fig["statuses"] == {"success": result["tasks"]}  # none missed, dropped records or not
            assert sum(s["tasks"] for s in fig["ended_by"].values()) == result["tasks"]
            assert set(fig["ended_by"]) <= {"destination_record", "status_poll"}
            assert fig["async_config_reads"] == 1  # read once per function per process
            assert len(fig["load"]["load_at_start"]) == 3
        assert result["push"]["records_dropped"] == 0 and result["push_drop"]["records_dropped"] >= 1
        assert set(result["goals_met"]) >= {"lag_p50_s<=0.1", "lag_p99_s<=0.5", "status_reads_per_task<=1.5"}
    elif name == "p2_client_cost":
        for call in ("invoke_async", "get_async_task"):
            fig = result["calls"][call]
            assert fig["ratio_per_round"]["n"] == 2
            assert fig["ours_cpu_s_per_call"]["median"] > 0 and fig["sdk_cpu_s_per_call"]["median"] > 0
    elif name == "p3_parse_cost":
        modules = result["modules"]
        assert result["baseline"] in modules and "airflow_fc_async.triggers.mns" in modules
        assert modules[result["baseline"]]["import_s"]["median"] > 0
        assert "ratio_to_baseline" in modules["all of ours"]
        assert result["bytecode"] == "cold" and "all of ours" in result["modules_cached"]  # both, by default
    elif name == "p5_process_fleet":
        fleet = result["fleet"]
        assert fleet["found"] == fleet["records"] == 10  # every record reached its waiter process
        assert fleet["foreign_deleted"] == 0 and fleet["records_left_in_queue"] == 0
        assert fleet["queue_holds_exactly_the_foreign"]
        assert fleet["requests_per_record"] <= fleet["formula_requests_per_record"]
        assert fleet["latency_p99_s"] >= fleet["latency_p50_s"] >= 0
    else:
        shared, naive = result["shared_receiver"], result["naive_waiters"]
        assert shared["found"] == shared["records"]  # every waiter got its own record
        assert shared["foreign_deleted"] == 0 and naive["foreign_deleted"] == 0
        assert shared["max_foreign_dequeue_count"] >= 1
        assert result["minimum_requests_per_record"] > 0
