"""Signature checks: wrong secret, unknown key, tampered body, STS tokens, for FC and MNS."""

from __future__ import annotations

import hashlib

import pytest
import requests

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.errors import FcAuthError
from airflow_fc_async.core.fc import FcClient
from airflow_fc_async.core.mns import MnsClient
from airflow_fc_async.core.signing import fc_string_to_sign, sign_fc_request
from airflow_fc_async.emulator import Emulator
from tests.emulator.conftest import fc_raw, mns_raw

GET_FN = "/2023-03-30/functions/echo"


def test_wrong_secret_is_signature_not_match_with_the_string_to_sign(emu):
    wrong = Credentials(emu.settings.access_key_id, "not-the-secret")
    r = fc_raw(emu, "GET", GET_FN, "GetFunction", credentials=wrong)
    assert r.status_code == 403
    error = r.json()
    assert error["Code"] == "SignatureNotMatch" and error["RequestId"] == r.headers["x-fc-request-id"]
    assert "ACS3-HMAC-SHA256\\n" in error["Message"]
    canonical = (
        error["Message"].split("canonical request: ", 1)[1].strip("'").encode().decode("unicode_escape")
    )
    assert canonical.startswith("GET\n/2023-03-30/functions/echo\n")
    assert fc_string_to_sign(canonical).replace("\n", "\\n") in error["Message"]
    assert "not-the-secret" not in r.text and emu.settings.access_key_secret not in r.text


def test_unknown_access_key_is_invalid_access_key_id(emu):
    r = fc_raw(emu, "GET", GET_FN, "GetFunction", credentials=Credentials("LTAIunknown", "x"))
    assert r.status_code == 403 and r.json()["Code"] == "InvalidAccessKeyID"


def test_the_project_client_sees_an_auth_error(emu):
    client = FcClient(emu.endpoint, Credentials(emu.settings.access_key_id, "wrong"))
    with pytest.raises(FcAuthError) as info:
        client.get_function("echo")
    assert info.value.code == "SignatureNotMatch"


def test_missing_authorization_and_tampered_body(emu):
    r = requests.get(emu.endpoint + GET_FN)
    assert r.status_code == 403 and r.json()["Code"] == "AccessDenied"
    host = emu.endpoint.split("://", 1)[1]
    path = "/2023-03-30/functions/echo/invocations"
    headers = sign_fc_request(
        emu.credentials, method="POST", host=host, path=path, action="InvokeFunction", body=b"a"
    )
    r = requests.post(emu.endpoint + path, headers=headers, data=b"b")
    assert r.status_code == 403 and "x-acs-content-sha256" in r.json()["Message"]
    assert headers["x-acs-content-sha256"] == hashlib.sha256(b"a").hexdigest()


def test_query_is_part_of_the_signature(emu):
    host = emu.endpoint.split("://", 1)[1]
    path = "/2023-03-30/functions/echo/async-tasks"
    headers = sign_fc_request(
        emu.credentials,
        method="GET",
        host=host,
        path=path,
        action="ListAsyncTasks",
        query={"prefix": "a b/c", "limit": "5"},
    )
    ok = requests.get(emu.endpoint + path + "?limit=5&prefix=a%20b%2Fc", headers=headers)
    assert ok.status_code == 200
    bad = requests.get(emu.endpoint + path + "?limit=6&prefix=a%20b%2Fc", headers=headers)
    assert bad.status_code == 403 and bad.json()["Code"] == "SignatureNotMatch"


def test_mns_wrong_secret_and_unknown_key(emu):
    r = mns_raw(
        emu, "GET", "/queues/fc-test-echo", credentials=Credentials(emu.settings.access_key_id, "nope")
    )
    assert r.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in r.text
    assert "GET\n\n\n" in r.text.replace("&#10;", "\n").replace("\\n", "\n")
    r = mns_raw(emu, "GET", "/queues/fc-test-echo", credentials=Credentials("LTAIunknown", "x"))
    assert r.status_code == 403 and "<Code>InvalidAccessKeyId</Code>" in r.text


def test_mns_resource_is_signed_as_sent(emu):
    from airflow_fc_async.core.signing import sign_mns_request

    host = emu.endpoint.split("://", 1)[1]
    headers = sign_mns_request(
        emu.credentials, method="GET", host=host, resource="/queues/fc-test-echo/messages?waitseconds=0"
    )
    assert requests.get(
        emu.endpoint + "/queues/fc-test-echo/messages?waitseconds=0", headers=headers
    ).status_code in (200, 404)
    r = requests.get(emu.endpoint + "/queues/fc-test-echo/messages?waitseconds=1", headers=headers)
    assert r.status_code == 403


def test_sts_token_is_required_and_checked():
    sts = Credentials("STS.emulator", "sts-secret", "sts-token")
    with Emulator(
        access_key_id="STS.emulator", access_key_secret="sts-secret", security_token="sts-token"
    ) as emu:
        assert emu.credentials == sts
        assert list(FcClient(emu.endpoint, sts).list_async_invoke_configs()) == []
        r = fc_raw(emu, "GET", "/2023-03-30/async-invoke-configs", "ListAsyncInvokeConfigs", credentials=sts)
        assert r.status_code == 200
        no_token = Credentials("STS.emulator", "sts-secret")
        r = fc_raw(
            emu, "GET", "/2023-03-30/async-invoke-configs", "ListAsyncInvokeConfigs", credentials=no_token
        )
        assert r.status_code == 403 and r.json()["Code"] == "InvalidSecurityToken"
        wrong = Credentials("STS.emulator", "sts-secret", "other-token")
        r = fc_raw(
            emu, "GET", "/2023-03-30/async-invoke-configs", "ListAsyncInvokeConfigs", credentials=wrong
        )
        assert r.status_code == 403
        mns = MnsClient(emu.endpoint, sts)
        assert mns.create_queue("sts-q") is True
        r = mns_raw(emu, "GET", "/queues/sts-q", credentials=no_token)
        assert r.status_code == 403 and "InvalidSecurityToken" in r.text


def test_official_fc_sdk_with_sts_credentials():
    from alibabacloud_fc20230330 import models as fc_models
    from alibabacloud_fc20230330.client import Client
    from alibabacloud_tea_openapi import utils_models as openapi_models

    with Emulator(configs=[], access_key_id="STS.sdk", access_key_secret="s", security_token="tok") as emu:
        config = openapi_models.Config(
            endpoint=emu.endpoint.split("://", 1)[1],
            protocol="http",
            access_key_id="STS.sdk",
            access_key_secret="s",
            security_token="tok",
            region_id=emu.region,
        )
        reply = Client(config).list_async_invoke_configs(fc_models.ListAsyncInvokeConfigsRequest())
        assert reply.status_code == 200 and reply.body.configs == []


def test_stale_dates_are_refused(emu):
    from airflow_fc_async.core.signing import sign_mns_request

    host = emu.endpoint.split("://", 1)[1]
    headers = sign_fc_request(
        emu.credentials,
        method="GET",
        host=host,
        path=GET_FN,
        action="GetFunction",
        date="2024-01-01T00:00:00Z",
    )
    r = requests.get(emu.endpoint + GET_FN, headers=headers)
    assert r.status_code == 403 and r.json()["Code"] == "InvalidTimeStamp"
    resource = "/queues/fc-test-echo"
    headers = sign_mns_request(
        emu.credentials, method="GET", host=host, resource=resource, date="Thu, 17 Mar 2016 06:25:06 GMT"
    )
    r = requests.get(emu.endpoint + resource, headers=headers)
    assert r.status_code == 408 and "<Code>TimeExpired</Code>" in r.text
