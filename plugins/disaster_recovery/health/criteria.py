"""Do a plan's failover criteria hold? Decided on an immutable snapshot of recent health probes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from disaster_recovery.plans.language.criteria_models import FailoverCriteria

SEVERITY = {"healthy": 0, "unknown": 1, "degraded": 2, "unhealthy": 3}


AlertLevel = Literal["none", "warning", "critical"]


class HealthMetrics(BaseModel):
    """The ``custom_metrics`` of a system_health_monitoring row written by the health monitor.

    Reading is tolerant (unknown keys are ignored) so rows written by older or other writers still load.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    probe: Literal["postgres", "http", "tcp"] | None = None
    ok: bool | None = None  # None: the probe could not run (e.g. its connection is not defined)
    availability_percent: float | None = None
    consecutive_failures: int = 0
    consecutive_unhealthy: int = 0
    alert_level: AlertLevel = "none"
    window_probes: int | None = None
    error: str | None = None
    target: str | None = None  # host:port or URL, never credentials
    member: str | None = None
    role: str | None = None
    timeline: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    replay_paused: bool | None = None
    standbys_streaming: int | None = None
    archive_mode: str | None = None
    archiver_failing: bool | None = None
    last_failed_wal: str | None = None
    topology: str | None = None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class HealthSample:
    """One probe of one service (a system_health_monitoring row)."""

    service_name: str
    health_status: str
    at: datetime
    response_time_ms: float | None = None
    error_rate: float | None = None
    throughput_rps: float | None = None
    ok: bool | None = None  # did the probe succeed (None: unknown, or it could not run)
    consecutive_failures: int | None = None
    consecutive_unhealthy: int | None = None
    alert_level: str | None = None
    availability_percent: float | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> HealthSample:
        """A sample from a system_health_monitoring row (a mapping of its columns)."""
        raw = row["custom_metrics"]
        try:
            metrics = HealthMetrics.model_validate(raw) if isinstance(raw, Mapping) and raw else None
        except ValidationError:
            metrics = None
        return cls(
            service_name=row["service_name"],
            health_status=row["health_status"],
            at=row["monitoring_timestamp"],
            response_time_ms=_number(row["response_time_ms"]),
            error_rate=_number(row["error_rate"]),
            throughput_rps=_number(row["throughput_rps"]),
            ok=metrics.ok if metrics else None,
            consecutive_failures=metrics.consecutive_failures if metrics else None,
            consecutive_unhealthy=metrics.consecutive_unhealthy if metrics else None,
            alert_level=metrics.alert_level if metrics else None,
            availability_percent=metrics.availability_percent if metrics else None,
        )


@dataclass(frozen=True)
class CriteriaVerdict:
    met: bool
    sentence: str
    reasons: tuple[str, ...] = ()


def evaluate_failover_criteria(
    criteria: FailoverCriteria, samples: Mapping[str, Sequence[HealthSample]]
) -> CriteriaVerdict:
    """``samples``: per service, its probes newest first. Any one threshold met is enough."""
    reasons: list[str] = []
    for service, threshold in criteria.health_thresholds.items():
        recent = list(samples.get(service, ()))[: threshold.consecutive_failures]
        bar = SEVERITY[threshold.status.value]
        if len(recent) >= threshold.consecutive_failures and all(
            SEVERITY.get(s.health_status, 1) >= bar for s in recent
        ):
            reasons.append(
                f"{service} was {threshold.status.value} or worse in its last {threshold.consecutive_failures} probes"
            )
    perf = criteria.performance_thresholds
    for service, rows in samples.items():
        if not rows:
            continue
        latest = rows[0]
        if perf.response_time_ms is not None and (latest.response_time_ms or 0) > perf.response_time_ms:
            reasons.append(f"{service} response time {latest.response_time_ms} ms > {perf.response_time_ms} ms")
        if perf.error_rate_percent is not None and (latest.error_rate or 0) > perf.error_rate_percent:
            reasons.append(f"{service} error rate {latest.error_rate}% > {perf.error_rate_percent}%")
        if (
            perf.throughput_rps is not None
            and latest.throughput_rps is not None
            and latest.throughput_rps < perf.throughput_rps
        ):
            reasons.append(f"{service} throughput {latest.throughput_rps} rps < {perf.throughput_rps} rps")
    if criteria.is_empty:
        return CriteriaVerdict(False, "the plan has no failover criteria, so it cannot be triggered automatically")
    if reasons:
        return CriteriaVerdict(True, "failover criteria met: " + "; ".join(reasons), tuple(reasons))
    return CriteriaVerdict(False, "automated recovery criteria not met: no threshold of the plan is exceeded")
