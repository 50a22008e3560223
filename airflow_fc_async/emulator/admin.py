"""Admin endpoints under /_emulator/ (no signature): health, stats, faults, runtime deploys, logs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_fc_async.emulator.config import (
    ConfigError,
    FunctionSpec,
    async_config_from_json,
    destination_queues,
    log_config_from_json,
)
from airflow_fc_async.emulator.settings import ADMIN_PREFIX
from airflow_fc_async.emulator.wire import Request, Response

if TYPE_CHECKING:
    from airflow_fc_async.emulator.app import Emulator

__all__ = ["Admin", "spec_from_json"]


def spec_from_json(raw: dict[str, Any], workdir: Path) -> FunctionSpec:
    """A deploy request -> FunctionSpec; inline ``source`` is written to ``workdir/<name>/<module>.py``."""
    name = raw.get("name") or raw.get("functionName")
    if not isinstance(name, str) or not name:
        raise ConfigError("deploy: name is required")
    handler = str(raw.get("handler") or "index.handler")
    if "." not in handler:
        raise ConfigError(f"deploy: handler must be 'module.function', got {handler!r}")
    if raw.get("source") is not None:
        code_dir = workdir / name
        code_dir.mkdir(parents=True, exist_ok=True)
        (code_dir / (handler.rpartition(".")[0].replace(".", "/") + ".py")).write_text(
            str(raw["source"]), encoding="utf-8"
        )
    elif raw.get("code_dir") or raw.get("code"):
        code_dir = Path(str(raw.get("code_dir") or raw.get("code"))).resolve()
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
        spec.async_config = async_config_from_json(cfg, "deploy", "asyncInvokeConfig")
        spec.async_qualifier = str(cfg.get("qualifier") or "LATEST")
    return spec


def _json(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value).encode("utf-8"), {"content-type": "application/json"})


class Admin:
    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator
        self.workdir = Path(tempfile.mkdtemp(prefix="fc-emulator-"))

    def __call__(self, request: Request) -> Response:
        sub = request.path[len(ADMIN_PREFIX) :].strip("/")
        try:
            body = json.loads(request.body) if request.body.strip() else {}
        except ValueError as exc:
            return _json(400, {"error": f"the body is not JSON: {exc}"})
        try:
            return self._route(request.method, sub, body)
        except (ConfigError, ValueError, TypeError) as exc:
            return _json(400, {"error": str(exc)})

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
