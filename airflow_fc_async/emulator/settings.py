"""The emulator's settings and its documented development credentials (never valid on Alibaba Cloud)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ADMIN_PREFIX",
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ACCESS_KEY_SECRET",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_PORT",
    "DEFAULT_REGION",
    "Settings",
]

DEFAULT_ACCESS_KEY_ID = "LTAIemulator0000000000000"
DEFAULT_ACCESS_KEY_SECRET = "emulator-secret-not-for-production"
DEFAULT_ACCOUNT_ID = "1234567890123456"
DEFAULT_REGION = "cn-hangzhou"
DEFAULT_PORT = 9000
ADMIN_PREFIX = "/_emulator"


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
