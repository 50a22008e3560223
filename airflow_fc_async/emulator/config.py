"""Serverless Devs ``s.yaml`` (edition 3.0.0, component fc3) -> function specs.

Only what the emulator needs is read; unknown keys produce a warning, a broken file a ConfigError naming the
file and the key.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airflow_fc_async.core.endpoints import parse_mns_queue_arn

__all__ = [
    "AsyncConfigSpec",
    "AsyncInvokeConfigSpec",
    "ConfigError",
    "FunctionSpec",
    "async_config_from_json",
    "async_invoke_config_from_json",
    "check_function_name",
    "check_handler",
    "destination_queues",
    "load_config",
    "log_config_from_json",
]

log = logging.getLogger(__name__)

# FC's function-name rule (CreateFunction, functionName): letters, digits, _ and -, not starting with a digit or
# -, 1 to 64 characters. https://www.alibabacloud.com/help/en/functioncompute/fc-2-0/developer-reference/api-createfunction
_FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
# A python3 handler is ``module.function``; the module is a dotted import path (never a file path).
_HANDLER = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$", re.ASCII)


def check_function_name(name: object, where: str) -> str:
    """The name when it follows FC's rule; it names a folder and a URL path segment, so nothing else passes."""
    if not isinstance(name, str) or not _FUNCTION_NAME.match(name):
        raise ConfigError(
            f"{where} must be 1-64 letters, digits, _ or -, not starting with a digit or -, got {name!r}"
        )
    return name


def check_handler(handler: object, where: str) -> str:
    if not isinstance(handler, str) or not _HANDLER.match(handler):
        raise ConfigError(f"{where} must be 'module.function' (python identifiers), got {handler!r}")
    return handler


#: fc3 props the emulator knows; the second set is accepted silently (meaningful only in the cloud).
_USED = {
    "functionName",
    "handler",
    "runtime",
    "timeout",
    "memorySize",
    "instanceConcurrency",
    "code",
    "environmentVariables",
    "asyncInvokeConfig",
    "description",
    "region",
    "logConfig",
}
_IGNORED = {
    "internetAccess",
    "role",
    "cpu",
    "diskSize",
    "vpcConfig",
    "nasConfig",
    "ossMountConfig",
    "layers",
    "triggers",
    "customContainerConfig",
    "customRuntimeConfig",
    "instanceLifecycleConfig",
    "gpuConfig",
    "tracingConfig",
    "concurrencyConfig",
    "provisionConfig",
    "customDomain",
    "tags",
    "environment",
    "initializer",
    "initializationTimeout",
    "sessionAffinity",
    "vpcBinding",
    "artifact",
}
_ASYNC_KEYS = {
    "maxAsyncEventAgeInSeconds",
    "maxAsyncRetryAttempts",
    "asyncTask",
    "qualifier",
    "destinationConfig",
}


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the key."""


@dataclass
class AsyncInvokeConfigSpec:
    """An async invoke config as FC stores it (defaults: 3 retries, 86400 s event age)."""

    async_task: bool = False
    max_async_retry_attempts: int = 3
    max_async_event_age_in_seconds: int = 86400
    on_success: str | None = None
    on_failure: str | None = None
    created_time: str = ""
    last_modified_time: str = ""

    def to_json(self, function_arn: str) -> dict[str, Any]:
        dest: dict[str, Any] = {}
        if self.on_success:
            dest["onSuccess"] = {"destination": self.on_success}
        if self.on_failure:
            dest["onFailure"] = {"destination": self.on_failure}
        return {
            "asyncTask": self.async_task,
            "maxAsyncRetryAttempts": self.max_async_retry_attempts,
            "maxAsyncEventAgeInSeconds": self.max_async_event_age_in_seconds,
            "destinationConfig": dest,
            "functionArn": function_arn,
            "createdTime": self.created_time,
            "lastModifiedTime": self.last_modified_time,
        }


@dataclass
class FunctionSpec:
    """One function: how to run it and how FC queues its async events."""

    name: str
    handler: str
    code_dir: Path
    runtime: str = "python3.10"
    timeout: float = 3.0
    memory_size: int = 128
    instance_concurrency: int = 1
    environment: dict[str, str] = field(default_factory=dict)
    description: str = ""
    async_config: AsyncInvokeConfigSpec | None = None
    async_qualifier: str = "LATEST"
    log_config: dict[str, Any] | None = None
    """FC 3.0's ``logConfig`` as GetFunction returns it (project, logstore, ...); None: no logs shipped."""


def _where(source: str, key: str) -> str:
    return f"{source}: {key}"


def _int(value: Any, source: str, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"{_where(source, key)} must be an integer, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{_where(source, key)} must be an integer, got {value!r}") from None
    if not lo <= number <= hi:
        raise ConfigError(f"{_where(source, key)} must be between {lo} and {hi}, got {number}")
    return number


def _destination(value: Any, source: str, key: str) -> str | None:
    if value is None:
        return None
    arn = value.get("destination") if isinstance(value, dict) else None
    if not isinstance(arn, str) or not arn.startswith("acs:"):
        raise ConfigError(f"{_where(source, key)} needs 'destination: acs:...', got {value!r}")
    return arn


def async_invoke_config_from_json(
    raw: Any, source: str, prefix: str = "asyncInvokeConfig"
) -> AsyncInvokeConfigSpec:
    """Validate an asyncInvokeConfig mapping (the s.yaml block or a PutAsyncInvokeConfig body)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{_where(source, prefix)} must be a mapping, got {type(raw).__name__}")
    for key in raw.keys() - _ASYNC_KEYS - {"functionArn", "createdTime", "lastModifiedTime"}:
        log.warning("%s: unknown key %s.%s ignored", source, prefix, key)
    spec = AsyncInvokeConfigSpec()
    if "asyncTask" in raw:
        if not isinstance(raw["asyncTask"], bool):
            raise ConfigError(f"{_where(source, prefix + '.asyncTask')} must be true or false")
        spec.async_task = raw["asyncTask"]
    if raw.get("maxAsyncRetryAttempts") is not None:
        spec.max_async_retry_attempts = _int(
            raw["maxAsyncRetryAttempts"], source, prefix + ".maxAsyncRetryAttempts", 0, 8
        )
    if raw.get("maxAsyncEventAgeInSeconds") is not None:
        spec.max_async_event_age_in_seconds = _int(
            raw["maxAsyncEventAgeInSeconds"], source, prefix + ".maxAsyncEventAgeInSeconds", 1, 2592000
        )
    dest = raw.get("destinationConfig") or {}
    if not isinstance(dest, dict):
        raise ConfigError(f"{_where(source, prefix + '.destinationConfig')} must be a mapping")
    spec.on_success = _destination(dest.get("onSuccess"), source, prefix + ".destinationConfig.onSuccess")
    spec.on_failure = _destination(dest.get("onFailure"), source, prefix + ".destinationConfig.onFailure")
    return spec


def log_config_from_json(raw: Any, source: str, region: str, key: str = "logConfig") -> dict[str, Any] | None:
    """An fc3 ``logConfig``: a mapping with ``project`` and ``logstore``, or ``auto`` (the names FC picks)."""
    if raw is None:
        return None
    if raw == "auto":  # GUESS: the names Serverless Devs creates for logConfig: auto
        raw = {"project": f"serverless-{region}-emulator", "logstore": "default-logs"}
    if not isinstance(raw, dict):
        raise ConfigError(f"{_where(source, key)} must be a mapping (project, logstore) or 'auto'")
    for name in ("project", "logstore"):
        if not isinstance(raw.get(name), str) or not raw[name] or "/" in raw[name]:
            raise ConfigError(f"{_where(source, key + '.' + name)} is required (a name)")
    return {
        "project": raw["project"],
        "logstore": raw["logstore"],
        "enableRequestMetrics": bool(raw.get("enableRequestMetrics", True)),
        "enableInstanceMetrics": bool(raw.get("enableInstanceMetrics", False)),
        "logBeginRule": str(raw.get("logBeginRule") or "None"),
    }


def _function(name: str, props: Any, path: Path) -> FunctionSpec:
    source = str(path)
    where = f"resources.{name}.props"
    if not isinstance(props, dict):
        raise ConfigError(f"{_where(source, where)} must be a mapping")
    for key in props.keys() - _USED - _IGNORED:
        log.warning("%s: unknown key %s.%s ignored", source, where, key)
    for key in ("functionName", "handler"):
        if not isinstance(props.get(key), str) or not props[key]:
            raise ConfigError(f"{_where(source, where + '.' + key)} is required (a string)")
    check_function_name(props["functionName"], _where(source, where + ".functionName"))
    handler = check_handler(props["handler"], _where(source, where + ".handler"))
    runtime = str(props.get("runtime", "python3.10"))
    if not runtime.startswith("python3") and runtime != "emulator-sleep":
        raise ConfigError(
            f"{_where(source, where + '.runtime')}: only python3.x runtimes run here, got {runtime!r}"
        )
    code = props.get("code", ".")
    if isinstance(code, dict):  # {src: ./code} form
        code = code.get("src", ".")
    if not isinstance(code, str):
        raise ConfigError(f"{_where(source, where + '.code')} must be a folder path")
    env = props.get("environmentVariables") or {}
    if not isinstance(env, dict):
        raise ConfigError(f"{_where(source, where + '.environmentVariables')} must be a mapping")
    spec = FunctionSpec(
        name=props["functionName"],
        handler=handler,
        code_dir=(path.parent / code).resolve(),
        runtime=runtime,
        timeout=float(_int(props.get("timeout", 3), source, where + ".timeout", 1, 86400)),
        memory_size=_int(props.get("memorySize", 128), source, where + ".memorySize", 64, 32768),
        instance_concurrency=_int(
            props.get("instanceConcurrency", 1), source, where + ".instanceConcurrency", 1, 200
        ),
        environment={str(k): str(v) for k, v in env.items()},
        description=str(props.get("description", "")),
    )
    if props.get("asyncInvokeConfig") is not None:
        raw = props["asyncInvokeConfig"]
        spec.async_config = async_invoke_config_from_json(raw, source, where + ".asyncInvokeConfig")
        spec.async_qualifier = str(raw.get("qualifier") or "LATEST")
    spec.log_config = log_config_from_json(
        props.get("logConfig"), source, str(props.get("region") or "cn-hangzhou"), where + ".logConfig"
    )
    return spec


def load_config(path: str | os.PathLike[str]) -> list[FunctionSpec]:
    """Every fc3 function of one s.yaml. Raises ConfigError with the file and the key at fault."""
    file = Path(path)
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{file}: the top level must be a mapping")
    edition = str(doc.get("edition", ""))
    if edition and not edition.startswith("3."):
        log.warning("%s: edition %s: only 3.0.0 is known", file, edition)
    resources = doc.get("resources")
    if not isinstance(resources, dict) or not resources:
        raise ConfigError(f"{file}: resources must be a non-empty mapping")
    functions = []
    for name, resource in resources.items():
        if not isinstance(resource, dict):
            raise ConfigError(f"{file}: resources.{name} must be a mapping")
        if resource.get("component") != "fc3":
            log.warning(
                "%s: resources.%s: component %r is not fc3, skipped", file, name, resource.get("component")
            )
            continue
        functions.append(_function(str(name), resource.get("props"), file))
    return functions


def destination_queues(spec: FunctionSpec) -> list[str]:
    """The MNS queue names an s.yaml destination config names (created at start)."""
    out = []
    cfg = spec.async_config
    for arn in (cfg.on_success, cfg.on_failure) if cfg else ():
        parsed = parse_mns_queue_arn(arn) if arn else None
        if parsed and parsed[2] not in out:
            out.append(parsed[2])
    return out


# The names before issue 18: a leading Async/a means asyncio (docs/architecture.md); this is FC's async invoke config.
AsyncConfigSpec = AsyncInvokeConfigSpec
async_config_from_json = async_invoke_config_from_json
