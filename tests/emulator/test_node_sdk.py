"""Conformance with a second official SDK family: the Node.js SDKs ``@alicloud/fc20230330`` and ``@alicloud/mns``
(independent implementations of the wire format) run every FC async operation and every MNS queue operation they
have against the emulator (tests/emulator/node/conformance.js).

The SDKs are installed once with ``npm ci`` from the committed package-lock.json into tests/emulator/node/
node_modules (git-ignored; re-installed when the lock file changes). Skipped only when node is not installed
(``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from airflow_fc_async.core.endpoints import mns_queue_arn
from tests.emulator.conftest import unique

NODE_DIR = Path(__file__).resolve().parent / "node"
STAMP = NODE_DIR / "node_modules" / ".installed-lock"

FC_OPERATIONS = {
    "InvokeFunction (Async, x-fc-async-task-id)",
    "InvokeFunction (Async, reused task id: 409)",
    "GetAsyncTask (Succeeded, returnPayload)",
    "GetAsyncTask (Failed, taskErrorMessage)",
    "GetAsyncTask (unknown id: 404)",
    "StopAsyncTask",
    "StopAsyncTask (ended task: 400)",
    "ListAsyncTasks (prefix, status, time range, sort, includePayload, limit, nextToken)",
    "PutAsyncInvokeConfig",
    "GetAsyncInvokeConfig",
    "ListAsyncInvokeConfigs",
    "DeleteAsyncInvokeConfig",
    "GetFunction",
    "GetFunction (unknown: 404 FunctionNotFound)",
}
MNS_OPERATIONS = {
    "CreateQueue",
    "GetQueueAttributes",
    "SetQueueAttributes",
    "ListQueue (x-mns-prefix, x-mns-ret-number, x-mns-marker, NextMarker)",
    "SendMessage",
    "BatchSendMessage",
    "PeekMessage",
    "BatchPeekMessage",
    "ReceiveMessage",
    "ChangeMessageVisibility (receiptHandle, visibilityTimeout)",
    "DeleteMessage",
    "BatchReceiveMessage",
    "BatchDeleteMessage",
    "ReceiveMessage (empty queue: MessageNotExist)",
    "DeleteQueue",
}


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip(
            "node is not installed: the Node.js SDK conformance test needs node and npm (apt nodejs npm)"
        )
    lock = (NODE_DIR / "package-lock.json").read_bytes()
    if not STAMP.exists() or STAMP.read_bytes() != lock:
        npm = shutil.which("npm")
        assert npm, "node is installed but npm is not: install npm to run the Node.js SDK conformance test"
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            check=True,
            timeout=600,
        )
        STAMP.write_bytes(lock)
    return node


def test_node_sdks_run_every_operation_against_the_emulator(node, emu):
    config_function = unique("node-config")
    emu.deploy(config_function, source="def handler(event, context):\n    return event\n")
    env = {
        **os.environ,
        "CONFORMANCE": json.dumps(
            {
                "endpoint": emu.endpoint,
                "accessKeyId": emu.settings.access_key_id,
                "accessKeySecret": emu.settings.access_key_secret,
                "accountId": emu.account_id,
                "region": emu.region,
                "prefix": unique("node"),
                "configFunction": config_function,
                "queueArn": mns_queue_arn(emu.region, emu.account_id, "fc-test-timeout"),
                "startedMs": int(time.time() * 1000),
            }
        ),
    }
    run = subprocess.run(
        [node, "conformance.js"], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    failed = {r["op"]: r["detail"] for r in results if not r["ok"]}
    assert not failed, (
        f"operations that failed with the Node SDKs: {json.dumps(failed, indent=1)}\n{run.stderr}"
    )
    assert {r["op"] for r in results} == FC_OPERATIONS | MNS_OPERATIONS, run.stderr
    assert run.returncode == 0, run.stderr
