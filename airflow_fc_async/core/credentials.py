"""Access keys, kept out of every repr, str and log line."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Credentials"]


@dataclass(frozen=True)
class Credentials:
    """An AccessKey pair, optionally with an STS token.

    The secret and the token are excluded from ``repr`` so that a credentials object printed in a log, a
    traceback or a rendered template never shows them.
    """

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.access_key_id:
            raise ValueError(
                "access_key_id is empty: set it in the connection's login or extra 'access_key_id'"
            )
        if not self.access_key_secret:
            raise ValueError(
                "access_key_secret is empty: set it in the connection's password or extra 'access_key_secret'"
            )

    def __str__(self) -> str:
        return repr(self)
