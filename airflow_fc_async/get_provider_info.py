"""Provider metadata, read by Airflow's providers manager through the ``apache_airflow_provider`` entry point.

Kept import-free (a plain dict) so that provider discovery never loads a hook or an HTTP library.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONN_TYPE", "HOOK_NAME", "get_provider_info"]

CONN_TYPE = "alibaba_fc"
HOOK_NAME = "Alibaba Cloud Function Compute"
_INTEGRATION = "Alibaba Cloud Function Compute"
_MNS_INTEGRATION = "Alibaba Cloud Simple Message Queue (MNS)"


def _field(label: str, description: str, *, secret: bool = False, fmt: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"
    elif fmt:
        schema["format"] = fmt
    return {"label": label, "description": description, "schema": schema}


def _airflow_major() -> int:
    """The installed Airflow's major version, read from package metadata (no Airflow import).

    The one version branch outside ``compat.py``: provider discovery imports this module, which must import
    nothing (``compat`` imports Airflow's common-compat provider and reads ``airflow.__version__``).
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return int(version("apache-airflow").split(".", 1)[0])
    except (PackageNotFoundError, ValueError):
        return 0


def _event_driven(info: dict[str, Any]) -> dict[str, Any]:
    """Airflow 3 only: the MNS event trigger and its common-messaging queue (2.x knows no ``queues`` key)."""
    if _airflow_major() >= 3:
        info["triggers"].append(
            {"integration-name": _MNS_INTEGRATION, "python-modules": ["airflow_fc_async.triggers.mns_events"]}
        )
        info["queues"] = ["airflow_fc_async.queues.mns.MnsMessageQueueProvider"]
    return info


def get_provider_info() -> dict[str, Any]:
    return _event_driven(
        {
            "package-name": "airflow-fc-async",
            "name": "Alibaba Cloud Function Compute (async tasks)",
            "description": (
                "Run `Alibaba Cloud Function Compute <https://www.alibabacloud.com/product/function-compute>`__ 3.0 "
                "functions as async tasks: invoke, follow (deferrable), stop, re-run, configure destinations, and read "
                "destination records from Simple Message Queue (MNS). Ships a local FC/MNS emulator.\n"
            ),
            "integrations": [
                {
                    "integration-name": _INTEGRATION,
                    "external-doc-url": "https://www.alibabacloud.com/help/en/functioncompute/fc-3-0/",
                    "tags": ["alibaba"],
                },
                {
                    "integration-name": _MNS_INTEGRATION,
                    "external-doc-url": "https://www.alibabacloud.com/help/en/mns/",
                    "tags": ["alibaba"],
                },
            ],
            "operators": [
                {"integration-name": _INTEGRATION, "python-modules": ["airflow_fc_async.operators.fc"]}
            ],
            "sensors": [
                {"integration-name": _INTEGRATION, "python-modules": ["airflow_fc_async.sensors.fc"]},
                {"integration-name": _MNS_INTEGRATION, "python-modules": ["airflow_fc_async.sensors.mns"]},
            ],
            "hooks": [
                {"integration-name": _INTEGRATION, "python-modules": ["airflow_fc_async.hooks.fc"]},
                {"integration-name": _MNS_INTEGRATION, "python-modules": ["airflow_fc_async.hooks.mns"]},
            ],
            "triggers": [
                {"integration-name": _INTEGRATION, "python-modules": ["airflow_fc_async.triggers.fc"]},
                {"integration-name": _MNS_INTEGRATION, "python-modules": ["airflow_fc_async.triggers.mns"]},
            ],
            "connection-types": [
                {
                    "connection-type": CONN_TYPE,
                    "hook-class-name": "airflow_fc_async.hooks.fc.FcHook",
                    "hook-name": HOOK_NAME,
                    "conn-fields": {
                        "access_key_id": _field(
                            "Access Key ID", "AccessKey id (an STS. id when a token is set)"
                        ),
                        "access_key_secret": _field("Access Key Secret", "AccessKey secret", secret=True),
                        "security_token": _field("Security Token", "STS token (optional)", secret=True),
                        "region": _field("Region", "Region id, e.g. cn-hangzhou"),
                        "account_id": _field(
                            "Account ID", "Alibaba Cloud account (UID) that owns the function"
                        ),
                        "fc_endpoint": _field(
                            "FC endpoint",
                            "Override scheme://host:port, e.g. http://127.0.0.1:9000",
                            fmt="url",
                        ),
                        "mns_endpoint": _field(
                            "MNS endpoint", "Override scheme://host:port of MNS", fmt="url"
                        ),
                        "sls_endpoint": _field(
                            "SLS endpoint", "Override scheme://host:port of SLS", fmt="url"
                        ),
                    },
                    "ui-field-behaviour": {
                        "hidden-fields": ["schema", "port", "host", "login", "password"],
                        "relabeling": {},
                        "placeholders": {},
                    },
                }
            ],
            "extra-links": ["airflow_fc_async.links.FcAsyncTaskLink"],
        }
    )
