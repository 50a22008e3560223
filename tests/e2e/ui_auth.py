"""An auth manager with per-DAG rights for the UI plugin's tests: SimpleAuthManager, except that the user
``stranger`` may do nothing on the DAGs named in :data:`HIDDEN_FROM_STRANGER` (as FAB's per-DAG roles allow)."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

HIDDEN_FROM_STRANGER = frozenset({"ui_owned"})


class DagScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if user.get_name() == "stranger" and details is not None and details.id in HIDDEN_FROM_STRANGER:
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
