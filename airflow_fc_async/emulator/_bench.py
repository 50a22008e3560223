"""Measure the emulator: GetAsyncTask requests per second on keep-alive connections, the CPU that idle long
polls use, and ListAsyncTasks pages against a 20k-task history (ms per page, records built per request).
``python -m airflow_fc_async.emulator._bench`` (a figure for the report, never a test assertion)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.signing import sign_fc_request, sign_mns_request
from airflow_fc_async.emulator.app import Emulator

__all__ = ["main"]


def _get_task_loop(emu: Emulator, task_id: str, seconds: float) -> int:
    host = emu.endpoint.split("://", 1)[1]
    path = f"/2023-03-30/functions/bench/async-tasks/{task_id}"
    session = requests.Session()
    session.trust_env = False
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        headers = sign_fc_request(emu.credentials, method="GET", host=host, path=path, action="GetAsyncTask")
        reply = session.get(emu.endpoint + path, headers=headers)
        assert reply.status_code == 200, reply.text
        done += 1
    session.close()
    return done


def _list_pages(history: int = 20_000, pages: int = 5) -> None:
    """Pages of 100 against ``history`` queued tasks (seeded in process): the server's work per page."""
    with Emulator() as emu:
        emu.deploy(
            "hist", runtime="emulator-sleep", source="", timeout=3600, asyncInvokeConfig={"asyncTask": True}
        )
        for i in range(history):
            emu.scheduler.submit("hist", f"h-{i:06d}", b'{"sleep": 1}', f"r{i}", delay=3600)
        queries: dict[str, dict[str, Any]] = {
            "newest first": {},
            "oldest first": {"newest_first": False},
            "status Running (none)": {"status": "Running"},
            "prefix h-0199": {"prefix": "h-0199"},
        }
        with FcClient(emu.endpoint, emu.credentials) as client:
            for label, query in queries.items():
                emu.reset_stats()
                t0 = time.perf_counter()
                n = sum(1 for _ in client.list_async_tasks("hist", limit=100 * pages, **query))
                took = time.perf_counter() - t0
                stats = emu.stats()
                requests_ = stats["requests"]["ListAsyncTasks"]
                server = stats["latency_ms"]["ListAsyncTasks"]
                print(
                    f"ListAsyncTasks over {history} tasks, {label}: {n} listed in {requests_} request(s), "
                    f"{took * 1000 / requests_:.1f} ms per page (server {server['mean']:.1f} ms), "
                    f"{stats['records_built'] / requests_:.0f} records built per request"
                )


def main() -> None:
    _list_pages()
    with Emulator() as emu:
        emu.deploy(
            "bench",
            source="def handler(event, context):\n    return event\n",
            async_invoke_config={"asyncTask": True},
        )
        host = emu.endpoint.split("://", 1)[1]
        path = "/2023-03-30/functions/bench/invocations"
        headers = sign_fc_request(
            emu.credentials,
            method="POST",
            host=host,
            path=path,
            action="InvokeFunction",
            headers={"x-fc-invocation-type": "Async", "x-fc-async-task-id": "bench-1"},
            body=b"{}",
        )
        assert requests.post(emu.endpoint + path, headers=headers, data=b"{}").status_code == 202
        time.sleep(0.5)
        seconds = 3.0
        for threads in (1, 4):
            with ThreadPoolExecutor(threads) as pool:
                counts = list(pool.map(lambda _: _get_task_loop(emu, "bench-1", seconds), range(threads)))
            print(f"GetAsyncTask, {threads} keep-alive connection(s): {sum(counts) / seconds:.0f} requests/s")

        queue = "bench-q"
        emu.queues.ensure(queue)
        resource = f"/queues/{queue}/messages?waitseconds=5"

        def poll() -> None:
            signed = sign_mns_request(emu.credentials, method="GET", host=host, resource=resource)
            requests.get(emu.endpoint + resource, headers=signed, timeout=30)

        polls = [threading.Thread(target=poll) for _ in range(20)]
        cpu0, wall0 = os.times(), time.monotonic()
        for t in polls:
            t.start()
        for t in polls:
            t.join()
        cpu1, wall1 = os.times(), time.monotonic()
        cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        print(f"20 concurrent 5 s long polls: {wall1 - wall0:.1f} s wall, {cpu:.3f} s CPU (clients included)")


if __name__ == "__main__":
    main()
