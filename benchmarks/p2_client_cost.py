"""P2 client cost: CPU per call of ``FcHook.invoke_async`` and ``FcHook.get_async_task`` against the official
``alibabacloud-fc20230330`` SDK doing the same calls to the same emulator (its own process).

Rounds alternate the two clients (which goes first alternates too); each round times ``--calls`` calls of one
client with ``time.process_time`` (this process only: the emulator's CPU is not counted). Figures: CPU per call
per round, median and spread, and the per-round ratio ours/SDK (its median is the headline figure).

``python -m benchmarks.p2_client_cost [--rounds 15 --calls 200]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks._common import print_table, spread, start_emulator, write_result

NAME = "p2_client_cost"
FUNCTION = "bench-echo"
GOAL = 0.7


def _clients(emu: Any) -> tuple[Any, Any]:
    os.environ["AIRFLOW_CONN_FC_DEFAULT"] = emu.connection_json
    from alibabacloud_fc20230330.client import Client as FcSdkClient
    from alibabacloud_tea_openapi import utils_models as openapi_models

    from airflow_fc_async.hooks.fc import FcHook

    extra = json.loads(emu.connection_json)["extra"]
    sdk = FcSdkClient(
        openapi_models.Config(
            endpoint=emu.endpoint.split("://", 1)[1],
            protocol="http",
            access_key_id=extra["access_key_id"],
            access_key_secret=extra["access_key_secret"],
            region_id=extra["region"],
        )
    )
    return FcHook(), sdk


def _calls(hook: Any, sdk: Any, task_id: str) -> dict[str, dict[str, Callable[[int], None]]]:
    from alibabacloud_fc20230330 import models as fc_models
    from darabonba.runtime import RuntimeOptions

    run = uuid.uuid4().hex[:8]
    body = b'{"sleep": 0}'
    payload = {"sleep": 0}

    def ours_invoke(i: int) -> None:
        hook.invoke_async(FUNCTION, payload, task_id=f"o-{run}-{i}")

    def client_invoke(i: int) -> None:  # the same call without the hook's INFO line (diagnosis)
        hook.get_conn().invoke_async(FUNCTION, payload, task_id=f"c-{run}-{i}")

    def sdk_invoke(i: int) -> None:
        headers = fc_models.InvokeFunctionHeaders(
            x_fc_invocation_type="Async", x_fc_async_task_id=f"s-{run}-{i}"
        )
        reply = sdk.invoke_function_with_options(
            FUNCTION,
            fc_models.InvokeFunctionRequest(body=body, qualifier="LATEST"),
            headers,
            RuntimeOptions(),
        )
        assert reply.status_code == 202

    def ours_get(i: int) -> None:
        assert hook.get_async_task(FUNCTION, task_id).status.value == "Succeeded"

    def sdk_get(i: int) -> None:
        reply = sdk.get_async_task(FUNCTION, task_id, fc_models.GetAsyncTaskRequest(qualifier="LATEST"))
        assert reply.body.status == "Succeeded"

    return {
        "invoke_async": {"ours": ours_invoke, "sdk": sdk_invoke},
        "get_async_task": {"ours": ours_get, "sdk": sdk_get},
        "invoke_async_no_log_line": {"ours": client_invoke, "sdk": sdk_invoke},
    }


def _time(fn: Callable[[int], None], start: int, calls: int) -> float:
    cpu0 = time.process_time()
    for i in range(start, start + calls):
        fn(i)
    return (time.process_time() - cpu0) / calls


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p2_client_cost", description=__doc__)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=200, help="calls per client per round")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    import logging

    with start_emulator("--max-instances", "4") as emu:
        emu.deploy(
            FUNCTION,
            runtime="emulator-sleep",
            source="",
            instanceConcurrency=50,
            asyncInvokeConfig={"asyncTask": True},
        )
        hook, sdk = _clients(emu)
        logging.getLogger("airflow.task.hooks").setLevel(logging.WARNING)  # the same silence for both
        task_id = hook.invoke_async(FUNCTION, {"sleep": 0}).task_id
        deadline = time.monotonic() + 10
        while hook.get_async_task(FUNCTION, task_id).status.value != "Succeeded":
            assert time.monotonic() < deadline, "the emulator did not run the task"
            time.sleep(0.05)
        calls = _calls(hook, sdk, task_id)
        per_call: dict[str, dict[str, list[float]]] = {c: {"ours": [], "sdk": []} for c in calls}
        ratios: dict[str, list[float]] = {c: [] for c in calls}
        counter = 0
        for pair in calls.values():  # warm-up: connections, imports, caches
            for fn in pair.values():
                _time(fn, counter, 20)
                counter += 20
        for r in range(args.rounds):
            for call, pair in calls.items():
                order = ["ours", "sdk"] if r % 2 == 0 else ["sdk", "ours"]
                got = {}
                for who in order:
                    got[who] = _time(pair[who], counter, args.calls)
                    counter += args.calls
                    per_call[call][who].append(got[who])
                ratios[call].append(got["ours"] / got["sdk"])
        hook.close()
    result: dict[str, Any] = {
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "goal_ratio": GOAL,
        "calls": {},
    }
    rows = []
    for call in calls:
        ours, sdk_s, ratio = (
            spread(per_call[call]["ours"]),
            spread(per_call[call]["sdk"]),
            spread(ratios[call]),
        )
        result["calls"][call] = {
            "ours_cpu_s_per_call": ours,
            "sdk_cpu_s_per_call": sdk_s,
            "ratio_per_round": ratio,
            "ratio_of_medians": ours["median"] / sdk_s["median"],
            "goal_met": ratio["median"] <= GOAL,
        }
        rows.append(
            (
                call,
                ours["median"] * 1e6,
                sdk_s["median"] * 1e6,
                ratio["median"],
                f"{ratio['min']:.2f}-{ratio['max']:.2f}",
                statistics.pstdev(ratios[call]),
            )
        )
    path = write_result(NAME, result)
    print_table(
        f"P2 client CPU per call ({args.rounds} rounds x {args.calls} calls, emulator in its own process)",
        ["call", "FcHook us", "SDK us", "ratio median", "ratio range", "ratio stdev"],
        rows,
    )
    print(f"goal: ratio <= {GOAL}\nwritten: {path}")
    return result


if __name__ == "__main__":
    main()
