"""Provider registration: metadata shape, schema, and discovery by Airflow's providers manager."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
from pathlib import Path

import jsonschema
import pytest

from airflow_fc_async.compat import _airflow_version
from airflow_fc_async.get_provider_info import get_provider_info

INFO = get_provider_info()
CONN = INFO["connection-types"][0]


def _schema(name: str) -> dict:
    import airflow

    return json.loads((Path(airflow.__file__).parent / name).read_text())


def test_package_name_is_the_distribution_name() -> None:
    dist = importlib.metadata.distribution("airflow-fc-async")
    assert INFO["package-name"] == dist.metadata["Name"]
    eps = [ep for ep in dist.entry_points if ep.group == "apache_airflow_provider"]
    assert [ep.value for ep in eps] == ["airflow_fc_async.get_provider_info:get_provider_info"]


def test_matches_airflow_schemas() -> None:
    jsonschema.validate(INFO, _schema("provider_info.schema.json"))
    # conn-fields and ui-field-behaviour are only described by the provider.yaml schema: check that part too
    yaml_schema = _schema("provider.yaml.schema.json")
    jsonschema.validate(CONN, yaml_schema["properties"]["connection-types"]["items"])


def test_connection_type_declaration() -> None:
    assert CONN["connection-type"] == "alibaba_fc"
    assert CONN["hook-name"] == "Alibaba Cloud Function Compute"
    module, _, cls = CONN["hook-class-name"].rpartition(".")
    assert getattr(importlib.import_module(module), cls).conn_type == "alibaba_fc"
    fields = CONN["conn-fields"]
    assert {
        "access_key_id",
        "access_key_secret",
        "security_token",
        "region",
        "account_id",
        "fc_endpoint",
        "mns_endpoint",
        "sls_endpoint",
    } <= set(fields)
    secret_fields = {name for name, f in fields.items() if f["schema"].get("format") == "password"}
    assert secret_fields == {"access_key_secret", "security_token"}
    assert {"schema", "port", "host"} <= set(CONN["ui-field-behaviour"]["hidden-fields"])


def test_module_lists() -> None:
    assert INFO["operators"][0]["python-modules"] == ["airflow_fc_async.operators.fc"]
    sensors = [m for s in INFO["sensors"] for m in s["python-modules"]]
    triggers = [m for t in INFO["triggers"] for m in t["python-modules"]]
    hooks = [m for h in INFO["hooks"] for m in h["python-modules"]]
    assert sensors == ["airflow_fc_async.sensors.fc", "airflow_fc_async.sensors.mns"]
    event_triggers = ["airflow_fc_async.triggers.mns_events"] if _airflow_version() >= (3, 0) else []
    assert triggers == ["airflow_fc_async.triggers.fc", "airflow_fc_async.triggers.mns", *event_triggers]
    for module in triggers:  # every listed trigger module imports on this Airflow
        importlib.import_module(module)
    assert hooks == ["airflow_fc_async.hooks.fc", "airflow_fc_async.hooks.mns"]
    for module in hooks:
        importlib.import_module(module)
    assert INFO["extra-links"] == ["airflow_fc_async.links.FcAsyncTaskLink"]
    integrations = {i["integration-name"] for i in INFO["integrations"]}
    for section in ("operators", "sensors", "hooks", "triggers"):
        assert {e["integration-name"] for e in INFO[section]} <= integrations


@pytest.fixture(scope="module")
def providers_manager():
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:  # Airflow before 3.2
        from airflow.providers_manager import ProvidersManager as Manager
    return Manager()


def test_discovered_by_airflow(providers_manager) -> None:
    from airflow.providers_manager import ProvidersManager

    assert "airflow-fc-async" in ProvidersManager().providers
    hook = providers_manager.hooks["alibaba_fc"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_fc_async.hooks.fc.FcHook"
    assert hook.connection_id_attribute_name == "fc_conn_id"
    # alibaba_cloud stays the alibaba provider's own type (registered by its newer releases), never ours
    other = providers_manager.hooks.get("alibaba_cloud")
    assert other is None or other.package_name == "apache-airflow-providers-alibaba"
