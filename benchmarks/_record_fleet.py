"""Waiters for destination records in separate OS processes on one shared queue (issue 14; P5 and its test).

The emulator runs in the calling process; every waiter process (``benchmarks._record_waiter``) talks to it over
HTTP with the connection in ``AIRFLOW_CONN_FC_DEFAULT``. Half the records are sent right after the processes are
started (before their waiters register: FC often delivers the record before the status read sees the end), the
rest once every process is ready. The queue also holds ``foreign`` messages of other consumers: alerts, opaque
bytes, JSON events and destination records of another function.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from airflow_fc_async.core.destinations import SharePolicy
from benchmarks._record_waiter import command as waiter_command

ROOT = Path(__file__).resolve().parent.parent
FUNCTION = "fleet-fn"


def fleet_env(emu: Any) -> dict[str, str]:
    """The environment of a waiter process: the emulator's connection and keys, this checkout importable."""
    creds = emu.credentials
    env = dict(
        os.environ,
        AIRFLOW_CONN_FC_DEFAULT=emu.connection_json(),
        FLEET_ENDPOINT=emu.endpoint,
        FLEET_KEY_ID=creds.access_key_id,
        FLEET_KEY_SECRET=creds.access_key_secret,
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def record_body(request_id: str, function: str = FUNCTION) -> str:
    return json.dumps(
        {
            "timestamp": int(time.time() * 1000),
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"acs:fc:cn-hangzhou:123:functions/{function}",
                "condition": "",
                "approximateInvokeCount": 1,
            },
            "requestPayload": "{}",
            "responseContext": {"statusCode": 200, "functionError": None},
            "responsePayload": '{"ok":true}',
        }
    )


def foreign_bodies(n: int) -> list[str]:
    kinds = [
        lambda i: f"alert #{i}: disk full",
        lambda i: base64.b64encode(f"opaque {i}".encode()).decode(),
        lambda i: record_body(f"other-app-{i}", "other-app"),
        lambda i: json.dumps({"event": "order", "id": i}),
    ]
    return [kinds[i % 4](i) for i in range(n)]


def formula(processes: int, records: int, foreign: int, seconds: float = 0.0, long_poll: int = 20) -> float:
    """MNS requests per record the design promises at most (``core.destinations``): per record the owner's
    share of a receive, its hold and its delete, plus a receive share and a hand-back by every other receiving
    process (``(P + 1) * (1 + 1/16) + 1``); per process one GetQueueAttributes and one sweep of the foreign
    messages (``1 + ceil(F / 16)`` receives; their first hold is the queue's own visibility timeout, no request),
    and the long polls that end empty while it waits: one per ``long_poll`` seconds of its ``seconds`` alive (the
    part that grows with time, not with records: a loaded machine keeps the processes alive longer)."""
    per_process = 1 + -(-foreign // 16) + -(-int(seconds) // max(1, long_poll))
    total = records * ((processes + 1) * (1 + 1 / 16) + 1) + processes * per_process
    return total / max(1, records)


def run_fleet(
    emu: Any,
    groups: list[tuple[str, list[str]]],
    *,
    foreign: int,
    timeout: float = 240.0,
    hold: int = 60,
) -> dict[str, Any]:
    """Start one process per ``(mode, request ids)`` group, deliver every record, return the figures."""
    from airflow_fc_async.core.mns import MnsClient

    queue = f"fleet-{uuid.uuid4().hex[:10]}"
    work = Path(tempfile.mkdtemp(prefix="fc-fleet-"))
    with MnsClient(emu.endpoint, emu.credentials) as mns:
        mns.create_queue(queue)
        foreign_ids: set[str] = set()
        bodies = foreign_bodies(foreign)
        for i in range(0, len(bodies), 16):
            foreign_ids |= set(mns.batch_send_messages(queue, bodies[i : i + 16]))
        emu.reset_stats()
        env = fleet_env(emu)
        procs = []
        for n, (mode, rids) in enumerate(groups):
            args = waiter_command(
                mode,
                rids,
                queue=queue,
                function=FUNCTION,
                out=work / f"{n}.json",
                ready=work / f"{n}.ready",
                timeout=timeout,
                hold=hold,
            )
            log = open(work / f"{n}.log", "wb")  # noqa: SIM115 (closed below)
            procs.append(
                (subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log)
            )
        spawned = time.monotonic()
        rids = [r for _, group in groups for r in group]
        sent: dict[str, float] = {}

        def send(batch: list[str]) -> None:
            for i in range(0, len(batch), 16):
                part = batch[i : i + 16]
                mns.batch_send_messages(queue, [record_body(r) for r in part])
                now = time.time()
                sent.update(dict.fromkeys(part, now))

        early, late = rids[::2], rids[1::2]
        send(early)  # before the waiters exist
        end = time.monotonic() + timeout
        while not all((work / f"{n}.ready").exists() for n in range(len(groups))):
            if time.monotonic() > end or any(p.poll() not in (None, 0) for p, _ in procs):
                break
            time.sleep(0.2)
        started = time.monotonic()
        send(late)
        try:
            for proc, _ in procs:
                try:
                    proc.wait(timeout=max(1.0, end + 60 - time.monotonic()))
                except subprocess.TimeoutExpired:  # its records count as missing
                    proc.kill()
        finally:
            for proc, log in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                log.close()
        elapsed = time.monotonic() - started
        alive = time.monotonic() - spawned  # the longest a waiter process lived (each long-polled meanwhile)
        time.sleep(0.5)
    results = []
    for n in range(len(groups)):
        path = work / f"{n}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
        else:
            results.append({"found": {}, "deleted": {}, "stats": {}})
            print(f"--- waiter {n} wrote nothing:\n" + (work / f"{n}.log").read_text()[-3000:])
    found = {rid: at for r in results for rid, at in r["found"].items() if at is not None}
    latencies = sorted(found[rid] - sent[rid] for rid in found if rid in sent)
    paths = emu.stats()["paths"]
    requests = {k: v for k, v in paths.items() if f"/queues/{queue}" in k}
    sends = sum(v for k, v in requests.items() if k.startswith("POST"))
    store = emu.queues.get(queue)
    left = {mid: m.body for mid, m in store.messages.items()}
    counts = [m.dequeue_count for mid, m in store.messages.items() if mid in foreign_ids]
    consumer_requests = sum(requests.values()) - sends
    from benchmarks._common import percentile

    return {
        "processes": len(groups),
        "waiters": {mode: sum(len(g) for m, g in groups if m == mode) for mode in {m for m, _ in groups}},
        "records": len(rids),
        "foreign": foreign,
        "found": len(found),
        "seconds": elapsed,
        "mns_requests": consumer_requests,
        "requests_by_kind": requests,
        "requests_per_record": consumer_requests / max(1, len(rids)),
        "formula_requests_per_record": formula(
            len(groups), len(rids), foreign, alive, SharePolicy().long_poll
        ),
        "processes_alive_s": alive,
        "max_foreign_dequeue_count": max(counts, default=0),
        "foreign_deleted": len(foreign_ids) - len(counts),
        "records_left_in_queue": len(set(left) - foreign_ids),
        "queue_holds_exactly_the_foreign": set(left) == foreign_ids,
        "latency_p50_s": percentile(latencies, 50) if latencies else None,
        "latency_p99_s": percentile(latencies, 99) if latencies else None,
        "latency_max_s": latencies[-1] if latencies else None,
        "receiver_stats": _sum_stats(r["stats"] for r in results),
        "missing": sorted(set(rids) - set(found)),
        "work_dir": str(work),
    }


def _sum_stats(stats: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in stats:
        for k, v in s.items():
            out[k] = out.get(k, 0) + int(v)
    return out
