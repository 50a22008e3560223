"""The child side of one attempt: load the handler, call ``handler(event, context)``, report the result.

Preloaded in the forkserver so that an attempt costs a fork, not an interpreter start. Imports only the stdlib.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import resource
import sys
import traceback
from typing import Any

__all__ = ["Context", "run_attempt"]


class _Obj:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


class Credentials(_Obj):
    """Placeholder credentials (FC passes the role's STS credentials)."""

    def __repr__(self) -> str:
        return "Credentials(access_key_id=..., access_key_secret=***, security_token=***)"


class FunctionMeta(_Obj):
    pass


class Context(_Obj):
    """What FC's python runtime passes as ``context``."""


def _context(meta: dict[str, Any]) -> Context:
    fn = FunctionMeta(
        name=meta["function_name"],
        handler=meta["handler"],
        memory=meta["memory_size"],
        memory_size=meta["memory_size"],
        timeout=meta["timeout"],
        qualifier=meta.get("qualifier", "LATEST"),
        version="LATEST",
    )
    return Context(
        request_id=meta["request_id"],
        function=fn,
        credentials=Credentials(access_key_id="", access_key_secret="", security_token=""),
        region=meta["region"],
        account_id=meta["account_id"],
        service=_Obj(
            name="", log_project="", log_store="", qualifier=meta.get("qualifier", "LATEST"), version_id=""
        ),
        tracing=_Obj(open_tracing_span_context=None, jaeger_endpoint=None),
        retry_count=meta.get("retry_count", 0),
        instance_id=meta.get("instance_id", ""),
    )


def _result_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return json.dumps(value).encode("utf-8")
    except (TypeError, ValueError):
        return str(value).encode("utf-8")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_attempt(meta: dict[str, Any], event: bytes, log_path: str, conn: Any) -> None:
    """Entry point in the child; sends ``("ok", bytes, peak_mb)`` or ``("error", error_dict, peak_mb)``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives as long as we do
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    os.environ.update(meta.get("environment") or {})
    code_dir = meta["code_dir"]
    with contextlib.suppress(OSError):
        os.chdir(code_dir)
    sys.path.insert(0, code_dir)
    try:
        module_name, _, func_name = meta["handler"].rpartition(".")
        handler = getattr(importlib.import_module(module_name), func_name)
        result = handler(event, _context(meta))
        outcome: tuple[str, Any, float] = ("ok", _result_bytes(result), _peak_mb())
    except BaseException as exc:
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None  # hide the runner frame
        stack = traceback.format_exception(type(exc), exc, tb)
        print("".join(stack), file=sys.stderr, end="")
        error = {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "stackTrace": [s.rstrip("\n") for s in stack],
        }
        outcome = ("error", error, _peak_mb())
    sys.stdout.flush()
    sys.stderr.flush()
    conn.send(outcome)
    conn.close()
