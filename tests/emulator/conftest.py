"""Clients of the session emulator, and small helpers shared by the emulator tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.mns import MnsClient
from airflow_fc_async.core.models import AsyncTask


@pytest.fixture
def fc(emu) -> Iterator[FcClient]:
    client = FcClient(emu.endpoint, emu.credentials)
    yield client
    client.close()


@pytest.fixture
def mns(emu) -> Iterator[MnsClient]:
    client = MnsClient(emu.endpoint, emu.credentials)
    yield client
    client.close()


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


def wait_terminal(fc: FcClient, function: str, task_id: str, timeout: float = 20.0) -> AsyncTask:
    def check() -> AsyncTask | None:
        task = fc.get_async_task(function, task_id)
        return task if task.is_terminal else None

    return wait_for(check, timeout)


def fc_raw(
    emu: Any,
    method: str,
    path: str,
    action: str,
    *,
    body: bytes = b"",
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    credentials: Any = None,
    session: Any = None,
) -> Any:
    """A hand-signed FC request through ``requests`` (for what the client refuses to send)."""
    import requests

    from airflow_fc_async.core.signing import canonical_query, sign_fc_request

    host = emu.endpoint.split("://", 1)[1]
    signed = sign_fc_request(
        credentials or emu.credentials,
        method=method,
        host=host,
        path=path,
        action=action,
        query=query,
        headers=headers,
        body=body,
    )
    qs = canonical_query(query)
    return (session or requests).request(
        method, emu.endpoint + path + ("?" + qs if qs else ""), headers=signed, data=body
    )


def mns_raw(emu: Any, method: str, resource: str, *, body: bytes = b"", credentials: Any = None) -> Any:
    import requests

    from airflow_fc_async.core.signing import sign_mns_request

    headers = {"content-type": "text/xml;charset=UTF-8"} if body else {}
    signed = sign_mns_request(
        credentials or emu.credentials,
        method=method,
        host=emu.endpoint.split("://", 1)[1],
        resource=resource,
        headers=headers,
    )
    return requests.request(method, emu.endpoint + resource, headers=signed, data=body)
