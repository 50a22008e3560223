"""The signers against the official vectors (byte for byte), and properties of canonicalisation."""

from __future__ import annotations

import hashlib
from urllib.parse import quote, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.endpoints import FC_ENDPOINTS
from airflow_fc_async.core.signing import (
    EMPTY_SHA256,
    canonical_headers,
    canonical_query,
    fc_canonical_request,
    fc_signature,
    fc_string_to_sign,
    mns_signature,
    mns_string_to_sign,
    parse_fc_authorization,
    parse_mns_authorization,
    sign_fc_request,
    sign_mns_request,
)

CREDS = Credentials("testAccessKeyId", "testAccessKeySecret")
HOST = "1234567890123456.cn-hangzhou.fc.aliyuncs.com"
DATE = "2024-01-01T00:00:00Z"
NONCE = "3f9d6c1e8b2a4f0e9c7d5b3a1e0f2d4c"
MNS_DATE = "Thu, 17 Mar 2016 06:25:06 GMT"


def _vector_a() -> dict[str, str]:
    return sign_fc_request(
        CREDS,
        method="POST",
        host=HOST,
        path="/2023-03-30/functions/my-func/invocations",
        action="InvokeFunction",
        query={"qualifier": "LATEST"},
        headers={
            "content-type": "application/octet-stream",
            "x-fc-invocation-type": "Async",
            "x-fc-async-task-id": "task-001",
        },
        body=b'{"key":"value"}',
        date=DATE,
        nonce=NONCE,
    )


def test_fc_vector_a_async_invoke() -> None:
    headers = _vector_a()
    assert (
        headers["x-acs-content-sha256"] == "e43abcf3375244839c012f9633f95862d232a95b00d5bc7348b3098b9fed7f32"
    )
    canonical = fc_canonical_request(
        "POST",
        "/2023-03-30/functions/my-func/invocations",
        {"qualifier": "LATEST"},
        {k: v for k, v in headers.items() if k != "authorization"},
        headers["x-acs-content-sha256"],
    )
    assert (
        hashlib.sha256(canonical.encode()).hexdigest()
        == "febbe495cfae96f049411e3d9be3cd8065486141a051b05732a877d58d864717"
    )
    assert headers["authorization"] == (
        "ACS3-HMAC-SHA256 Credential=testAccessKeyId,SignedHeaders=content-type;host;x-acs-action;"
        "x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version;x-fc-async-task-id;"
        "x-fc-invocation-type,Signature=5110919243bed389e898ba6926520b7e440e9f2e62478d30e134bf0d1d924fcc"
    )


def test_fc_vector_b_list_tasks() -> None:
    query = {
        "prefix": "job a/b",
        "status": "Failed",
        "limit": "20",
        "startedTimeBegin": "1704067200000",
        "sortOrderByTime": "asc",
    }
    assert canonical_query(query) == (
        "limit=20&prefix=job%20a%2Fb&sortOrderByTime=asc&startedTimeBegin=1704067200000&status=Failed"
    )
    headers = sign_fc_request(
        CREDS,
        method="GET",
        host=HOST,
        path=FC_ENDPOINTS["ListAsyncTasks"].path(function="my-func"),
        action="ListAsyncTasks",
        query=query,
        headers={"accept": "application/json"},
        date=DATE,
        nonce=NONCE,
    )
    assert headers["x-acs-content-sha256"] == EMPTY_SHA256
    parsed = parse_fc_authorization(headers["authorization"])
    assert parsed is not None
    key_id, signed, signature = parsed
    assert key_id == "testAccessKeyId"
    assert (
        ";".join(signed)
        == "accept;host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version"
    )
    assert signature == "9bce836478690bc2135c7a14866f8401b1511b07982cdbdc4bd9be1dc3be2e3a"


def test_fc_sts_token_is_signed() -> None:
    sts = Credentials("STS.testKeyId", "testAccessKeySecret", "testSecurityToken")
    headers = sign_fc_request(
        sts,
        method="GET",
        host=HOST,
        path="/2023-03-30/functions/f",
        action="GetFunction",
        date=DATE,
        nonce=NONCE,
    )
    assert headers["x-acs-security-token"] == "testSecurityToken"
    parsed = parse_fc_authorization(headers["authorization"])
    assert parsed is not None and "x-acs-security-token" in parsed[1]


@pytest.mark.parametrize(
    ("key_id", "secret", "method", "resource", "extra", "expected"),
    [
        (
            "TestAccessID",
            "TestAccessSecret",
            "GET",
            "/MyQueue",
            {},
            "MNS TestAccessID:uwx3yeWoILzgmvesW0BQSgfM7b8=",
        ),
        (
            "testAccessKeyId",
            "testAccessKeySecret",
            "GET",
            "/queues/fc-dest/messages?waitseconds=10",
            {},
            "MNS testAccessKeyId:NevWTOOalF7aVBcA1/H+p2k3wyI=",
        ),
        (
            "testAccessKeyId",
            "testAccessKeySecret",
            "GET",
            "/queues/fc-dest/messages?numOfMessages=16&waitseconds=30",
            {},
            "MNS testAccessKeyId:/fzYj4b2MJQqMWPc5ApVsUEBEDo=",
        ),
        (
            "testAccessKeyId",
            "testAccessKeySecret",
            "DELETE",
            "/queues/fc-dest/messages?ReceiptHandle=1-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg==",
            {"x-mns-user-request-id": "req-0001"},
            "MNS testAccessKeyId:x9Sbmjv5ZY+U1ZEDp2+wIqHcc+s=",
        ),
        (
            "testAccessKeyId",
            "testAccessKeySecret",
            "PUT",
            "/queues/fc-dest/messages?ReceiptHandle=1-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg==&VisibilityTimeout=1",
            {},
            "MNS testAccessKeyId:km1JcNFuG3nyaywo+npzn2b+cGE=",
        ),
        (
            "testAccessKeyId",
            "testAccessKeySecret",
            "PUT",
            "/queues/fc-dest/messages?ReceiptHandle="
            + quote("1-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg==", safe="")
            + "&VisibilityTimeout=1",
            {},
            "MNS testAccessKeyId:xW+l7s7XI+P1bvSslAwGYudUgPU=",
        ),
        (
            "testAccessKeyId",
            "testAccessKeySecret",
            "POST",
            "/queues/fc-dest/messages",
            {"content-type": "text/xml;charset=UTF-8"},
            "MNS testAccessKeyId:gf0OfvIvMzx0Qy3fURoUSP3xbiA=",
        ),
    ],
    ids=["D", "1", "2", "3", "4", "4e", "5b"],
)
def test_mns_vectors(
    key_id: str, secret: str, method: str, resource: str, extra: dict[str, str], expected: str
) -> None:
    date = "Thu, 09 Jul 2015 03:01:34 GMT" if key_id == "TestAccessID" else MNS_DATE
    headers = sign_mns_request(
        Credentials(key_id, secret), method=method, host="x", resource=resource, headers=extra, date=date
    )
    assert headers["authorization"] == expected
    assert headers["x-mns-version"] == "2015-06-06"


def test_mns_string_to_sign_of_vector_1() -> None:
    headers = {"date": MNS_DATE, "x-mns-version": "2015-06-06"}
    assert mns_string_to_sign("GET", "/queues/fc-dest/messages?waitseconds=10", headers) == (
        "GET\n\n\nThu, 17 Mar 2016 06:25:06 GMT\nx-mns-version:2015-06-06\n/queues/fc-dest/messages?waitseconds=10"
    )


def test_mns_vector_6_sts() -> None:
    sts = Credentials("STS.testKeyId", "testAccessKeySecret", "testSecurityToken")
    headers = sign_mns_request(
        sts, method="GET", host="x", resource="/queues/fc-dest/messages?waitseconds=10", date=MNS_DATE
    )
    assert headers["authorization"] == "MNS STS.testKeyId:NevWTOOalF7aVBcA1/H+p2k3wyI="
    assert headers["security-token"] == "testSecurityToken"
    assert parse_mns_authorization(headers["authorization"]) == (
        "STS.testKeyId",
        "NevWTOOalF7aVBcA1/H+p2k3wyI=",
    )


# --- properties -------------------------------------------------------------------------------------------------

TRICKY = st.text(
    alphabet=st.one_of(st.sampled_from(list(" /~+=%&?#:;,@!*'()é中\u00a0\t")), st.characters(codec="utf-8")),
    max_size=30,
)
KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)


@given(st.dictionaries(KEYS, st.one_of(st.none(), TRICKY), max_size=6))
def test_canonical_query_is_sorted_unreserved_and_reversible(query: dict[str, str | None]) -> None:
    canon = canonical_query(query)
    kept = {k: v for k, v in query.items() if v is not None}
    if not kept:
        assert canon == ""
        return
    pairs = [p.partition("=") for p in canon.split("&")]
    assert [k for k, _, _ in pairs] == sorted(kept)
    for key, _, encoded in pairs:
        assert all((c.isalnum() and c.isascii()) or c in "-_.~%" for c in encoded), encoded
        assert unquote(encoded) == kept[key]
        assert "+" not in encoded and " " not in encoded


@given(TRICKY.filter(lambda s: s != ""))
def test_path_segment_encoding_reverses_and_keeps_one_segment(name: str) -> None:
    path = FC_ENDPOINTS["GetFunction"].path(function=name)
    segment = path.rsplit("/", 1)[1]
    assert "/" not in segment
    assert unquote(segment) == name
    assert FC_ENDPOINTS["GetFunction"].pattern().match(path)


HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


@given(
    st.dictionaries(
        st.sampled_from(["x-fc-a", "x-fc-b", "accept", "content-type"]), HEADER_VALUE, max_size=4
    ),
    st.booleans(),
)
def test_header_case_and_whitespace_do_not_change_the_signature(headers: dict[str, str], upper: bool) -> None:
    noisy = {(k.upper() if upper else k.title()): f"  {v}\t" for k, v in headers.items()}
    assert canonical_headers(headers) == canonical_headers(noisy)
    sig_clean = fc_signature(
        "s", fc_string_to_sign(fc_canonical_request("GET", "/p", {}, headers, EMPTY_SHA256))
    )
    sig_noisy = fc_signature(
        "s", fc_string_to_sign(fc_canonical_request("GET", "/p", {}, noisy, EMPTY_SHA256))
    )
    assert sig_clean == sig_noisy


@given(st.binary(max_size=64))
def test_body_hash_header_matches_body(body: bytes) -> None:
    headers = sign_fc_request(CREDS, method="POST", host=HOST, path="/x", action="A", body=body)
    assert headers["x-acs-content-sha256"] == hashlib.sha256(body).hexdigest()
    if not body:
        assert headers["x-acs-content-sha256"] == EMPTY_SHA256


@given(st.dictionaries(KEYS, TRICKY, max_size=5), st.binary(max_size=32))
def test_a_verifier_rebuilding_from_the_wire_agrees(query: dict[str, str], body: bytes) -> None:
    """What the emulator does: parse the sent query string back and re-sign; any mismatch would be a 403."""
    headers = sign_fc_request(
        CREDS, method="PUT", host="127.0.0.1:9000", path="/a%20b/c", action="A", query=query, body=body
    )
    wire = canonical_query(query)
    received = dict(p.split("=", 1) for p in wire.split("&")) if wire else {}
    decoded = {k: unquote(v) for k, v in received.items()}
    parsed = parse_fc_authorization(headers["authorization"])
    assert parsed is not None
    _, signed, signature = parsed
    rebuilt = fc_canonical_request(
        "PUT", "/a%20b/c", decoded, {k: headers[k] for k in signed}, headers["x-acs-content-sha256"]
    )
    assert fc_signature(CREDS.access_key_secret, fc_string_to_sign(rebuilt)) == signature


def test_wrong_secret_gives_another_signature() -> None:
    good = _vector_a()["authorization"]
    other = sign_fc_request(
        Credentials("testAccessKeyId", "other"),
        method="POST",
        host=HOST,
        path="/2023-03-30/functions/my-func/invocations",
        action="InvokeFunction",
        query={"qualifier": "LATEST"},
        headers={
            "content-type": "application/octet-stream",
            "x-fc-invocation-type": "Async",
            "x-fc-async-task-id": "task-001",
        },
        body=b'{"key":"value"}',
        date=DATE,
        nonce=NONCE,
    )["authorization"]
    assert good != other


def test_mns_signature_changes_with_resource_encoding() -> None:
    a = mns_signature("k", mns_string_to_sign("GET", "/q?x=a=", {}))
    b = mns_signature("k", mns_string_to_sign("GET", "/q?x=a%3D", {}))
    assert a != b


def test_parsers_reject_other_schemes() -> None:
    assert parse_fc_authorization("Bearer abc") is None
    assert parse_fc_authorization("ACS3-HMAC-SHA256 Credential=a") is None
    assert parse_mns_authorization("ACS3-HMAC-SHA256 x") is None
    assert parse_mns_authorization("MNS nocolon") is None
