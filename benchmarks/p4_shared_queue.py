"""P4 shared queue (issue 6): MNS requests per destination record and the largest DequeueCount of a foreign
message, for the one-receiver-per-queue dispatch (core/destination_receiver.py) against the minimum
(records / 16: batch receives only) and a naive baseline where each waiter receives batches and hands back every
message that is not its own (ChangeMessageVisibility 1 s, the least MNS allows) until it finds its record.

The emulator runs in this process here: the figures are request counts and DequeueCounts read from its store,
not CPU. ``python -m benchmarks.p4_shared_queue [--scale 1]`` (1: 200 waiters beside 2000 foreign messages).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._common import print_table, write_result

NAME = "p4_shared_queue"
NAIVE_LIMIT_S = 60.0


def record_body(request_id: str) -> str:
    return json.dumps(
        {
            "timestamp": int(time.time() * 1000),
            "requestContext": {
                "requestId": request_id,
                "functionArn": "acs:fc:cn-hangzhou:123:functions/bench",
                "condition": "InvocationError",
                "approximateInvokeCount": 1,
            },
            "requestPayload": "{}",
            "responseContext": {"statusCode": 200, "functionError": "InvocationError"},
            "responsePayload": "{}",
        }
    )


def foreign_bodies(n: int) -> list[str]:
    kinds = [
        lambda i: f"alert #{i}: disk full",
        lambda i: base64.b64encode(f"opaque {i}".encode()).decode(),
        lambda i: record_body(f"other-dag-{i}"),
        lambda i: json.dumps({"event": "order", "id": i}),
    ]
    return [kinds[i % 4](i) for i in range(n)]


async def _shared(client: Any, queue: str, rid: str, limit: float) -> bool:
    from airflow_fc_async.core import destination_receiver as dr

    claim = await dr.aclaim_destination_record(client, queue, rid, timeout=limit)
    if claim is None:
        return False
    await dr.aack_destination_record(client, claim)
    return True


async def _naive(client: Any, queue: str, rid: str, limit: float) -> bool:
    """Receive a batch, keep ours (delete it), hand back the rest at once, repeat."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        messages = await client.receive_messages(queue, max_messages=16, wait_seconds=1)
        found = False
        for m in messages:
            if not found and rid in m.body:
                await client.delete_message(queue, m.receipt_handle)
                found = True
            else:
                await client.change_message_visibility(queue, m.receipt_handle, 1)
        if found:
            return True
    return False


Waiter = Callable[[Any, str, str, float], Awaitable[bool]]


async def run_mode(emu: Any, waiter: Waiter, foreign: int, waiters: int, limit: float) -> dict[str, Any]:
    from airflow_fc_async.core import destination_receiver as dr
    from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient

    dr.reset_receivers()
    queue = f"p4-{uuid.uuid4().hex[:10]}"
    with MnsClient(emu.endpoint, emu.credentials) as sync:
        sync.create_queue(queue)
        foreign_ids = set(sync.batch_send_messages(queue, foreign_bodies(foreign)))
    rids = [f"req-{i:04d}-{uuid.uuid4().hex[:6]}" for i in range(waiters)]
    emu.reset_stats()
    client = AsyncMnsClient(emu.endpoint, emu.credentials)
    started = time.monotonic()
    try:
        tasks = [asyncio.create_task(waiter(client, queue, rid, limit)) for rid in rids]
        await asyncio.sleep(0.2)
        bodies = [record_body(r) for r in rids]
        random.Random(7).shuffle(bodies)
        await client.batch_send_messages(queue, bodies)
        found = await asyncio.gather(*tasks)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.5)
    finally:
        await client.aclose()
    paths = emu.stats()["paths"]
    requests = {k: v for k, v in paths.items() if f"/queues/{queue}" in k}
    send = sum(v for k, v in requests.items() if k.startswith("POST"))  # the benchmark's own sends
    store = emu.queues.get(queue)
    counts = [m.dequeue_count for mid, m in store.messages.items() if mid in foreign_ids]
    total = sum(requests.values()) - send
    return {
        "records": waiters,
        "foreign": foreign,
        "found": sum(found),
        "seconds": elapsed,
        "mns_requests": total,
        "requests_by_kind": requests,
        "requests_per_record": total / waiters,
        "max_foreign_dequeue_count": max(counts, default=0),
        "foreign_deleted": len(foreign_ids) - len(counts),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p4_shared_queue", description=__doc__)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument(
        "--naive-limit", type=float, default=None, help="seconds the naive waiters get (default 60)"
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    foreign, waiters = max(16, round(2000 * args.scale)), max(2, round(200 * args.scale))
    limit = args.naive_limit or NAIVE_LIMIT_S
    from airflow_fc_async.emulator import Emulator

    with Emulator(port=0) as emu:
        shared = asyncio.run(run_mode(emu, _shared, foreign, waiters, limit))
        naive = asyncio.run(run_mode(emu, _naive, foreign, waiters, limit))
    minimum = math.ceil(waiters / 16) / waiters  # records / 16 batch receives, per record
    result = {
        "scale": args.scale,
        "minimum_requests_per_record": minimum,
        "shared_receiver": shared,
        "naive_waiters": naive,
        "ratios": {
            "shared_requests_per_record_to_minimum": shared["requests_per_record"] / minimum,
            "naive_requests_per_record_to_minimum": naive["requests_per_record"] / minimum,
            "shared_to_naive_requests": shared["mns_requests"] / max(1, naive["mns_requests"]),
        },
    }
    path = write_result(NAME, result)
    keys = [
        ("records found", "found"),
        ("seconds", "seconds"),
        ("MNS requests", "mns_requests"),
        ("requests / record", "requests_per_record"),
        ("max foreign DequeueCount", "max_foreign_dequeue_count"),
        ("foreign deleted", "foreign_deleted"),
    ]
    print_table(
        f"P4 shared queue: {waiters} waiters, {foreign} foreign messages (minimum {minimum:.3g} requests/record)",
        ["figure", "shared receiver", f"naive (cap {limit:g} s)"],
        [(label, shared[k], naive[k]) for label, k in keys],
    )
    print(f"written: {path}")
    return result


if __name__ == "__main__":
    main()
