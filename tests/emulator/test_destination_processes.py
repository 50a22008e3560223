"""Issue 14: destination records reach their tasks when every waiter lives in its own OS process.

20 processes on one queue holding 200 foreign messages: 10 blocking waiters (the worker path under
``MnsHook.wait_for_destination_record``) and 10 deferred ones: 2 processes running ``FcDestinationTrigger.run()``
then the worker's delete by receipt handle, 8 making the same two calls without importing Airflow (an Airflow
import costs about 10 s of CPU per process here). Half the records are sent before the waiters register. Before the fix: 5 of
20 (records of another process were held 30-900 s; records served from memory were never deleted).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from benchmarks._record_fleet import run_fleet


def _groups(n: int) -> list[tuple[str, list[str]]]:
    tag = uuid.uuid4().hex[:6]
    modes = ["blocking" if i % 2 == 0 else "deferred-core" for i in range(n)]
    modes[1] = modes[3] = "deferred"
    return [(mode, [f"req-{tag}-{i:02d}"]) for i, mode in enumerate(modes)]


def test_twenty_waiter_processes_get_every_record_and_leave_only_the_foreign(emu: Any) -> None:
    fig = run_fleet(emu, _groups(20), foreign=200, timeout=180)
    print(
        "\n[issue 14] " + json.dumps({k: v for k, v in fig.items() if k != "requests_by_kind"}, default=str)
    )
    assert fig["found"] == 20, fig["missing"]
    assert fig["foreign_deleted"] == 0
    assert fig["records_left_in_queue"] == 0 and fig["queue_holds_exactly_the_foreign"]


def test_a_triggerer_killed_with_a_record_in_flight_loses_none(emu: Any, tmp_path: Any) -> None:
    """A triggerer-like process claims its record (held 5 s) and is SIGKILLed before the worker's delete: the
    message becomes visible again and the trigger re-run in another process gets it and deletes it."""
    import subprocess
    import time

    from airflow_fc_async.core.mns import MnsClient
    from benchmarks._record_fleet import ROOT, fleet_env, foreign_bodies, record_body
    from benchmarks._record_waiter import command as waiter_command

    rid, queue = f"req-kill-{uuid.uuid4().hex[:6]}", f"kill-{uuid.uuid4().hex[:8]}"
    env = fleet_env(emu)

    def start(mode: str, name: str) -> subprocess.Popen[bytes]:
        args = waiter_command(
            mode,
            [rid],
            queue=queue,
            function="fleet-fn",
            out=tmp_path / f"{name}.json",
            ready=tmp_path / f"{name}.ready",
            timeout=240,
            hold=5,
        )
        return subprocess.Popen(args, env=env, cwd=ROOT)

    with MnsClient(emu.endpoint, emu.credentials) as mns:
        mns.create_queue(queue)
        foreign = set(mns.batch_send_messages(queue, foreign_bodies(16)))
        mns.send_message(queue, record_body(rid))
        first = start("die", "first")
        try:
            end = time.monotonic() + 240
            while not (tmp_path / "first.claimed").exists():
                assert first.poll() is None and time.monotonic() < end, "the first triggerer never claimed it"
                time.sleep(0.2)
        finally:
            first.kill()
            first.wait()
        second = start("deferred-core", "second")
        assert second.wait(timeout=300) == 0
    out = json.loads((tmp_path / "second.json").read_text())
    left = set(emu.queues.get(queue).messages)
    print(
        f"\n[issue 14] killed triggerer: the re-run got the record: {out['found'][rid] is not None}, queue {len(left)}"
    )
    assert out["found"][rid] is not None and out["deleted"][rid] is True
    assert left == foreign
