"""One exception hierarchy for FC, MNS and SLS.

The names say ``Fc`` for all three services: ``FcError`` is the root of every error this package raises on
purpose, whichever service answered (an MNS ``QueueNotExist`` is an ``FcNotFoundError``, an SLS
``ReadQuotaExceed`` an ``FcThrottledError``). ``Fc`` is the package's prefix here, not the service's: catch
``FcError`` around any client call; ``code`` and the request id say which service it was.

::

    FcError                          anything this package raises on purpose (FC, MNS or SLS)
    +-- FcValidationError            bad input found before sending (ValueError too); names the field
    +-- FcTransportError             connection reset, timeout: no usable reply; retryable
    |   +-- FcConnectError           the connection could not be made: nothing was sent, any call may repeat
    +-- FcResponseError              the server answered something unparseable (HTML, truncated JSON, ...)
    +-- FcApiError                   an error reply: status, code, message, request id
        +-- FcInvalidArgumentError   400
        |   +-- FcPayloadTooLargeError   400 EntityTooLarge
        +-- FcAuthError              403 (and 401)
        +-- FcNotFoundError          404
        +-- FcConflictError          409
        |   +-- FcTaskIdInUseError   InvokeFunction's task id is taken by a task that is not this request
        +-- FcThrottledError         429 (and SLS 403 ReadQuotaExceed): retryable
        +-- FcServerError            5xx: retryable
        +-- MnsBatchError            some messages of an MNS batch failed (``core.mns_requests``): not retried
"""

from __future__ import annotations

import functools
import re
from typing import NotRequired, TypedDict, Unpack

__all__ = [
    "FUNCTION_MISSING_CODES",
    "ApiErrorFields",
    "FcApiError",
    "FcAuthError",
    "FcConflictError",
    "FcConnectError",
    "FcError",
    "FcInvalidArgumentError",
    "FcNotFoundError",
    "FcPayloadTooLargeError",
    "FcResponseError",
    "FcServerError",
    "FcTaskIdInUseError",
    "FcThrottledError",
    "FcTransportError",
    "FcValidationError",
    "api_error",
    "redact",
    "task_id_in_use",
]


# A credential-bearing header or parameter and its value, as a server may quote them back: FC's SignatureNotMatch
# shows the canonical request (``x-acs-security-token:...``), a proxy may echo the request headers.
_SECRET_FIELD = (
    r"(?i)(?P<name>x-acs-security-token|x-mns-security-token|security-token|securitytoken|x-acs-accesskey-secret"
    r"|access[-_]?key[-_]?secret|x-acs-signature|signature)(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"'&,;<\\]+)"
)
_AUTHORIZATION = r"(?i)(?P<name>authorization)(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\r\n\"'<\\]+)"
REDACTED = "***"


@functools.cache
def _credential_patterns() -> tuple[re.Pattern[str], ...]:
    """The two patterns, compiled on the first error: a DAG parse imports this module but raises nothing (P3)."""
    return re.compile(_AUTHORIZATION), re.compile(_SECRET_FIELD)


def redact(text: str) -> str:
    """``text`` with the values of credential-bearing headers and parameters replaced by ``***``."""
    for pattern in _credential_patterns():
        text = pattern.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    return text


class FcError(Exception):
    """Base of every error raised on purpose by this package; its text never carries a credential."""

    retryable: bool = False

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class FcValidationError(FcError, ValueError):
    """Input rejected before any request left the process."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class FcTransportError(FcError):
    """No usable HTTP reply: connection refused or reset, timeout."""

    retryable = True


class FcConnectError(FcTransportError):
    """The connection could not be made: the request never reached the server, so any call may be repeated
    (even a non-idempotent one). Also importable from ``core.http``, where it was first defined."""


class FcResponseError(FcError):
    """A reply that does not parse as what the API documents (retryable: proxies and gateways produce these)."""

    retryable = True

    def __init__(self, msg: str, *, status: int | None = None, request_id: str | None = None) -> None:
        super().__init__(msg)
        self.status = status
        self.request_id = request_id


class ApiErrorFields(TypedDict):
    """The keyword arguments of :class:`FcApiError` after the message (a subclass passes them on)."""

    status: int
    code: str | None
    request_id: str | None
    retry_after: NotRequired[float | None]


class FcApiError(FcError):
    """An error reply from FC, MNS or SLS."""

    def __init__(
        self,
        msg: str,
        *,
        status: int,
        code: str | None,
        request_id: str | None,
        retry_after: float | None = None,
    ) -> None:
        self.message = redact(msg)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(self._text())

    def _text(self) -> str:
        where = f", request id {self.request_id}" if self.request_id else ""
        return f"HTTP {self.status} {self.code or 'error'}: {self.message}{where}"

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status == 429 or self.status >= 500


class FcInvalidArgumentError(FcApiError):
    pass


class FcPayloadTooLargeError(FcInvalidArgumentError):
    pass


class FcAuthError(FcApiError):
    pass


class FcNotFoundError(FcApiError):
    pass


class FcConflictError(FcApiError):
    pass


class FcTaskIdInUseError(FcConflictError):
    """FC refused an async task id as used (409) and the task holding it is not this request: ``why`` says how
    that is known; the message is :func:`task_id_in_use`'s."""

    def __init__(self, task_id: str, function_name: str, why: str, **fields: Unpack[ApiErrorFields]) -> None:
        self.task_id = task_id
        self.function_name = function_name
        self.why = why
        super().__init__(task_id_in_use(task_id, function_name, why), **fields)

    def message_for(self, *, generated: bool) -> str:
        """The message again, with the advice for a ``generated`` id (an operator's) when it is one."""
        return task_id_in_use(self.task_id, self.function_name, self.why, generated=generated)


class FcThrottledError(FcApiError):
    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return True  # whatever the status: SLS answers 403 ReadQuotaExceed


class FcServerError(FcApiError):
    pass


FUNCTION_MISSING_CODES = frozenset(
    {"FunctionNotFound", "AliasNotFound", "VersionNotFound", "ServiceNotFound"}
)
"""404 codes that mean the function (or its qualifier) is missing, not the object asked for."""

_THROTTLE_CODES = frozenset(
    {"ResourceExhausted", "Throttling", "QpsLimitExceeded", "ReadQuotaExceed", "ShardReadQuotaExceed"}
)


def api_error(
    status: int,
    code: str | None,
    message: str | None,
    request_id: str | None,
    retry_after: float | None = None,
) -> FcApiError:
    """The subclass that fits ``status`` and ``code``."""
    cls: type[FcApiError]
    if code == "EntityTooLarge" or status == 413:
        cls = FcPayloadTooLargeError
    elif code in _THROTTLE_CODES:  # before the 403 rule: SLS throttles with 403 ReadQuotaExceed
        cls = FcThrottledError
    elif status in (401, 403):
        cls = FcAuthError
    elif status == 404:
        cls = FcNotFoundError
    elif status == 409:
        cls = FcConflictError
    elif status == 429:
        cls = FcThrottledError
    elif status >= 500:
        cls = FcServerError
    elif status == 400:
        cls = FcInvalidArgumentError
    else:
        cls = FcApiError
    return cls(
        message or "(no message)", status=status, code=code, request_id=request_id, retry_after=retry_after
    )


def task_id_in_use(task_id: str, function_name: str, why: str, *, generated: bool = False) -> str:
    """The one message of a refused task id, the client's and the operator's: which id, that FC refused it as
    used, why the existing task is not this request, and what to do, which depends on whose id it is.

    A caller's id is an idempotency key (the same payload returns the existing task). A ``generated`` id (the
    operator's, ``core.task_ids``) names one try of one DAG run, so the same payload does not make it this run's;
    the way out is another DAG run id (or an id of one's own, which is an idempotency key).
    """
    head = (
        f"FC refused async task id {task_id!r} of function {function_name} as already used (409), and the "
        f"existing task is not this request: {why}. Its result is not reported. "
    )
    if generated:
        return head + (
            "The id was generated for this try of this DAG run (dag, task, run id, map index, try), so a new "
            "DAG run id gets new ids; an async_task_id of your own is an idempotency key instead"
        )
    return head + (
        "A task id is an idempotency key: the same id with the same payload returns the existing task's result; "
        "a new invocation needs a new id (e.g. a templated async_task_id such as 'nightly-{{ ds }}', or the "
        "operator's generated id)"
    )
