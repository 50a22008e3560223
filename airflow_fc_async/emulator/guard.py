"""What a web page in the developer's browser can reach: nothing. Every path refuses a request that a browser sent.

A cross-origin page cannot sign (the signature headers need a CORS preflight, which the emulator never answers),
but it can send simple requests, and a DNS-rebinding page talks to 127.0.0.1 as its own origin under its own host
name, where the documented development key signs for it. So: a request with an ``Origin`` header (browsers send it
on every cross-origin request and on every same-origin POST/PUT/DELETE; SDKs never do) is refused, and so is a
``Host`` that is not an IP literal, ``localhost``, the configured host or an allowed name (or a project subdomain
of one of these, as SLS addresses its project).
"""

from __future__ import annotations

import ipaddress

from airflow_fc_async.emulator.settings import Settings

__all__ = ["browser_refusal"]


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _host_allowed(host_header: str, settings: Settings) -> bool:
    host = host_header.strip().lower()
    if host.startswith("["):  # [IPv6] or [IPv6]:port
        return _is_ip(host[1:].partition("]")[0])
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    allowed = {"localhost", settings.host.lower(), *(h.lower() for h in settings.allowed_hosts)}
    for candidate in (name, name.partition(".")[2]):  # the name, or the name under a project label
        if candidate and (_is_ip(candidate) or candidate in allowed or candidate.endswith(".localhost")):
            return True
    return False


def browser_refusal(headers: dict[str, str], settings: Settings) -> str | None:
    """Why this request is refused (it came from a web page, or by a name the emulator does not serve), or None."""
    if "origin" in headers:
        return "requests from a web page (with an Origin header) are refused: the emulator serves SDKs only"
    host = headers.get("host")
    if host is not None and not _host_allowed(host, settings):
        return (
            f"Host {host!r} is not served (DNS rebinding defence): use an IP address or localhost, or start the "
            "emulator with --allow-host NAME"
        )
    return None
