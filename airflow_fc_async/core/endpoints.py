"""Every FC 3.0, MNS and SLS path and header name, once. Clients build requests from these; the emulator routes by them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "EMULATOR_CONSOLE_PREFIX",
    "FC_API_VERSION",
    "FC_ENDPOINTS",
    "MNS_API_VERSION",
    "MNS_ENDPOINTS",
    "SLS_API_VERSION",
    "SLS_ENDPOINTS",
    "Endpoint",
    "H",
    "console_task_url",
    "destination_arn",
    "emulator_console_task_pattern",
    "emulator_console_task_url",
    "fc_host",
    "function_arn",
    "is_emulator_endpoint",
    "mns_host",
    "mns_queue_arn",
    "parse_console_task_url",
    "parse_mns_queue_arn",
    "sls_host",
    "sls_project_address",
]

FC_API_VERSION = "2023-03-30"
MNS_API_VERSION = "2015-06-06"
SLS_API_VERSION = "0.6.0"


class H:
    """Header names (lowercase, as signed)."""

    AUTHORIZATION = "authorization"
    HOST = "host"
    CONTENT_TYPE = "content-type"
    ACCEPT = "accept"
    DATE = "date"
    ACS_VERSION = "x-acs-version"
    ACS_ACTION = "x-acs-action"
    ACS_DATE = "x-acs-date"
    ACS_NONCE = "x-acs-signature-nonce"
    ACS_CONTENT_SHA256 = "x-acs-content-sha256"
    ACS_SECURITY_TOKEN = "x-acs-security-token"
    ACS_RETRY_AFTER = "x-acs-retry-after"
    FC_INVOCATION_TYPE = "x-fc-invocation-type"
    FC_ASYNC_TASK_ID = "x-fc-async-task-id"
    FC_ASYNC_DELAY = "x-fc-async-delay"
    FC_LOG_TYPE = "x-fc-log-type"
    FC_REQUEST_ID = "x-fc-request-id"
    MNS_VERSION = "x-mns-version"
    MNS_REQUEST_ID = "x-mns-request-id"
    MNS_SECURITY_TOKEN = "security-token"
    CONTENT_LENGTH = "content-length"
    LOG_API_VERSION = "x-log-apiversion"
    LOG_SIGNATURE_METHOD = "x-log-signaturemethod"
    LOG_BODY_RAW_SIZE = "x-log-bodyrawsize"
    LOG_REQUEST_ID = "x-log-requestid"
    LOG_PROGRESS = "x-log-progress"
    LOG_COUNT = "x-log-count"
    LOG_PROCESSED_ROWS = "x-log-processed-rows"


@dataclass(frozen=True)
class Endpoint:
    """One operation: its action name, method and path template (relative to the API root)."""

    action: str
    method: str
    template: str

    def path(self, prefix: str = "", **params: str) -> str:
        """The encoded path: each parameter quoted as one segment (``/`` included), as the SDK does."""
        return prefix + self.template.format(**{k: quote(str(v), safe="") for k, v in params.items()})

    def pattern(self, prefix: str = "") -> re.Pattern[str]:
        """A regex matching the encoded path, with one named group per parameter (for routing)."""
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(prefix + self.template))
        return re.compile(f"^{regex}$")


_FC = f"/{FC_API_VERSION}"

FC_ENDPOINTS: dict[str, Endpoint] = {
    e.action: e
    for e in (
        Endpoint("InvokeFunction", "POST", _FC + "/functions/{function}/invocations"),
        Endpoint("GetAsyncTask", "GET", _FC + "/functions/{function}/async-tasks/{task_id}"),
        Endpoint("ListAsyncTasks", "GET", _FC + "/functions/{function}/async-tasks"),
        Endpoint("StopAsyncTask", "PUT", _FC + "/functions/{function}/async-tasks/{task_id}/stop"),
        Endpoint("PutAsyncInvokeConfig", "PUT", _FC + "/functions/{function}/async-invoke-config"),
        Endpoint("GetAsyncInvokeConfig", "GET", _FC + "/functions/{function}/async-invoke-config"),
        Endpoint("DeleteAsyncInvokeConfig", "DELETE", _FC + "/functions/{function}/async-invoke-config"),
        Endpoint("ListAsyncInvokeConfigs", "GET", _FC + "/async-invoke-configs"),
        Endpoint("GetFunction", "GET", _FC + "/functions/{function}"),
    )
}

MNS_ENDPOINTS: dict[str, Endpoint] = {
    e.action: e
    for e in (
        Endpoint("CreateQueue", "PUT", "/queues/{queue}"),
        Endpoint("GetQueueAttributes", "GET", "/queues/{queue}"),
        Endpoint("DeleteQueue", "DELETE", "/queues/{queue}"),
        Endpoint("SendMessage", "POST", "/queues/{queue}/messages"),
        Endpoint("ReceiveMessage", "GET", "/queues/{queue}/messages"),
        Endpoint("DeleteMessage", "DELETE", "/queues/{queue}/messages"),
        Endpoint("ChangeMessageVisibility", "PUT", "/queues/{queue}/messages"),
    )
}


SLS_ENDPOINTS: dict[str, Endpoint] = {
    e.action: e
    for e in (
        # GetLogs v1: no body, a JSON array back; the project is addressed by the Host header.
        Endpoint("GetLogs", "GET", "/logstores/{logstore}"),
    )
}


def fc_host(account_id: str, region: str) -> str:
    return f"{account_id}.{region}.fc.aliyuncs.com"


def mns_host(account_id: str, region: str) -> str:
    return f"{account_id}.mns.{region}.aliyuncs.com"


def sls_host(region: str) -> str:
    """The region's SLS endpoint host; a project is addressed as ``{project}.{this}``."""
    return f"{region}.log.aliyuncs.com"


def sls_project_address(scheme: str, host: str, project: str) -> tuple[str, str]:
    """``(base URL to connect to, Host header)`` of an SLS project behind the endpoint ``scheme://host``.

    The Host header is always ``{project}.{host}`` (the server finds the project there). On an Alibaba Cloud
    domain the project is also the host connected to, as the official SDKs do; any other endpoint (an IP
    address, ``localhost``, the emulator, a proxy) is connected to as given, with the project only in the
    Host header: the official SDKs' style for IP endpoints, which needs no DNS entry per project.
    """
    project_host = f"{project}.{host}"
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if hostname.endswith(".aliyuncs.com"):
        return f"{scheme}://{project_host}", project_host
    return f"{scheme}://{host}", project_host


def function_arn(region: str, account_id: str, function_name: str) -> str:
    return f"acs:fc:{region}:{account_id}:functions/{function_name}"


def mns_queue_arn(region: str, account_id: str, queue: str) -> str:
    return f"acs:mns:{region}:{account_id}:/queues/{queue}/messages"


_QUEUE_ARN = re.compile(
    r"^acs:mns:(?P<region>[\w-]*):(?P<account>\w*):/queues/(?P<queue>[A-Za-z0-9-]{1,120})/messages$"
)


def parse_mns_queue_arn(arn: str) -> tuple[str, str, str] | None:
    """``(region, account_id, queue)`` of an MNS queue ARN, or None when it is not one."""
    m = _QUEUE_ARN.match(arn)
    return (m["region"], m["account"], m["queue"]) if m else None


def destination_arn(value: str, region: str, account_id: str) -> str:
    """A destination as given: an ARN stays as it is; a bare queue name becomes the MNS queue ARN of the account."""
    return value if value.startswith("acs:") else mns_queue_arn(region, account_id, value)


_CONSOLE_TASK = Endpoint("ConsoleAsyncTask", "GET", "/{region}/functions/{function}/async-task/{task_id}")
_CONSOLE_HOST = "fcnext.console.aliyun.com"


def console_task_url(region: str, function_name: str, task_id: str, qualifier: str = "LATEST") -> str:
    """The FC console page of one async task."""
    path = _CONSOLE_TASK.path(region=region, function=function_name, task_id=task_id)
    return f"https://{_CONSOLE_HOST}{path}?qualifier={quote(qualifier, safe='')}"


EMULATOR_CONSOLE_PREFIX = "/_console"
"""The emulator's read-only console pages (GET only, no credential: they are what the extra link opens)."""

_EMULATOR_CONSOLE_TASK = Endpoint(
    "ConsoleAsyncTask", "GET", EMULATOR_CONSOLE_PREFIX + "/functions/{function}/async-tasks/{task_id}"
)


def is_emulator_endpoint(endpoint: str) -> bool:
    """True for an endpoint on a loopback host (``localhost``, ``127.0.0.0/8``, ``::1``): how the link side tells
    the emulator from Alibaba Cloud. A VPC endpoint or a proxy is an override too, but not on loopback."""
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(endpoint).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def emulator_console_task_url(
    endpoint: str, function_name: str, task_id: str, qualifier: str = "LATEST"
) -> str:
    """The emulator's console page of one async task (``endpoint`` is its scheme://host:port)."""
    path = _EMULATOR_CONSOLE_TASK.path(function=function_name, task_id=task_id)
    return f"{endpoint.rstrip('/')}{path}?qualifier={quote(qualifier, safe='')}"


def emulator_console_task_pattern() -> re.Pattern[str]:
    """The route of :func:`emulator_console_task_url` (the emulator serves it)."""
    return _EMULATOR_CONSOLE_TASK.pattern()


def parse_console_task_url(url: str) -> tuple[str, str, str] | None:
    """``(function, task id, qualifier)`` of a URL built by :func:`console_task_url` or
    :func:`emulator_console_task_url` (what the extra link stores); None for any other URL."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(url)
    route = _CONSOLE_TASK.pattern() if parts.hostname == _CONSOLE_HOST else emulator_console_task_pattern()
    m = route.match(parts.path)
    if not m:
        return None
    qualifier = (parse_qs(parts.query).get("qualifier") or ["LATEST"])[0] or "LATEST"
    return unquote(m["function"]), unquote(m["task_id"]), qualifier
