"""The Airflow plugin: mounts the DR API inside the api-server and links it from the UI."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from disaster_recovery.api.app import create_app


class DisasterRecoveryPlugin(AirflowPlugin):
    name = "disaster_recovery"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/disaster-recovery", "name": "Disaster Recovery API"}]
    external_views = [
        {
            "name": "DR API",
            "href": "disaster-recovery/docs",
            "destination": "nav",
            "category": "browse",
            "url_route": "disaster-recovery",
        }
    ]
