"""Measure the emulator: GetAsyncTask requests per second on keep-alive connections, and the CPU that idle long
polls use. ``python -m airflow_fc_async.emulator._bench`` (a figure for the report, never a test assertion)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

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


def main() -> None:
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
