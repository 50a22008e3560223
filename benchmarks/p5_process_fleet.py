"""P5 process fleet (issue 14): destination records when every waiter lives in its own OS process.

50 blocking waiter processes (one record each, the worker path) and 2 triggerer-like processes each holding 100
deferred waiters (``FcDestinationTrigger.run()`` on one loop, then the worker's delete by receipt handle), on one
queue with 2000 foreign messages (alerts, opaque bytes, JSON events, records of another function). Half the
records arrive before their waiters register. Figures: records delivered (must be all), MNS requests per record
against the design's formula (``benchmarks._record_fleet.formula``: ``(P + 1) * (1 + 1/16) + 1`` per record
plus ``1 + ceil(F / 16)`` per receiving process and one empty long poll per 20 s it lives, ``P`` processes, ``F``
foreign messages), the largest DequeueCount
of a foreign message, p50/p99 time from a record's arrival in the queue to its task having it, and what is left
in the queue (exactly the foreign messages). The emulator runs in this process; the waiters talk to it over HTTP.

``python -m benchmarks.p5_process_fleet [--scale 1] [--trigger-mode deferred|deferred-core]``
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from benchmarks._common import print_table, write_result
from benchmarks._record_fleet import run_fleet

NAME = "p5_process_fleet"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p5_process_fleet", description=__doc__)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument(
        "--trigger-mode",
        default="deferred",
        choices=["deferred", "deferred-core"],
        help="deferred: the real trigger (imports Airflow); deferred-core: its two calls only",
    )
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    blocking = max(1, round(50 * args.scale))
    per_triggerer = max(2, round(100 * args.scale))
    foreign = max(16, round(2000 * args.scale))
    tag = uuid.uuid4().hex[:6]
    groups: list[tuple[str, list[str]]] = [("blocking", [f"b-{tag}-{i:03d}"]) for i in range(blocking)]
    groups += [(args.trigger_mode, [f"t{n}-{tag}-{i:03d}" for i in range(per_triggerer)]) for n in range(2)]
    from airflow_fc_async.emulator import Emulator

    with Emulator(port=0) as emu:
        fig = run_fleet(emu, groups, foreign=foreign, timeout=args.timeout)
    result = {"scale": args.scale, "trigger_mode": args.trigger_mode, "fleet": fig}
    path = write_result(NAME, result)
    keys = [
        ("processes (blocking + triggerer-like)", "processes"),
        ("records delivered", "found"),
        ("records", "records"),
        ("MNS requests per record", "requests_per_record"),
        ("formula bound per record", "formula_requests_per_record"),
        ("max foreign DequeueCount", "max_foreign_dequeue_count"),
        ("foreign deleted", "foreign_deleted"),
        ("records left in the queue", "records_left_in_queue"),
        ("arrival -> task p50 (s)", "latency_p50_s"),
        ("arrival -> task p99 (s)", "latency_p99_s"),
        ("seconds", "seconds"),
    ]
    print_table(
        f"P5 process fleet: {blocking} blocking processes, 2 x {per_triggerer} deferred, {foreign} foreign",
        ["figure", "value"],
        [(label, fig[k]) for label, k in keys],
    )
    print(f"written: {path}")
    return result


if __name__ == "__main__":
    main()
