"""Checks a ``validation`` step runs (and a ``service_start`` health check): sql, tcp, http."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from disaster_recovery.plans.language.base import PlanModel, raise_problems
from disaster_recovery.plans.language.durations import PositiveDuration
from disaster_recovery.plans.language.names import ClusterRef, ConnId
from disaster_recovery.plans.rules.secret_keys import url_has_credentials


def check_url(url: str, loc: str) -> list[tuple[tuple[str, ...], str, Any]]:
    if not url.startswith(("http://", "https://")):
        return [((loc,), f"{url!r} is not an http:// or https:// URL", url)]
    if url_has_credentials(url):
        return [((loc,), "URL embeds a password; use an http connection (http_conn_id) instead", url)]
    return []


def http_target_problems(*, url: str | None, http_conn_id: str | None, endpoint: str) -> list:
    """An HTTP target is a full ``url`` or an ``http_conn_id`` (+ ``endpoint``), never both."""
    problems: list[tuple[tuple[str, ...], str, Any]] = []
    if (url is None) == (http_conn_id is None):
        problems.append((("url",), "give exactly one of 'url' or 'http_conn_id'", url))
    if url is not None:
        problems += check_url(url, "url")
        if endpoint:
            problems.append((("endpoint",), "'endpoint' goes with 'http_conn_id', not 'url'", endpoint))
    return problems


class SqlCheck(PlanModel):
    """Runs ``query`` on ``conn_id`` (or on a cluster's current primary or standby); the first column of the
    first row is compared to ``expected``."""

    kind: Literal["sql"]
    name: str | None = Field(None, max_length=100, description="label shown in results")
    conn_id: ConnId | None = Field(None, description="Airflow connection of the database to query")
    cluster: ClusterRef | None = Field(None, description="or: a cluster of include/clusters.yaml (see 'role')")
    role: Literal["primary", "standby"] = Field("primary", description="with 'cluster': which member, found at run time")
    query: str = Field(min_length=1, description="a single SQL statement; read-only is best")
    expected: Any = Field(
        None,
        description="value the first column of the first row must equal; null: the query only has to run",
    )
    timeout: PositiveDuration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _one_target(self) -> SqlCheck:
        if (self.conn_id is None) == (self.cluster is None):
            raise_problems(type(self).__name__, [(("conn_id",), "give exactly one of 'conn_id' or 'cluster'", None)])
        return self

    @property
    def target_words(self) -> str:
        return f"the {self.role} of cluster {self.cluster}" if self.cluster else str(self.conn_id)


class TcpCheck(PlanModel):
    """A TCP connect to ``host:port`` succeeds within ``timeout``."""

    kind: Literal["tcp"]
    name: str | None = Field(None, max_length=100, description="label shown in results")
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    timeout: PositiveDuration = timedelta(seconds=5)


class HttpCheck(PlanModel):
    """An HTTP request answers with ``expected_status`` (and a body containing a text)."""

    kind: Literal["http"]
    name: str | None = Field(None, max_length=100, description="label shown in results")
    url: str | None = Field(None, description="full URL; or use http_conn_id + endpoint")
    http_conn_id: ConnId | None = Field(None, description="Airflow HTTP connection (base URL, auth)")
    endpoint: str = Field("", description="path appended to the connection's base URL")
    method: Literal["GET", "HEAD"] = "GET"
    expected_status: int = Field(200, ge=100, le=599)
    expect_body_contains: str | None = None
    timeout: PositiveDuration = timedelta(seconds=10)

    @model_validator(mode="after")
    def _one_target(self) -> HttpCheck:
        problems = []
        problems += http_target_problems(url=self.url, http_conn_id=self.http_conn_id, endpoint=self.endpoint)
        raise_problems(type(self).__name__, problems)
        return self


Check = Annotated[SqlCheck | TcpCheck | HttpCheck, Field(discriminator="kind")]
HealthCheck = Annotated[TcpCheck | HttpCheck, Field(discriminator="kind")]
