"""The first async send imports aiohttp in a worker thread, never on the event loop (every trigger of a
triggerer would stall meanwhile). A fresh interpreter, since this process may have imported aiohttp already."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib.abc, sys, threading

    assert "aiohttp" not in sys.modules
    where = []

    class Spy(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name == "aiohttp":
                where.append(threading.current_thread() is threading.main_thread())
            return None

    sys.meta_path.insert(0, Spy())
    from airflow_fc_async.core.credentials import Credentials
    from airflow_fc_async.core.errors import FcError
    from airflow_fc_async.core.fc import AsyncFcClient
    from airflow_fc_async.core.http import RetryPolicy

    async def main():
        client = AsyncFcClient("http://127.0.0.1:9", Credentials("id", "secret"), retry=RetryPolicy(max_attempts=1))
        try:
            await asyncio.gather(*(client.get_async_task("f", f"t{i}") for i in range(5)), return_exceptions=True)
        finally:
            await client.aclose()

    asyncio.run(main())
    print("on the loop thread:", where)
    """
)


def test_first_async_send_imports_aiohttp_off_the_event_loop() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on the loop thread: [False]" in proc.stdout, proc.stdout
