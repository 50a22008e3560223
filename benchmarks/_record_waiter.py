"""One waiter process of the cross-process destination tests and of P5 (run as ``python -m``).

``blocking``: one thread per request id waits through ``core.destination_receiver.fetch_destination_record``
(what ``MnsHook.wait_for_destination_record`` calls in a blocking ``FcInvokeAsyncOperator``'s worker process; no
Airflow import, which costs seconds of CPU per process on a small machine). ``deferred``: a triggerer-like
process runs one ``FcDestinationTrigger.run()`` per request id on one asyncio loop (so they share this process's
receiver), then deletes each record's message by its receipt handle as the worker's ``execute_complete`` does.
``deferred-core``: the same two calls the trigger and the worker make (``aclaim`` / ``aack``), without Airflow.
``die``: claims its record through a trigger and then waits to be killed (a triggerer killed in flight).

The connection comes from ``AIRFLOW_CONN_FC_DEFAULT`` (Airflow modes) or ``FLEET_ENDPOINT``, ``FLEET_KEY_ID``,
``FLEET_KEY_SECRET`` (core modes). Writes ``{"ready_at", "found": {rid: epoch or None},
"deleted": {rid: bool}, "stats": receiver counters}`` to ``out`` (JSON). ``ready`` (a file) appears once the
process imported everything, just before its waiters register.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _credentials() -> tuple[str, Any]:
    from airflow_fc_async.core.credentials import Credentials

    env = os.environ
    return env["FLEET_ENDPOINT"], Credentials(env["FLEET_KEY_ID"], env["FLEET_KEY_SECRET"])


def _blocking(args: argparse.Namespace, found: dict[str, Any], deleted: dict[str, bool]) -> None:
    from airflow_fc_async.core.destination_receiver import fetch_destination_record
    from airflow_fc_async.core.mns import MnsClient

    endpoint, creds = _credentials()

    def wait(rid: str) -> None:
        def store(_record: Any) -> None:
            found[rid] = time.time()  # "the task has it": before its message is deleted

        with MnsClient(endpoint, creds) as client:
            rec = fetch_destination_record(
                client,
                args.queue,
                rid,
                wait_seconds=args.timeout,
                before_delete=store,
                function_name=args.function,
            )
        deleted[rid] = rec is not None

    threads = [threading.Thread(target=wait, args=(rid,)) for rid in args.request_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


async def _deferred_core(args: argparse.Namespace, found: dict[str, Any], deleted: dict[str, bool]) -> None:
    from airflow_fc_async.core import destination_receiver as dr
    from airflow_fc_async.core.mns import AsyncMnsClient

    endpoint, creds = _credentials()
    client = AsyncMnsClient(endpoint, creds)

    async def one(rid: str) -> None:
        claim = await dr.aclaim_destination_record(
            client, args.queue, rid, timeout=args.timeout, hold_seconds=args.hold, function_name=args.function
        )
        if claim is not None:
            found[rid] = time.time()
            deleted[rid] = await dr.aack_destination_record(client, claim)

    await asyncio.gather(*(one(rid) for rid in args.request_ids))
    await client.aclose()


async def _deferred(args: argparse.Namespace, found: dict[str, Any], deleted: dict[str, bool]) -> None:
    from airflow_fc_async.core.destination_receiver import ClaimedRecord
    from airflow_fc_async.hooks.mns import MnsHook
    from airflow_fc_async.triggers.mns import FcDestinationTrigger

    hook = MnsHook()

    async def one(rid: str) -> None:
        trigger = FcDestinationTrigger(
            queue_name=args.queue,
            request_id=rid,
            timeout_at=time.time() + args.timeout,
            hold_seconds=args.hold,
            function_name=args.function,
        )
        async for event in trigger.run():
            payload = event.payload
            if payload["status"] == "success":
                found[rid] = time.time()  # the event is the task's copy
                if args.mode == "die":
                    Path(args.out).with_suffix(".claimed").write_text(rid)
                    await asyncio.sleep(3600)  # killed here, before the worker's delete
                deleted[rid] = await hook.aack_destination_record(ClaimedRecord.from_event(payload))
            break
        await trigger.cleanup()

    await asyncio.gather(*(one(rid) for rid in args.request_ids))
    await hook.aclose()


def command(
    mode: str,
    request_ids: list[str],
    *,
    queue: str,
    function: str,
    out: Path,
    ready: Path,
    timeout: float,
    hold: int,
) -> list[str]:
    """The command line of one waiter process (the arguments :func:`main` reads)."""
    return [
        sys.executable,
        "-m",
        "benchmarks._record_waiter",
        mode,
        f"--queue={queue}",
        f"--function={function}",
        f"--out={out}",
        f"--ready={ready}",
        f"--timeout={timeout}",
        f"--hold={hold}",
        *request_ids,
    ]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["blocking", "deferred", "deferred-core", "die"])
    p.add_argument("--queue", required=True)
    p.add_argument("--function", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--hold", type=int, default=60)
    p.add_argument("request_ids", nargs="+")
    args = p.parse_args()

    if args.mode in ("deferred", "die"):  # the imports happen before "ready"
        import airflow_fc_async.triggers.mns  # noqa: F401
    from airflow_fc_async.core import destination_receiver as dr

    found: dict[str, Any] = dict.fromkeys(args.request_ids)
    deleted: dict[str, bool] = dict.fromkeys(args.request_ids, False)
    ready_at = time.time()
    Path(args.ready).write_text(str(ready_at))
    if args.mode == "blocking":
        _blocking(args, found, deleted)
    elif args.mode == "deferred-core":
        asyncio.run(_deferred_core(args, found, deleted))
    else:
        asyncio.run(_deferred(args, found, deleted))
    dr.stop_receivers(timeout=5)
    Path(args.out).write_text(
        json.dumps({"ready_at": ready_at, "found": found, "deleted": deleted, "stats": dr.receiver_stats()})
    )


if __name__ == "__main__":
    main()
