"""Starting and watching DAG runs through Airflow's public REST API (asynchronously).

The health monitor runs inside the triggerer, which has no call to create a DAG run; the REST API is the
way Airflow offers, with the guarantee the monitor needs: run ids are unique per DAG, so a second
trigger of the same incident's run id is answered 409 and starts nothing. The credentials are an Airflow
HTTP connection (default ``dr_airflow_api``: host, port, login, password of a user allowed to trigger
runs); the run then names that user as who triggered it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_API_CONN_ID = "dr_airflow_api"
TOKEN_LIFETIME_SECONDS = 3600  # re-login well before Airflow's 24 h token expiry


class AirflowApiError(RuntimeError):
    """The Airflow API could not be reached or refused the request; the message says which and why."""


@dataclass(frozen=True, kw_only=True)
class ApiLogin:
    base_url: str
    username: str
    password: str

    @classmethod
    def from_connection(cls, conn_id: str = DEFAULT_API_CONN_ID) -> ApiLogin:
        from airflow.sdk.bases.hook import BaseHook

        try:
            connection = BaseHook.get_connection(conn_id)
        except Exception as exc:
            raise AirflowApiError(f"the Airflow API connection {conn_id!r} is not defined ({type(exc).__name__})") from exc
        scheme = connection.schema or "http"
        host = connection.host or "127.0.0.1"
        port = f":{connection.port}" if connection.port else ""
        if not connection.login:
            raise AirflowApiError(f"the Airflow API connection {conn_id!r} has no login")
        return cls(base_url=f"{scheme}://{host}{port}", username=connection.login, password=connection.password or "")


@dataclass(frozen=True, kw_only=True)
class TriggerOutcome:
    status: str  # created | exists | paused | not_found | refused
    run_id: str
    sentence: str

    @property
    def started(self) -> bool:
        return self.status in ("created", "exists")


class AirflowApi:
    """A small async client: token, trigger a run (idempotent by run id), read a run's state."""

    def __init__(self, login: ApiLogin, *, timeout: float = 5.0) -> None:
        self.login = login
        self._client = httpx.AsyncClient(base_url=login.base_url, timeout=timeout)
        self._token: str | None = None
        self._token_at = 0.0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _headers(self, *, fresh: bool = False) -> dict[str, str]:
        if fresh or self._token is None or time.monotonic() - self._token_at > TOKEN_LIFETIME_SECONDS:
            try:
                response = await self._client.post(
                    "/auth/token", json={"username": self.login.username, "password": self.login.password})
            except httpx.HTTPError as exc:
                raise AirflowApiError(f"cannot reach the Airflow API at {self.login.base_url}: {exc}") from exc
            if response.status_code not in (200, 201):
                raise AirflowApiError(f"the Airflow API refused the login of {self.login.username!r} "
                                      f"(HTTP {response.status_code})")
            self._token = response.json()["access_token"]
            self._token_at = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"}

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for fresh in (False, True):
            headers = await self._headers(fresh=fresh)
            try:
                response = await self._client.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                raise AirflowApiError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from exc
            if response.status_code != 401:
                return response
        return response

    async def dag_is_paused(self, dag_id: str) -> bool | None:
        """True/False, or None when the DAG does not exist."""
        response = await self._request("GET", f"/api/v2/dags/{dag_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise AirflowApiError(f"GET dag {dag_id}: HTTP {response.status_code} {response.text[:300]}")
        return bool(response.json().get("is_paused"))

    async def trigger(self, dag_id: str, *, run_id: str, conf: dict[str, Any], note: str | None = None) -> TriggerOutcome:
        """Create the run ``run_id`` of ``dag_id`` unless it exists (409): never two runs for one id."""
        paused = await self.dag_is_paused(dag_id)
        if paused is None:
            return TriggerOutcome(status="not_found", run_id=run_id,
                                  sentence=f"the DAG {dag_id} does not exist in Airflow (is the plan valid?)")
        if paused:
            return TriggerOutcome(status="paused", run_id=run_id,
                                  sentence=f"the DAG {dag_id} is paused: no automated recovery was started")
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": None, "conf": conf}
        if note:
            body["note"] = note
        response = await self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if response.status_code in (200, 201):
            return TriggerOutcome(status="created", run_id=run_id, sentence=f"triggered {dag_id} run {run_id}")
        if response.status_code == 409:
            return TriggerOutcome(status="exists", run_id=run_id,
                                  sentence=f"{dag_id} run {run_id} already exists: not started twice")
        return TriggerOutcome(status="refused", run_id=run_id,
                              sentence=f"Airflow refused to trigger {dag_id}: HTTP {response.status_code} "
                                       f"{response.text[:300]}")

    async def run_state(self, dag_id: str, run_id: str) -> str | None:
        """The run's state (queued, running, success, failed), None when there is no such run."""
        response = await self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise AirflowApiError(f"GET run {dag_id}/{run_id}: HTTP {response.status_code}")
        return response.json().get("state")
