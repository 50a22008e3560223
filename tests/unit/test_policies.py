"""core/policies.py: the one back-off formula and the constants, and the policies that compute with them; and the
senders' public clone(), which the MNS receivers and the status poller use for their own clients."""

from __future__ import annotations

import pytest

from airflow_fc_async.core import policies
from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.destination_events import foreign_hand_back_seconds, receive_error_backoff
from airflow_fc_async.core.destinations import SharePolicy
from airflow_fc_async.core.fc import AsyncFcClient, FcClient
from airflow_fc_async.core.http import RetryPolicy
from airflow_fc_async.core.mns import AsyncMnsClient, MnsClient


def test_capped_doubling_and_error_pause() -> None:
    assert [policies.capped_doubling(0.25, k, 8.0) for k in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert policies.capped_doubling(5, -3, 300) == 5  # below zero doublings counts as none
    assert [policies.error_pause(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert policies.error_pause(3, cap=5.0) == 5.0
    assert [policies.result_reread_delay(a) for a in (1, 2)] == [1.0, 2.0]


def test_the_policies_compute_with_the_one_formula() -> None:
    # the values each wrote with its own expression before core/policies.py
    retry = RetryPolicy(jitter=False)
    assert [retry.delay(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    share = policies.SharePolicy()
    assert share == SharePolicy()  # the name callers import from core.destinations
    assert [share.backoff(n) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert [share.foreign_hold(k, full_batch=False) for k in range(1, 8)] == [1, 30, 60, 120, 240, 480, 900]
    assert all(type(share.foreign_hold(k, full_batch=True)) is int for k in range(1, 40))
    assert share.max_hold == policies.MAX_HOLD_SECONDS == 900
    assert [receive_error_backoff(n) for n in (0, 1, 2, 5, 9)] == [2.0, 2.0, 4.0, 30.0, 30.0]
    assert [foreign_hand_back_seconds(n) for n in (0, 1, 2, 3, 7, 40)] == [5, 5, 10, 20, 300, 300]


def test_the_constants_keep_their_values() -> None:
    assert (policies.SYNC_HOLD_SECONDS, policies.TRIGGER_HOLD_SECONDS) == (60, 900)
    assert (policies.DEFER_MARGIN, policies.HANDOFF_SECONDS) == (60.0, 30.0)
    assert (policies.ERROR_PAUSE_CAP, policies.PERMANENT_ERROR_PAUSE) == (30.0, 300.0)
    assert policies.LONG_POLL_READ_TIMEOUT > 30  # above MNS's longest long poll


@pytest.mark.parametrize("cls", [FcClient, MnsClient])
def test_clone_copies_the_connection_and_has_its_own_transport(cls: type[FcClient] | type[MnsClient]) -> None:
    retry = RetryPolicy(max_attempts=2)
    client = cls(
        "https://fc.example.com",
        Credentials("ak", "sk", "token"),
        connect_timeout=2.0,
        read_timeout=10.0,
        retry=retry,
        proxies={"https": "http://proxy:3128"},
        verify="/ca.pem",
    )
    copy = client.clone(min_read_timeout=35.0)
    assert type(copy) is cls and copy is not client and copy._transport is not client._transport
    assert (copy.endpoint, copy.credentials, copy.retry) == (client.endpoint, client.credentials, retry)
    assert (copy.connect_timeout, copy.read_timeout) == (2.0, 35.0)
    assert copy._transport._proxies == {"https": "http://proxy:3128"}
    assert copy._transport._verify == "/ca.pem"
    assert client.clone().read_timeout == 10.0
    copy.close()
    client.close()


async def test_clone_of_an_async_client_as_another_class() -> None:
    client = AsyncMnsClient("http://127.0.0.1:9", Credentials("ak", "sk"), read_timeout=50.0, verify=False)
    sync = client.clone(MnsClient, min_read_timeout=35.0)
    assert type(sync) is MnsClient and sync.read_timeout == 50.0 and sync._transport._verify is False
    same = client.clone()
    assert (
        type(same) is AsyncMnsClient and same._transport._proxies == {} and same._transport._verify is False
    )
    fc = AsyncFcClient("http://127.0.0.1:9", Credentials("ak", "sk"))
    assert fc.clone()._transport._share == fc._transport._share  # both share the loop's pool for FC
    sync.close()
    await same.aclose()
    await client.aclose()


def test_bounded_fields_validate_themselves_and_name_the_field() -> None:
    """Issue 18 (D3): a policy's ranges are declared on its fields; check_bounds names the one out of range."""
    with pytest.raises(ValueError, match=r"^batch_size must be between 1 and 16, got 17$"):
        SharePolicy(batch_size=17)
    with pytest.raises(ValueError, match=r"^hand_back must be >= 1, got 0$"):
        SharePolicy(hand_back=0, sweep_hold=1)
    with pytest.raises(ValueError, match="max_hold must be <= 43200"):
        SharePolicy(max_hold=43201)
    with pytest.raises(ValueError, match="sweep_hold"):  # the cross-field rule stays explicit
        SharePolicy(sweep_hold=2000)
    with pytest.raises(ValueError, match=r"^max_attempts must be >= 1, got 0$"):
        RetryPolicy(max_attempts=0)

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Probe:
        share: float = policies.bounded(0.5, above=0, high=1)
        limit: float | None = policies.bounded(None, above=0)

        def __post_init__(self) -> None:
            policies.check_bounds(self)

    assert (Probe().share, Probe().limit) == (0.5, None)  # defaults, and None where allowed, pass
    with pytest.raises(ValueError, match=r"share must be in \(0, 1\], got 0"):
        Probe(share=0)
    with pytest.raises(ValueError, match=r"limit must be > 0, got -1"):
        Probe(limit=-1)


def test_old_names_stay_importable() -> None:
    """Issue 18 item 7: renamed to fit the naming rule (docs/architecture.md, Names), old names kept."""
    from airflow_fc_async.core import errors, http, transport
    from airflow_fc_async.emulator import config

    assert http.FcConnectError is errors.FcConnectError and issubclass(
        errors.FcConnectError, errors.FcTransportError
    )
    assert transport.run_sync is transport.run and transport.run_async is transport.arun
    assert RetryPolicy.async_retrying is RetryPolicy.aretrying
    assert config.AsyncConfigSpec is config.AsyncInvokeConfigSpec
    assert config.async_config_from_json is config.async_invoke_config_from_json
