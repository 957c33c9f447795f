"""Do a plan's failover criteria hold? Decided on an immutable snapshot of recent health probes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from disaster_recovery.plans.criteria_models import FailoverCriteria

SEVERITY = {"healthy": 0, "unknown": 1, "degraded": 2, "unhealthy": 3}


@dataclass(frozen=True)
class HealthSample:
    """One probe of one service (a system_health_monitoring row)."""

    service_name: str
    health_status: str
    at: datetime
    response_time_ms: float | None = None
    error_rate: float | None = None
    throughput_rps: float | None = None


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
