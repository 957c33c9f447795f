"""FastAPI app factory for the DR API (mounted at /disaster-recovery by the Airflow plugin).

Every route requires an authenticated Airflow user: plugin apps are not protected by default.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI


def create_app() -> FastAPI:
    from airflow.api_fastapi.core_api.security import requires_authenticated

    app = FastAPI(
        title="Disaster Recovery API",
        dependencies=[Depends(requires_authenticated())],
    )

    @app.get("/api/health")
    def health() -> dict:
        return {"success": True, "service": "disaster-recovery"}

    return app
