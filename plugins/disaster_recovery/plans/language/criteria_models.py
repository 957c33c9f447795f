"""When a plan may be triggered automatically (failover criteria) and when it rolls back."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from disaster_recovery.plans.language.base import PlanModel
from disaster_recovery.plans.language.durations import PositiveDuration
from disaster_recovery.plans.language.enums import HealthStatus
from disaster_recovery.plans.language.names import ServiceName, StepName


class HealthThreshold(PlanModel):
    """Trigger when the service reports ``status`` (or worse) this many probes in a row."""

    status: HealthStatus = HealthStatus.UNHEALTHY
    consecutive_failures: int = Field(3, ge=1, le=1000)


class PerformanceThresholds(PlanModel):
    """Trigger when response time or error rate goes above, or throughput below, its limit."""

    response_time_ms: float | None = Field(None, gt=0)
    error_rate_percent: float | None = Field(None, ge=0, le=100)
    throughput_rps: float | None = Field(None, ge=0, description="minimum requests per second")

    @property
    def is_empty(self) -> bool:
        return self.response_time_ms is None and self.error_rate_percent is None and self.throughput_rps is None


class FailoverCriteria(PlanModel):
    """Any one threshold being met makes the plan eligible for automated triggering."""

    health_thresholds: dict[ServiceName, HealthThreshold] = Field(default_factory=dict)
    performance_thresholds: PerformanceThresholds = PerformanceThresholds()
    rearm_after: PositiveDuration = Field(
        timedelta(seconds=60),
        description="after an automated recovery, the criteria must be clear this long before the health "
        "monitor may start another one (no flapping back and forth)",
    )

    @property
    def is_empty(self) -> bool:
        return not self.health_thresholds and self.performance_thresholds.is_empty


class RollbackCriteria(PlanModel):
    """Rollback steps run when a step fails; ``on_failed_steps`` narrows that to the steps named."""

    on_failed_steps: tuple[StepName, ...] = Field((), description="empty: a failure of any step")
