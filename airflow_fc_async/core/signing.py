"""Request signing: ACS3-HMAC-SHA256 (FC 3.0), MNS HMAC-SHA1 and SLS (Log Service) v1 HMAC-SHA1.

Hand-written on purpose (no SDK dependency) and proven byte for byte against the official SDKs' vectors in the
tests. Both sides use these functions: clients to sign, the emulator to verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import quote

from airflow_fc_async.core.credentials import Credentials
from airflow_fc_async.core.endpoints import FC_API_VERSION, MNS_API_VERSION, SLS_API_VERSION, H

__all__ = [
    "ACS3_ALGORITHM",
    "EMPTY_SHA256",
    "acs_date",
    "canonical_headers",
    "canonical_query",
    "encode_query_value",
    "fc_authorization",
    "fc_canonical_request",
    "fc_signature",
    "fc_string_to_sign",
    "http_date",
    "mns_signature",
    "mns_string_to_sign",
    "parse_fc_authorization",
    "parse_mns_authorization",
    "parse_sls_authorization",
    "sign_fc_request",
    "sign_mns_request",
    "sign_sls_request",
    "sls_resource",
    "sls_signature",
    "sls_string_to_sign",
]

ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def acs_date(now: datetime | None = None) -> str:
    """The ``x-acs-date`` value: UTC, second precision, ``Z`` suffix."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def http_date(timestamp: float | None = None) -> str:
    """RFC 1123 GMT, as MNS wants in ``Date``."""
    return formatdate(timestamp, usegmt=True)


def encode_query_value(value: str) -> str:
    """Percent-encode as the SDK does: everything but unreserved characters (space -> %20, / -> %2F)."""
    return quote(value, safe="~")


def canonical_query(query: Mapping[str, str | None] | None) -> str:
    """``key=value`` pairs sorted by key, None values dropped; also the query string to send on the wire."""
    if not query:
        return ""
    return "&".join(
        f"{k}={encode_query_value(query[k] or '')}" for k in sorted(query) if query[k] is not None
    )


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """``(canonical headers, SignedHeaders)``: every header but Authorization, lowercased, trimmed, sorted."""
    lowered: dict[str, list[str]] = {}
    for name, value in headers.items():
        key = name.lower().strip()
        if key == H.AUTHORIZATION:
            continue
        lowered.setdefault(key, []).append(str(value).strip())
    names = sorted(lowered)
    canon = "".join(f"{n}:{','.join(sorted(lowered[n]))}\n" for n in names)
    return canon, ";".join(names)


def fc_canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str | None] | None,
    headers: Mapping[str, str],
    payload_hash: str,
) -> str:
    """The canonical request; ``path`` is already encoded (each segment quoted with ``safe=''``)."""
    canon_headers, signed = canonical_headers(headers)
    return "\n".join(
        [method.upper(), path or "/", canonical_query(query), canon_headers, signed, payload_hash]
    )


def fc_string_to_sign(canonical_request: str) -> str:
    return f"{ACS3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"


def fc_signature(secret: str, string_to_sign: str) -> str:
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def fc_authorization(access_key_id: str, signed_headers: str, signature: str) -> str:
    return f"{ACS3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"


def parse_fc_authorization(value: str) -> tuple[str, list[str], str] | None:
    """``(access key id, signed header names, signature)`` of an ACS3 Authorization header, or None."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ACS3_ALGORITHM:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, val = item.strip().partition("=")
        if sep:
            parts[key] = val
    if not {"Credential", "SignedHeaders", "Signature"} <= parts.keys():
        return None
    return parts["Credential"], [h for h in parts["SignedHeaders"].split(";") if h], parts["Signature"]


def sign_fc_request(
    credentials: Credentials,
    *,
    method: str,
    host: str,
    path: str,
    action: str,
    query: Mapping[str, str | None] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    date: str | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Every header to send, Authorization included. ``host`` carries ``:port`` when it is not the default."""
    signed: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
    signed[H.HOST] = host
    signed[H.ACS_VERSION] = FC_API_VERSION
    signed[H.ACS_ACTION] = action
    signed[H.ACS_DATE] = date or acs_date()
    signed[H.ACS_NONCE] = nonce or uuid.uuid4().hex
    payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    signed[H.ACS_CONTENT_SHA256] = payload_hash
    if credentials.security_token:
        signed[H.ACS_SECURITY_TOKEN] = credentials.security_token
    canonical = fc_canonical_request(method, path, query, signed, payload_hash)
    signed_names = canonical.rsplit("\n", 2)[1]  # SignedHeaders, as just canonicalised (not computed twice)
    signature = fc_signature(credentials.access_key_secret, fc_string_to_sign(canonical))
    signed[H.AUTHORIZATION] = fc_authorization(credentials.access_key_id, signed_names, signature)
    return signed


def mns_string_to_sign(method: str, resource: str, headers: Mapping[str, str]) -> str:
    """VERB, Content-MD5, Content-Type, Date, the sorted ``x-mns-*`` headers, then the resource as sent."""
    lowered = {k.lower(): str(v) for k, v in headers.items()}
    mns_headers = "".join(f"{k}:{lowered[k]}\n" for k in sorted(lowered) if k.startswith("x-mns-"))
    return "\n".join(
        [
            method.upper(),
            lowered.get("content-md5", ""),
            lowered.get(H.CONTENT_TYPE, ""),
            lowered.get(H.DATE, ""),
            mns_headers + resource,
        ]
    )


def mns_signature(secret: str, string_to_sign: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_mns_authorization(value: str) -> tuple[str, str] | None:
    """``(access key id, signature)`` of an ``MNS id:sig`` Authorization header, or None."""
    scheme, _, rest = value.strip().partition(" ")
    key_id, sep, signature = rest.rpartition(":")
    if scheme != "MNS" or not sep or not key_id:
        return None
    return key_id, signature


def sign_mns_request(
    credentials: Credentials,
    *,
    method: str,
    host: str,
    resource: str,
    headers: Mapping[str, str] | None = None,
    date: str | None = None,
) -> dict[str, str]:
    """Every header to send. ``resource`` is the path plus ``?query`` exactly as it goes on the wire."""
    out: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}
    out[H.HOST] = host
    out[H.DATE] = date or http_date()
    out.setdefault(H.MNS_VERSION, MNS_API_VERSION)
    signature = mns_signature(credentials.access_key_secret, mns_string_to_sign(method, resource, out))
    out[H.AUTHORIZATION] = f"MNS {credentials.access_key_id}:{signature}"
    if credentials.security_token:
        out[H.MNS_SECURITY_TOKEN] = credentials.security_token
    return out


def sls_resource(path: str, params: Mapping[str, str] | None) -> str:
    """SLS CanonicalizedResource: the path, then ``?`` and ``k=v`` sorted by key, values raw (not encoded)."""
    if not params:
        return path
    return path + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params))


def sls_string_to_sign(
    method: str, path: str, params: Mapping[str, str] | None, headers: Mapping[str, str]
) -> str:
    """METHOD, Content-MD5, Content-Type, Date, the sorted ``x-log-*`` (not ``x-log-meta-*``) and ``x-acs-*``
    headers as ``name:value``, then the canonical resource (SLS signature v1)."""
    lowered = {k.lower(): str(v) for k, v in headers.items()}
    signed = sorted(
        k
        for k in lowered
        if (k.startswith("x-log-") and not k.startswith("x-log-meta-")) or k.startswith("x-acs-")
    )
    canon = "".join(f"{k}:{lowered[k]}\n" for k in signed)
    return "\n".join(
        [
            method.upper(),
            lowered.get("content-md5", ""),
            lowered.get(H.CONTENT_TYPE, ""),
            lowered.get(H.DATE, ""),
            canon + sls_resource(path, params),
        ]
    )


def sls_signature(secret: str, string_to_sign: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_sls_authorization(value: str) -> tuple[str, str] | None:
    """``(access key id, signature)`` of a ``LOG id:sig`` Authorization header, or None."""
    scheme, _, rest = value.strip().partition(" ")
    key_id, sep, signature = rest.rpartition(":")
    if scheme != "LOG" or not sep or not key_id:
        return None
    return key_id, signature


def sign_sls_request(
    credentials: Credentials,
    *,
    method: str,
    host: str,
    path: str,
    params: Mapping[str, str] | None = None,
    body: bytes = b"",
    date: str | None = None,
) -> dict[str, str]:
    """Every header of a body-less SLS request (GetLogs v1), Authorization included.

    ``host`` is the Host header (``{project}.{endpoint host}``); ``params`` the query as sent, before encoding.
    No Content-Type or Content-MD5 without a body, and no ``x-log-date``.
    """
    out: dict[str, str] = {
        H.HOST: host,
        H.DATE: date or http_date(),
        H.CONTENT_LENGTH: str(len(body)),
        H.LOG_API_VERSION: SLS_API_VERSION,
        H.LOG_SIGNATURE_METHOD: "hmac-sha1",
        H.LOG_BODY_RAW_SIZE: str(len(body)),
    }
    if body:
        out["content-md5"] = hashlib.md5(body).hexdigest().upper()
    if credentials.security_token:
        out[H.ACS_SECURITY_TOKEN] = credentials.security_token
    signature = sls_signature(credentials.access_key_secret, sls_string_to_sign(method, path, params, out))
    out[H.AUTHORIZATION] = f"LOG {credentials.access_key_id}:{signature}"
    return out
