"""The Airflow plugin the provider registers (entry point ``airflow.plugins``): the "FC async tasks" page.

Airflow 3.1+ mounts ``fastapi_apps`` and shows ``external_views`` (the nav page, and an "FC async task" tab of
each task instance); on older versions the plugin is empty
(nothing offered, no error: the app module, which needs the 3.x API server, is
never imported there).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_fc_async.compat import ui_plugin_supported

__all__ = ["TI_VIEW_QUERY", "URL_PREFIX", "FcAsyncTasksPlugin"]

URL_PREFIX = "/fc-async"
TI_VIEW_QUERY = "/ti?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}"


def _apps() -> list[dict[str, Any]]:
    if not ui_plugin_supported():
        return []
    from airflow_fc_async.ui.api import app

    return [{"app": app, "url_prefix": URL_PREFIX, "name": "FC async tasks"}]


def _views() -> list[dict[str, Any]]:
    if not ui_plugin_supported():
        return []
    return [
        {
            "name": "FC async tasks",
            "href": URL_PREFIX + "/",
            "destination": "nav",
            "category": "browse",
            "url_route": "fc-async-tasks",
        },
        {
            # a tab on every task instance (the interface cannot name an operator): tasks that started no FC task
            # say so; the UI fills the placeholders ({MAP_INDEX} for mapped task instances only)
            "name": "FC async task",
            "href": URL_PREFIX + TI_VIEW_QUERY,
            "destination": "task_instance",
            "url_route": "fc-async-task",
        },
    ]


class FcAsyncTasksPlugin(AirflowPlugin):
    name = "fc_async_tasks"
    fastapi_apps = _apps()
    external_views = _views()
