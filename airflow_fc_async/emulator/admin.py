"""Admin endpoints under /_emulator/: health, stats, faults, runtime deploys, logs.

A deploy runs code, so nothing a web page can send gets through: every request carries the per-start admin token
(a custom header, which a cross-origin page cannot set without a CORS preflight the emulator never grants), a
request with an ``Origin`` header (any browser's fetch or form POST) is refused, a body must be JSON, function
names follow FC's rule before they name a folder, and code folders given over HTTP stay inside the work directory.
"""

from __future__ import annotations

import hmac
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_fc_async.emulator.config import (
    ConfigError,
    FunctionSpec,
    async_invoke_config_from_json,
    check_function_name,
    check_handler,
    destination_queues,
    log_config_from_json,
)
from airflow_fc_async.emulator.settings import ADMIN_PREFIX, ADMIN_TOKEN_HEADER
from airflow_fc_async.emulator.wire import Request, Response

if TYPE_CHECKING:
    from airflow_fc_async.emulator.app import Emulator

__all__ = ["Admin", "spec_from_json"]


def spec_from_json(raw: dict[str, Any], workdir: Path, *, confine: bool = True) -> FunctionSpec:
    """A deploy request -> FunctionSpec; inline ``source`` is written to ``workdir/<name>/<module>.py``.

    ``confine``: a ``code_dir`` must resolve inside ``workdir`` (deploys over HTTP; the Python API may name any
    folder of the caller's).
    """
    name = check_function_name(raw.get("name") or raw.get("functionName"), "deploy: name")
    handler = check_handler(str(raw.get("handler") or "index.handler"), "deploy: handler")
    root = workdir.resolve()
    if raw.get("source") is not None:
        code_dir = root / name
        module = code_dir / (handler.rpartition(".")[0].replace(".", "/") + ".py")
        module.parent.mkdir(parents=True, exist_ok=True)
        module.write_text(str(raw["source"]), encoding="utf-8")
    elif raw.get("code_dir") or raw.get("code"):
        given = Path(str(raw.get("code_dir") or raw.get("code")))
        code_dir = (root / given).resolve() if confine else given.resolve()
        if confine and not code_dir.is_relative_to(root):
            raise ConfigError(
                f"deploy: code_dir must be a folder inside the emulator's work directory {root}"
            )
    else:
        raise ConfigError("deploy: code_dir or source is required")
    spec = FunctionSpec(
        name=name,
        handler=handler,
        code_dir=code_dir,
        runtime=str(raw.get("runtime", "python3.10")),
        timeout=float(raw.get("timeout", 3)),
        memory_size=int(raw.get("memory_size", raw.get("memorySize", 128))),
        instance_concurrency=int(raw.get("instance_concurrency", raw.get("instanceConcurrency", 1))),
        environment={
            str(k): str(v)
            for k, v in (raw.get("environment") or raw.get("environmentVariables") or {}).items()
        },
        description=str(raw.get("description", "")),
    )
    spec.log_config = log_config_from_json(
        raw.get("log_config", raw.get("logConfig")), "deploy", "cn-hangzhou"
    )
    cfg = raw.get("async_invoke_config", raw.get("asyncInvokeConfig"))
    if cfg is not None:
        spec.async_config = async_invoke_config_from_json(cfg, "deploy", "asyncInvokeConfig")
        spec.async_qualifier = str(cfg.get("qualifier") or "LATEST")
    return spec


def _json(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value).encode("utf-8"), {"content-type": "application/json"})


class Admin:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self.workdir = Path(tempfile.mkdtemp(prefix="fc-emulator-"))

    def __call__(self, request: Request) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        sub = request.path[len(ADMIN_PREFIX) :].strip("/")
        try:
            body = json.loads(request.body) if request.body.strip() else {}
        except ValueError as exc:
            return _json(400, {"error": f"the body is not JSON: {exc}"})
        try:
            return self._route(request.method, sub, body)
        except (ConfigError, ValueError, TypeError) as exc:
            return _json(400, {"error": str(exc)})

    def _refuse(self, request: Request) -> Response | None:
        """The answer to a request that may not use the admin API, or None."""
        if "origin" in request.headers:
            return _json(403, {"error": "admin requests from a web page (with an Origin header) are refused"})
        token = request.headers.get(ADMIN_TOKEN_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.emu.settings.admin_token.encode()):
            return _json(
                401,
                {
                    "error": f"the {ADMIN_TOKEN_HEADER} header is missing or wrong: the admin token is printed "
                    "when the emulator starts (Emulator.admin_token in Python)"
                },
            )
        content_type = request.headers.get("content-type")
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if (content_type is not None or request.body) and media != "application/json":
            return _json(415, {"error": f"admin request bodies are application/json, got {content_type!r}"})
        return None

    def _route(self, method: str, sub: str, body: Any) -> Response:
        emu = self.emu
        if sub in ("", "health") and method == "GET":
            return _json(
                200,
                {
                    "status": "ok",
                    "endpoint": emu.endpoint,
                    "functions": emu.scheduler.function_names(),
                    "queues": emu.queues.names(),
                },
            )
        if sub == "stats" and method == "GET":
            return _json(200, emu.stats())
        if sub in ("stats/reset", "stats") and method in ("POST", "DELETE"):
            emu.reset_stats()
            return _json(200, {"reset": True})
        if sub == "faults":
            if method == "GET":
                return _json(200, {"rules": emu.router.faults.rules()})
            if method == "DELETE":
                emu.router.faults.clear()
                return _json(200, {"rules": []})
            if method in ("POST", "PUT"):
                rules = body.get("rules", [body] if body else [])
                emu.router.faults.set(rules, int(body.get("seed", 0)))
                return _json(200, {"rules": emu.router.faults.rules()})
        if sub == "functions" and method in ("POST", "PUT"):
            spec = spec_from_json(body, self.workdir)
            emu.deploy_spec(spec)
            return _json(200, {"functionName": spec.name, "queues": destination_queues(spec)})
        if sub.startswith("logs/") and method == "GET":
            text = emu.logs(sub[len("logs/") :])
            return Response(200, text.encode("utf-8"), {"content-type": "text/plain; charset=utf-8"})
        return _json(404, {"error": f"no admin endpoint {method} {ADMIN_PREFIX}/{sub}"})
