"""The typed ``config`` of each of the eight step types."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Discriminator, Field, Tag, model_validator

from disaster_recovery.plans.language.base import PlanModel, raise_problems
from disaster_recovery.plans.language.channels import Channel
from disaster_recovery.plans.language.checks import Check, HealthCheck
from disaster_recovery.plans.language.durations import PositiveDuration
from disaster_recovery.plans.language.enums import StepType
from disaster_recovery.plans.language.names import (
    AbsolutePath,
    ClusterRef,
    ConnId,
    PgIdentifier,
    ServiceName,
    SourceName,
)
from disaster_recovery.plans.rules.templates import template_problem

MIB = 1024 * 1024
_HOSTNAME_RE = re.compile(
    r"^(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$"
)


# --- backup_restore -------------------------------------------------------------------------


class ClusterTarget(PlanModel):
    """Restore a physical backup into a new cluster at ``data_directory`` listening on ``port``."""

    data_directory: AbsolutePath
    port: int = Field(ge=1, le=65535)
    start: bool = Field(True, description="start the restored cluster so later steps can use it")


class DatabaseTarget(PlanModel):
    """Restore a logical backup into a database reached through an Airflow connection."""

    conn_id: ConnId
    database: str | None = Field(None, description="default: the connection's database")


def _target_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        if "data_directory" in value:
            return "cluster"
        if "conn_id" in value:
            return "database"
        return None
    return {ClusterTarget: "cluster", DatabaseTarget: "database"}.get(type(value))


RestoreTarget = Annotated[
    Annotated[ClusterTarget, Tag("cluster")] | Annotated[DatabaseTarget, Tag("database")],
    Discriminator(
        _target_kind,
        custom_error_type="invalid_target",
        custom_error_message="target needs either 'data_directory' and 'port', or 'conn_id'",
    ),
]


class BackupRestoreConfig(PlanModel):
    source: SourceName = Field(description="data source name from include/backups.yaml")
    backup_id: str | None = Field(None, description="default: the newest verified backup")
    target: RestoreTarget
    point_in_time: AwareDatetime | None = Field(
        None, description="replay WAL up to this moment (with time zone); needs a cluster target"
    )
    force_unverified: bool = Field(False, description="allow restoring a backup not yet verified")
    replace_existing: bool = Field(False, description="overwrite a non-empty target")

    @model_validator(mode="after")
    def _pitr_needs_cluster(self) -> BackupRestoreConfig:
        if self.point_in_time is not None and not isinstance(self.target, ClusterTarget):
            raise_problems(
                type(self).__name__,
                [(("point_in_time",), "point-in-time recovery needs a cluster target (data_directory)", None)],
            )
        return self


# --- service_start --------------------------------------------------------------------------


class ServiceSpec(PlanModel):
    name: ServiceName
    command: tuple[str, ...] | None = Field(None, min_length=1, description="argv list, run without a shell")
    systemd_unit: str | None = Field(None, min_length=1)
    working_directory: AbsolutePath | None = None
    health_check: HealthCheck | None = None
    timeout: PositiveDuration = Field(timedelta(seconds=60), description="time to become healthy")

    @model_validator(mode="after")
    def _one_launcher(self) -> ServiceSpec:
        if (self.command is None) == (self.systemd_unit is None):
            raise_problems(
                type(self).__name__,
                [(("command",), "give exactly one of 'command' or 'systemd_unit'", None)],
            )
        return self


class ServiceStartConfig(PlanModel):
    services: tuple[ServiceSpec, ...] = Field(min_length=1)


# --- dns_update -----------------------------------------------------------------------------


class DnsUpdateConfig(PlanModel):
    """UPSERT one Route 53 record."""

    aws_conn_id: ConnId = "aws_default"
    hosted_zone_id: str = Field(pattern=r"^(/hostedzone/)?[A-Za-z0-9]+$")
    record_name: str = Field(min_length=1, max_length=255)
    record_type: Literal["A", "AAAA", "CNAME"]
    value: str = Field(min_length=1)
    ttl: int = Field(60, ge=0, le=604800)
    wait_for_sync: bool = Field(True, description="wait until Route 53 reports the change INSYNC")

    @model_validator(mode="after")
    def _value_matches_type(self) -> DnsUpdateConfig:
        problems = []
        if not _HOSTNAME_RE.match(self.record_name):
            problems.append((("record_name",), f"{self.record_name!r} is not a DNS name", self.record_name))
        if self.record_type == "CNAME":
            ok = bool(_HOSTNAME_RE.match(self.value))
        else:
            version = 4 if self.record_type == "A" else 6
            try:
                ok = ipaddress.ip_address(self.value).version == version
            except ValueError:
                ok = False
        if not ok:
            what = {"A": "an IPv4 address", "AAAA": "an IPv6 address", "CNAME": "a DNS name"}[self.record_type]
            problems.append((("value",), f"{self.value!r} is not {what} ({self.record_type} record)", self.value))
        raise_problems(type(self).__name__, problems)
        return self


# --- load_balancer_config -------------------------------------------------------------------


class LoadBalancerTarget(PlanModel):
    id: str = Field(min_length=1, description="instance id, IP address or Lambda ARN")
    port: int | None = Field(None, ge=1, le=65535)


class LoadBalancerConfig(PlanModel):
    """Register and deregister targets of an ELBv2 target group."""

    aws_conn_id: ConnId = "aws_default"
    target_group_arn: str = Field(pattern=r"^arn:[^:]+:elasticloadbalancing:[^:]*:[^:]*:targetgroup/.+")
    register_targets: tuple[LoadBalancerTarget, ...] = ()
    deregister_targets: tuple[LoadBalancerTarget, ...] = ()
    wait: bool = Field(True, description="wait until registered targets are healthy and deregistered ones drained")

    @model_validator(mode="after")
    def _has_work(self) -> LoadBalancerConfig:
        problems = []
        if not self.register_targets and not self.deregister_targets:
            problems.append(
                (("register_targets",), "give targets to 'register_targets' and/or 'deregister_targets'", None)
            )
        both = {t.id for t in self.register_targets} & {t.id for t in self.deregister_targets}
        if both:
            problems.append(
                (("deregister_targets",), f"targets both registered and deregistered: {sorted(both)}", None)
            )
        raise_problems(type(self).__name__, problems)
        return self


# --- database_failover ----------------------------------------------------------------------


class FailoverAction(StrEnum):
    FAILOVER = "failover"  # promote the best standby, fencing the old primary for good
    SWITCHOVER = "switchover"  # planned: move the primary to a streaming standby, zero acknowledged writes lost
    REJOIN = "rejoin"  # turn a fenced or lost member into a streaming standby of the primary


class RejoinMethodChoice(StrEnum):
    AUTO = "auto"
    REWIND = "rewind"
    CLONE = "clone"


class DatabaseFailoverConfig(PlanModel):
    """Fail a PostgreSQL cluster over, switch it over, or rejoin a member.

    Name a ``cluster`` (include/clusters.yaml): roles are read from the servers at run time, so the
    step always acts on the current primary. The older form, a ``standby_conn_id`` (and the
    ``primary_conn_id`` to fence), still works for a failover.
    """

    cluster: ClusterRef | None = Field(None, description="cluster name from include/clusters.yaml")
    action: FailoverAction = FailoverAction.FAILOVER
    candidate: PgIdentifier | None = Field(
        None, description="member to promote (failover/switchover); default: the best standby, or for a "
        "switchover the cluster's preferred_primary"
    )
    member: PgIdentifier | None = Field(None, description="rejoin: the member to rejoin (default: every member "
                                        "that does not stream from the primary)")
    rejoin_method: RejoinMethodChoice | None = Field(None, description="default: the cluster's rejoin_method")
    primary_conn_id: ConnId | None = Field(None, description="the old primary, to fence (without 'cluster')")
    standby_conn_id: ConnId | None = Field(None, description="the standby to promote (without 'cluster')")
    max_lag_bytes: int = Field(16 * MIB, ge=0, description="refuse to promote when the standby is further behind")
    max_lag_seconds: float | None = Field(None, ge=0, description="refuse when replay is older than this")
    fence_old_primary: bool = Field(True, description="stop the old primary accepting writes first (if reachable)")
    require_lasting_fence: bool = Field(
        False, description="refuse to promote unless the old primary can be fenced on its host for good"
    )
    wait_writable_timeout: PositiveDuration = Field(
        timedelta(seconds=60), description="how long to wait for the promoted server to accept writes"
    )
    synchronous_standby_names_reset: bool = Field(
        True, description="clear synchronous_standby_names on the new primary so commits do not hang"
    )

    @model_validator(mode="after")
    def _target(self) -> DatabaseFailoverConfig:
        problems = []
        if self.cluster is not None:
            for key in ("primary_conn_id", "standby_conn_id"):
                if getattr(self, key) is not None:
                    problems.append(((key,), "give either 'cluster' or the connection ids, not both", None))
        else:
            if self.standby_conn_id is None:
                problems.append((("cluster",), "name a 'cluster' (or a 'standby_conn_id' to promote)", None))
            if self.action is not FailoverAction.FAILOVER:
                problems.append((("action",), f"action {self.action.value!r} needs a 'cluster'", self.action.value))
            if self.fence_old_primary and self.primary_conn_id is None and self.standby_conn_id is not None:
                problems.append(
                    (("fence_old_primary",), "fencing needs 'primary_conn_id' (or set fence_old_primary: false)", True)
                )
            if self.primary_conn_id is not None and self.primary_conn_id == self.standby_conn_id:
                problems.append(
                    (("standby_conn_id",), "standby and primary are the same connection", self.standby_conn_id)
                )
        if self.member is not None and self.action is not FailoverAction.REJOIN:
            problems.append((("member",), "'member' goes with action 'rejoin'", self.member))
        if self.candidate is not None and self.action is FailoverAction.REJOIN:
            problems.append((("candidate",), "'candidate' goes with action 'failover' or 'switchover'", self.candidate))
        raise_problems(type(self).__name__, problems)
        return self


# --- validation / notification --------------------------------------------------------------


class ValidationConfig(PlanModel):
    checks: tuple[Check, ...] = Field(min_length=1)


class NotificationConfig(PlanModel):
    channels: tuple[Channel, ...] = Field((), description="default: the plan's notifications.channels")
    message: str | None = Field(None, description="template of the notice text")

    @model_validator(mode="after")
    def _message_parses(self) -> NotificationConfig:
        problem = template_problem(self.message) if self.message else None
        raise_problems(type(self).__name__, [(("message",), problem, None)] if problem else [])
        return self


# --- cleanup --------------------------------------------------------------------------------


class DropReplicationSlot(PlanModel):
    kind: Literal["drop_replication_slot"]
    conn_id: ConnId
    slot_name: PgIdentifier
    missing_ok: bool = True


class RemoveDirectory(PlanModel):
    kind: Literal["remove_directory"]
    path: AbsolutePath
    missing_ok: bool = True


class RunSql(PlanModel):
    kind: Literal["sql"]
    conn_id: ConnId
    statement: str = Field(min_length=1)


CleanupAction = Annotated[DropReplicationSlot | RemoveDirectory | RunSql, Field(discriminator="kind")]


class CleanupConfig(PlanModel):
    actions: tuple[CleanupAction, ...] = Field(min_length=1)


CONFIG_MODELS: dict[StepType, type[PlanModel]] = {
    StepType.BACKUP_RESTORE: BackupRestoreConfig,
    StepType.SERVICE_START: ServiceStartConfig,
    StepType.DNS_UPDATE: DnsUpdateConfig,
    StepType.LOAD_BALANCER_CONFIG: LoadBalancerConfig,
    StepType.DATABASE_FAILOVER: DatabaseFailoverConfig,
    StepType.VALIDATION: ValidationConfig,
    StepType.NOTIFICATION: NotificationConfig,
    StepType.CLEANUP: CleanupConfig,
}
