"""Signature checks: the canonical request is rebuilt from the request exactly as received, with the same
functions the clients sign with (core/signing.py). A mismatch answers what the real services answer: 403 and the
server's string to sign, so a client author can see where the two sides differ; credential-bearing header
values (the STS token) are masked in it, since error texts end up in logs and exceptions."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from airflow_fc_async.core.endpoints import H
from airflow_fc_async.core.signing import (
    fc_canonical_request,
    fc_signature,
    fc_string_to_sign,
    mns_signature,
    mns_string_to_sign,
    parse_fc_authorization,
    parse_mns_authorization,
)
from airflow_fc_async.emulator.settings import Settings
from airflow_fc_async.emulator.wire import ApiError, Request

__all__ = ["check_fc", "check_mns", "read_authorization", "redact_credentials"]

_CREDENTIAL_HEADERS = (H.AUTHORIZATION, H.ACS_SECURITY_TOKEN, H.MNS_SECURITY_TOKEN)
REDACTED = "***"

_Parsed = TypeVar("_Parsed", bound=tuple[Any, ...])


def redact_credentials(headers: dict[str, str]) -> dict[str, str]:
    """The headers with every credential-bearing value masked (for error messages only, never for signing)."""
    return {k: REDACTED if k in _CREDENTIAL_HEADERS else v for k, v in headers.items()}


def _token(settings: Settings, key_id: str, token: str | None, code: str) -> None:
    """STS: a configured token must match when sent, and is required with an ``STS.`` key id."""
    if token is None:
        if key_id.startswith("STS.") or (settings.security_token and key_id == settings.access_key_id):
            raise ApiError(403, code, "The security token is required for STS credentials")
        return
    if not settings.security_token or not hmac.compare_digest(token, settings.security_token):
        raise ApiError(403, code, "The security token you provided is invalid")


_MAX_SKEW = 15 * 60


def _skewed(value: str, iso: bool) -> bool | None:
    """True when the date is more than 15 minutes off; None when it cannot be parsed."""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00")) if iso else parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return abs(when.timestamp() - time.time()) > _MAX_SKEW


def read_authorization(
    request: Request,
    settings: Settings,
    parse: Callable[[str], _Parsed | None],
    *,
    missing: ApiError,
    malformed: ApiError,
    unknown_key: tuple[int, str, str],
) -> _Parsed:
    """The parsed Authorization header (access key id first) of a request signed with the emulator's key id.

    Otherwise the service's own answer: ``missing`` (no header), ``malformed`` (``parse`` gives None) or
    ``unknown_key``, ``(status, code, text)`` with ``{key_id}`` in the text (another access key id).
    """
    raw = request.headers.get(H.AUTHORIZATION)
    if not raw:
        raise missing
    parsed = parse(raw)
    if parsed is None:
        raise malformed
    if parsed[0] != settings.access_key_id:
        status, code, text = unknown_key
        raise ApiError(status, code, text.format(key_id=parsed[0]))
    return parsed


def check_fc(request: Request, settings: Settings) -> None:
    """Verify an ACS3-HMAC-SHA256 request; raise ApiError (FC codes) when it fails."""
    key_id, signed_names, signature = read_authorization(
        request,
        settings,
        parse_fc_authorization,
        missing=ApiError(403, "AccessDenied", "The Authorization header is missing"),
        malformed=ApiError(
            403,
            "InvalidAuthorization",
            "The Authorization header is not ACS3-HMAC-SHA256 Credential=...,SignedHeaders=...,Signature=...",
        ),
        unknown_key=(403, "InvalidAccessKeyID", "The AccessKeyID {key_id} does not exist"),
    )
    _token(settings, key_id, request.headers.get(H.ACS_SECURITY_TOKEN), "InvalidSecurityToken")
    payload_hash = request.headers.get(H.ACS_CONTENT_SHA256, "")
    actual = hashlib.sha256(request.body).hexdigest()
    if payload_hash.lower() != actual:
        raise ApiError(
            403,
            "SignatureNotMatch",
            f"x-acs-content-sha256 {payload_hash!r} is not the SHA-256 of the body ({actual})",
        )
    missing = [n for n in signed_names if n not in request.headers]
    if missing:
        raise ApiError(
            403, "SignatureNotMatch", f"SignedHeaders names headers that were not sent: {', '.join(missing)}"
        )
    if settings.check_date_skew:
        skewed = _skewed(request.headers.get(H.ACS_DATE, ""), iso=True)
        if skewed is None or skewed:
            raise ApiError(
                403,
                "InvalidTimeStamp",
                "x-acs-date is missing, malformed or more than 15 minutes from server time",
            )
    headers = {name: request.headers[name] for name in signed_names}
    canonical = fc_canonical_request(request.method, request.path, request.query, headers, payload_hash)
    string_to_sign = fc_string_to_sign(canonical)
    expected = fc_signature(settings.access_key_secret, string_to_sign)
    if not hmac.compare_digest(expected, signature.lower()):
        # the string to sign holds only a hash of the canonical request; the canonical request is shown masked
        shown = fc_canonical_request(
            request.method, request.path, request.query, redact_credentials(headers), payload_hash
        )
        raise ApiError(
            403,
            "SignatureNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your access key secret and signing method (credential values are masked). Server string to "
            f"sign is: {string_to_sign!r}; canonical request: {shown!r}",
        )


def check_mns(request: Request, settings: Settings) -> None:
    """Verify an MNS HMAC-SHA1 request over the resource exactly as sent (raw path + '?' + raw query)."""
    key_id, signature = read_authorization(
        request,
        settings,
        parse_mns_authorization,
        missing=ApiError(403, "AccessDenied", "The Authorization header is missing"),
        malformed=ApiError(
            400, "InvalidAuthorizationHeader", "The Authorization header is not 'MNS AccessKeyId:Signature'"
        ),
        unknown_key=(403, "InvalidAccessKeyId", "The AccessKeyId {key_id} does not exist"),
    )
    _token(settings, key_id, request.headers.get(H.MNS_SECURITY_TOKEN), "InvalidSecurityToken")
    if H.DATE not in request.headers:
        raise ApiError(400, "InvalidDateHeader", "The Date header is missing")
    if settings.check_date_skew:
        skewed = _skewed(request.headers[H.DATE], iso=False)
        if skewed is None:
            raise ApiError(400, "InvalidDateHeader", "The Date header is not an RFC 1123 date")
        if skewed:
            raise ApiError(408, "TimeExpired", "The Date header is more than 15 minutes from server time")
    string_to_sign = mns_string_to_sign(request.method, request.target, request.headers)
    expected = mns_signature(settings.access_key_secret, string_to_sign)
    if not hmac.compare_digest(expected, signature):
        raise ApiError(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Server string to "
            f"sign is: {mns_string_to_sign(request.method, request.target, redact_credentials(request.headers))!r}",
        )
