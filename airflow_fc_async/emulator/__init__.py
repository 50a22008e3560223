"""A local Function Compute 3.0 (async tasks) and MNS queue server for offline DAGs, tests and demos.

Imports no Airflow. ``from airflow_fc_async.emulator import Emulator``; CLI ``fc-emulator``.
"""

from __future__ import annotations

from airflow_fc_async.emulator.app import Emulator
from airflow_fc_async.emulator.config import ConfigError, FunctionSpec, load_config
from airflow_fc_async.emulator.settings import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_REGION,
    Settings,
)

__all__ = [
    "DEFAULT_ACCESS_KEY_ID",
    "DEFAULT_ACCESS_KEY_SECRET",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_REGION",
    "ConfigError",
    "Emulator",
    "FunctionSpec",
    "Settings",
    "load_config",
]
