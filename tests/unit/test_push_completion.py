"""core.push_completion without I/O: which configs push every end, and the route read once per function."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcError
from airflow_fc_async.core.models import AsyncInvokeConfig
from airflow_fc_async.core.push_completion import (
    PushRoute,
    apush_route,
    push_route,
    reset_routes,
    route_reads,
)

Q = "acs:mns:cn-hangzhou:123:/queues/{}/messages"


@pytest.fixture(autouse=True)
def _fresh() -> None:
    reset_routes()


@pytest.mark.parametrize(
    ("success", "failure", "queues"),
    [
        (Q.format("done"), Q.format("dlq"), ("done", "dlq")),
        (Q.format("one"), Q.format("one"), ("one",)),
        (None, Q.format("dlq"), None),  # a success sends nothing: only the poll sees it
        (Q.format("done"), None, None),
        ("acs:mns:cn-hangzhou:123:/topics/t/messages", Q.format("dlq"), None),  # a topic: not our receiver's
        ("acs:fc:cn-hangzhou:123:functions/next", Q.format("dlq"), None),
    ],
)
def test_route_needs_mns_queues_for_both_ends(success: Any, failure: Any, queues: Any) -> None:
    route = PushRoute.from_config(AsyncInvokeConfig(on_success=success, on_failure=failure))
    assert (route.queues if route else None) == queues
    assert PushRoute.from_config(None) is None


class _Client:
    endpoint = "http://127.0.0.1:1"
    credentials = Credentials("ak", "secret")

    def __init__(self, config: AsyncInvokeConfig | Exception | None) -> None:
        self.config, self.calls = config, 0

    async def _get(self) -> Any:
        self.calls += 1
        await asyncio.sleep(0.01)
        if isinstance(self.config, Exception):
            raise self.config
        return self.config

    def get_async_invoke_config(self, function_name: str, *, qualifier: str = "LATEST") -> Any:
        return self._get()


def test_concurrent_first_readers_share_one_request_then_the_cache() -> None:
    client = _Client(AsyncInvokeConfig(on_success=Q.format("a"), on_failure=Q.format("b")))

    async def many() -> list[PushRoute | None]:
        return list(await asyncio.gather(*(apush_route(client, "fn") for _ in range(50))))  # type: ignore[arg-type]

    routes = asyncio.run(many())
    assert {r.queues if r else None for r in routes} == {("a", "b")}
    assert client.calls == 1 and route_reads() == 1
    assert asyncio.run(apush_route(client, "fn")) == routes[0]  # type: ignore[arg-type]
    assert client.calls == 1
    assert asyncio.run(apush_route(client, "other")) == routes[0] and client.calls == 2  # type: ignore[arg-type]


def test_a_failed_read_means_no_push_and_is_cached_briefly() -> None:
    client = _Client(FcError("throttled"))

    assert asyncio.run(apush_route(client, "fn")) is None  # type: ignore[arg-type]
    assert asyncio.run(apush_route(client, "fn")) is None  # type: ignore[arg-type]
    assert client.calls == 1


class _SyncClient(_Client):
    def get_async_invoke_config(self, function_name: str, *, qualifier: str = "LATEST") -> Any:
        self.calls += 1
        return self.config


def test_blocking_route_is_cached_per_function_and_qualifier() -> None:
    client = _SyncClient(AsyncInvokeConfig(on_success=Q.format("a"), on_failure=Q.format("a")))
    assert push_route(client, "fn") == PushRoute(("a",))  # type: ignore[arg-type]
    assert push_route(client, "fn") == PushRoute(("a",))  # type: ignore[arg-type]
    assert push_route(client, "fn", "prod") == PushRoute(("a",))  # type: ignore[arg-type]
    assert client.calls == 2
