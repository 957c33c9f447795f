"""Monitored services and their probes (``include/services.yaml``): the model and its loader.

A service has one probe (``postgres``, ``http`` or ``tcp``), how often it is probed (``interval``; after a
failed probe again within ``retry_interval``), how long a probe may take (``timeout``), and the thresholds
that turn a reading into a status. ``failures_to_unhealthy`` failed probes in a row make it unhealthy
(before that a failure is degraded); ``alert_after`` unhealthy readings in a row make the alert critical.
Error rate, availability and the response-time baseline of the anomaly rule are taken over the last
``window`` probes. The file's other top-level keys are the monitor's settings (``MonitorSettings``).

A postgres probe names a connection, or a cluster of include/clusters.yaml and a role: the member that
has the role is found at run time, so the probe follows the primary after a failover. Secrets never
appear here: probes name Airflow connections. Pure: no Airflow, no I/O beyond reading the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from disaster_recovery.config_files import ItemSet, file_json_schema, load_items
from disaster_recovery.plans.language.base import PlanModel, raise_problems
from disaster_recovery.plans.language.checks import http_target_problems
from disaster_recovery.plans.language.durations import PositiveDuration
from disaster_recovery.plans.language.names import ClusterRef, ConnId, ServiceName

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SERVICES_FILE = REPO / "include" / "services.yaml"
SERVICES_FILE_ENV = "DR_SERVICES_FILE"


def services_file(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(SERVICES_FILE_ENV) or DEFAULT_SERVICES_FILE)


def _ordered(model: PlanModel) -> None:
    degraded, unhealthy = model.degraded, model.unhealthy  # type: ignore[attr-defined]
    if degraded is not None and unhealthy is not None and unhealthy < degraded:
        raise_problems(type(model).__name__, [(("unhealthy",), f"the unhealthy limit ({unhealthy}) is below the "
                                               f"degraded limit ({degraded})", unhealthy)])


class Limits(PlanModel):
    """Above ``degraded`` the service is degraded, above ``unhealthy`` unhealthy (each optional)."""

    degraded: float | None = Field(None, ge=0)
    unhealthy: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check_order(self) -> Limits:
        _ordered(self)
        return self


class ByteLimits(PlanModel):
    """Limits in bytes (replication lag)."""

    degraded: int | None = Field(None, ge=0, description="bytes, e.g. 16777216 for 16 MiB")
    unhealthy: int | None = Field(None, ge=0, description="bytes")

    @model_validator(mode="after")
    def _check_order(self) -> ByteLimits:
        _ordered(self)
        return self


class PostgresProbe(PlanModel):
    """Connect and run ``query``; optionally judge replication lag and the primary's WAL archiving."""

    kind: Literal["postgres"]
    conn_id: ConnId | None = Field(None, description="Airflow postgres connection of the server to probe")
    cluster: ClusterRef | None = Field(None, description="or: a cluster of include/clusters.yaml (see 'role')")
    role: Literal["primary", "standby"] = Field("primary", description="with 'cluster': which member, found at run time")
    database: str | None = Field(None, description="database to connect to (default: the cluster's, else the "
                                 "connection's)")
    query: str = Field("SELECT 1", min_length=1, description="a single, cheap, read-only SQL statement")
    replication_lag_bytes: ByteLimits | None = Field(
        None, description="role primary: how far its streaming standbys are behind; role standby: how far it is "
        "behind the primary")
    replication_lag_seconds: Limits | None = Field(
        None, description="age of the last replayed transaction on the lagging standby (0 when it is caught up)")
    wal_archiving: bool = Field(
        False, description="check the primary's WAL archiver: failing, or archive_mode off, makes it degraded")

    @model_validator(mode="after")
    def _one_target(self) -> PostgresProbe:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if (self.conn_id is None) == (self.cluster is None):
            problems.append((("conn_id",), "give exactly one of 'conn_id' or 'cluster'", self.conn_id))
        elif self.conn_id is not None and "role" in self.model_fields_set:
            problems.append((("role",), "'role' goes with 'cluster'; a 'conn_id' is probed whatever it is", self.role))
        raise_problems(type(self).__name__, problems)
        return self

    @property
    def needs_state(self) -> bool:
        """Whether the probe must read the server's replication/archiver state, not only run the query."""
        return bool(self.cluster or self.replication_lag_bytes or self.replication_lag_seconds or self.wal_archiving)

    @property
    def target_words(self) -> str:
        return f"the {self.role} of cluster {self.cluster}" if self.cluster else f"connection {self.conn_id}"


class HttpProbe(PlanModel):
    """An HTTP request answers ``expected_status`` (and a body containing a text)."""

    kind: Literal["http"]
    url: str | None = Field(None, description="full URL; or use http_conn_id + endpoint")
    http_conn_id: ConnId | None = Field(None, description="Airflow HTTP connection (base URL, basic auth, headers)")
    endpoint: str = Field("", description="path appended to the connection's base URL")
    method: Literal["GET", "HEAD"] = "GET"
    expected_status: int = Field(200, ge=100, le=599, description="redirects are not followed")
    expect_body_contains: str | None = Field(None, min_length=1, description="text the body must contain")

    @model_validator(mode="after")
    def _one_target(self) -> HttpProbe:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        problems += http_target_problems(url=self.url, http_conn_id=self.http_conn_id, endpoint=self.endpoint)
        if self.method == "HEAD" and self.expect_body_contains is not None:
            problems.append((("expect_body_contains",), "a HEAD answer has no body; use GET", None))
        raise_problems(type(self).__name__, problems)
        return self


class TcpProbe(PlanModel):
    """A TCP connect succeeds: to ``host:port``, or to the host (and port) of an Airflow connection."""

    kind: Literal["tcp"]
    host: str | None = Field(None, min_length=1, max_length=253)
    port: int | None = Field(None, ge=1, le=65535, description="with 'conn_id': overrides the connection's port")
    conn_id: ConnId | None = Field(None, description="or: an Airflow connection giving host and port (e.g. "
                                   "smtp_default)")

    @model_validator(mode="after")
    def _one_target(self) -> TcpProbe:
        problems: list[tuple[tuple[str | int, ...], str, Any]] = []
        if (self.host is None) == (self.conn_id is None):
            problems.append((("host",), "give exactly one of 'host' (with 'port') or 'conn_id'", self.host))
        elif self.host is not None and self.port is None:
            problems.append((("port",), "required key is missing", None))
        raise_problems(type(self).__name__, problems)
        return self


Probe = Annotated[PostgresProbe | HttpProbe | TcpProbe, Field(discriminator="kind")]


class Anomaly(PlanModel):
    """Response time far above the service's own recent baseline is an anomaly (see health.anomaly)."""

    enabled: bool = True
    factor: float = Field(3.0, gt=1, description="anomalous above median x factor (and the MAD bound)")
    min_samples: int = Field(20, ge=3, description="successful probes in the window before the rule applies")
    min_delta_ms: float = Field(50, ge=0, description="and at least this much above the median")


class Service(PlanModel):
    name: ServiceName
    description: str = ""
    probe: Probe
    interval: PositiveDuration = Field(timedelta(seconds=1), description="time between probes")
    timeout: PositiveDuration = Field(timedelta(seconds=2), description="a probe taking longer has failed")
    retry_interval: PositiveDuration = Field(
        timedelta(seconds=0.25), description="re-probe this soon after a failed probe (until the alert is critical)")
    response_time_ms: Limits | None = Field(None, description="response-time limits (degraded, unhealthy)")
    failures_to_unhealthy: int = Field(
        1, ge=1, le=1000, description="failed probes in a row before a failure counts as unhealthy (else degraded)")
    alert_after: int = Field(3, ge=1, le=1000, description="unhealthy probes in a row before the alert is critical")
    window: int = Field(300, ge=1, le=100_000, description="recent probes for error rate, availability and baseline")
    anomaly: Anomaly = Anomaly()

    def next_delay(self, *, ok: bool | None, consecutive_unhealthy: int) -> timedelta:
        """When to probe again: soon after a failure (until the alert is critical), else ``interval``."""
        if ok is False and consecutive_unhealthy < self.alert_after:
            return min(self.retry_interval, self.interval)
        return self.interval


class MonitorSettings(PlanModel):
    """The monitor's own settings (top-level keys beside ``services:``)."""

    heartbeat_interval: PositiveDuration = Field(
        timedelta(seconds=10), description="how often the long-running monitor reports that it is alive")
    retention: PositiveDuration = Field(timedelta(days=7), description="health rows older than this are deleted")
    catalog_conn_id: ConnId = Field("dr_catalog", description="Airflow postgres connection of the DR catalog")


ServiceSet = ItemSet[Service]


def load_services(path: str | Path | None = None) -> ServiceSet:
    """Read and validate a services file (default ``$DR_SERVICES_FILE`` or include/services.yaml)."""
    return load_items(path or services_file(), key="services", kind="service", model=Service,
                      settings_model=MonitorSettings)


def monitor_settings(services: ServiceSet) -> MonitorSettings:
    """The file's settings, or the defaults when they were invalid (their problems are in the set)."""
    return services.settings if isinstance(services.settings, MonitorSettings) else MonitorSettings()


def cluster_problems(services: ServiceSet, cluster_names: set[str]) -> list[str]:
    """Services whose postgres probe names a cluster that is not in the clusters file."""
    known = ", ".join(sorted(cluster_names)) or "none"
    return [
        f"{services.file}: service {s.name!r} field 'probe.cluster': no cluster {s.probe.cluster!r} in the clusters "
        f"file (clusters: {known})"
        for s in services.items.values()
        if isinstance(s.probe, PostgresProbe) and s.probe.cluster and s.probe.cluster not in cluster_names
    ]


def services_json_schema() -> dict[str, Any]:
    """The JSON Schema of services files (checked in as include/services.schema.json)."""

    class ServicesFile(MonitorSettings):
        services: tuple[Service, ...] = Field(min_length=1)

    return file_json_schema(
        ServicesFile, title="Monitored services",
        description="Services the health monitor probes (postgres, http, tcp), their thresholds and the "
        "monitor's settings. Secrets never appear here: probes name Airflow connections.",
    )

