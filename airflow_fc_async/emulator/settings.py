"""The emulator's settings and its documented development credentials (never valid on Alibaba Cloud)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

__all__ = [
    "ADMIN_PREFIX",
    "ADMIN_TOKEN_HEADER",
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ACCESS_KEY_SECRET",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_PORT",
    "DEFAULT_REGION",
    "MAX_BODY_BYTES",
    "Settings",
]

DEFAULT_ACCESS_KEY_ID = "LTAIemulator0000000000000"
DEFAULT_ACCESS_KEY_SECRET = "emulator-secret-not-for-production"
DEFAULT_ACCOUNT_ID = "1234567890123456"
DEFAULT_REGION = "cn-hangzhou"
DEFAULT_PORT = 9000
ADMIN_PREFIX = "/_emulator"
ADMIN_TOKEN_HEADER = "x-emulator-admin-token"
"""Every /_emulator/ request carries the per-start admin token in this header (a web page cannot send it)."""
MAX_BODY_BYTES = 6 * 1024 * 1024
"""Default request body cap: far above the async invoke payload (128 KB) and an MNS message (64 KB); FC's 32 MB
sync invoke limit is not reproduced (an emulator holding 32 MB per connection is a laptop's memory)."""


@dataclass
class Settings:
    """Everything the server needs besides the functions; ``port=0`` picks a free port."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    account_id: str = DEFAULT_ACCOUNT_ID
    region: str = DEFAULT_REGION
    access_key_id: str = DEFAULT_ACCESS_KEY_ID
    access_key_secret: str = field(default=DEFAULT_ACCESS_KEY_SECRET, repr=False)
    security_token: str | None = field(default=None, repr=False)
    max_instances: int = 8
    """Cap on instances per function; each instance runs up to instanceConcurrency attempts at once."""
    retry_delay: float = 1.0
    """Seconds between a failed attempt and its retry (FC backs off; short here so that tests run fast)."""
    base64_destinations: bool = False
    """Write destination records base64-encoded into MNS (default: raw JSON, as the official sample shows)."""
    check_date_skew: bool = True
    """Refuse requests whose x-acs-date / Date is more than 15 minutes off, as the real services do."""
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    """Per-start secret of the /_emulator/ admin API (printed on start; ``Emulator.admin_token``)."""
    allowed_hosts: tuple[str, ...] = ()
    """Host header names served besides IP literals, ``localhost`` and ``host`` (DNS rebinding defence)."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Requests announcing or sending a larger body get 413 before it is read."""
    request_timeout: float = 60.0
    """Socket read timeout: a connection that sends nothing for this long (idle or half-sent) is closed."""
    max_connections: int = 512
    """Connections served at once (one thread each); more get 503 at once."""
