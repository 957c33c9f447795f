"""A plan step: common fields plus a ``config`` typed by the step's ``type``."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from disaster_recovery.plans.language.base import PlanModel, raise_problems
from disaster_recovery.plans.language.durations import Duration, PositiveDuration
from disaster_recovery.plans.language.enums import StepType
from disaster_recovery.plans.language.names import GroupName, StepName
from disaster_recovery.plans.language.step_configs import (
    BackupRestoreConfig,
    CleanupConfig,
    DatabaseFailoverConfig,
    DnsUpdateConfig,
    LoadBalancerConfig,
    NotificationConfig,
    ServiceStartConfig,
    ValidationConfig,
)
from disaster_recovery.plans.rules.criteria import criteria_spec_problems
from disaster_recovery.plans.rules.step_outputs import criteria_kind_problems

IMPLEMENTED_STEP_TYPES_CONTEXT = "implemented_step_types"
"""Validation-context key: the step types whose executor exists (absent or None: accept all)."""


class Step(PlanModel):
    name: StepName
    type: StepType
    description: str = ""
    config: PlanModel
    depends_on: tuple[StepName, ...] = Field((), description="steps this one also waits for")
    parallel_group: GroupName | None = Field(
        None, description="steps sharing a group run concurrently, at the position of the group's first step"
    )
    retries: int = Field(0, ge=0, le=20)
    retry_delay: Duration = Field(timedelta(seconds=1), description="delay before the first retry")
    retry_exponential_backoff: bool = Field(True, description="double the delay on each retry (2^n seconds)")
    max_retry_delay: Duration = Field(timedelta(minutes=10), description="cap of the retry delay")
    timeout: PositiveDuration | None = Field(None, description="fail the attempt after this long")
    success_criteria: dict[str, Any] = Field(
        default_factory=dict,
        description="result path -> expected value, or {operator: '>=', value: 3} (operators > < >= <= == !=)",
    )
    dry_run: bool = Field(False, description="report what would be done without changing anything")

    @field_validator("depends_on")
    @classmethod
    def _unique_dependencies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({d for d in value if value.count(d) > 1})
        if duplicates:
            raise ValueError(f"listed more than once: {', '.join(duplicates)}")
        return value

    @model_validator(mode="after")
    def _check_step(self, info: ValidationInfo) -> Step:
        problems: list[Any] = [
            (("success_criteria", path), message, None)
            for path, message in (
                *criteria_spec_problems(self.success_criteria),
                *criteria_kind_problems(self.type, self.success_criteria),
            )
        ]
        if self.max_retry_delay < self.retry_delay:
            problems.append((("max_retry_delay",), "must not be shorter than retry_delay", None))
        implemented: Collection[str] | None = (info.context or {}).get(IMPLEMENTED_STEP_TYPES_CONTEXT)
        if implemented is not None and self.type.value not in implemented:
            problems.append(
                (
                    ("type",),
                    f"step type {self.type.value!r} is not implemented yet; this installation can run: "
                    f"{', '.join(sorted(implemented)) or 'none'}",
                    self.type.value,
                )
            )
        raise_problems(type(self).__name__, problems)
        return self


class BackupRestorePlanStep(Step):
    type: Literal[StepType.BACKUP_RESTORE]
    config: BackupRestoreConfig


class ServiceStartPlanStep(Step):
    type: Literal[StepType.SERVICE_START]
    config: ServiceStartConfig


class DnsUpdatePlanStep(Step):
    type: Literal[StepType.DNS_UPDATE]
    config: DnsUpdateConfig


class LoadBalancerConfigPlanStep(Step):
    type: Literal[StepType.LOAD_BALANCER_CONFIG]
    config: LoadBalancerConfig


class DatabaseFailoverPlanStep(Step):
    type: Literal[StepType.DATABASE_FAILOVER]
    config: DatabaseFailoverConfig


class ValidationPlanStep(Step):
    type: Literal[StepType.VALIDATION]
    config: ValidationConfig


class NotificationPlanStep(Step):
    type: Literal[StepType.NOTIFICATION]
    config: NotificationConfig


class CleanupPlanStep(Step):
    type: Literal[StepType.CLEANUP]
    config: CleanupConfig


STEP_MODELS: dict[StepType, type[Step]] = {
    StepType.BACKUP_RESTORE: BackupRestorePlanStep,
    StepType.SERVICE_START: ServiceStartPlanStep,
    StepType.DNS_UPDATE: DnsUpdatePlanStep,
    StepType.LOAD_BALANCER_CONFIG: LoadBalancerConfigPlanStep,
    StepType.DATABASE_FAILOVER: DatabaseFailoverPlanStep,
    StepType.VALIDATION: ValidationPlanStep,
    StepType.NOTIFICATION: NotificationPlanStep,
    StepType.CLEANUP: CleanupPlanStep,
}

AnyStep = Annotated[
    BackupRestorePlanStep
    | ServiceStartPlanStep
    | DnsUpdatePlanStep
    | LoadBalancerConfigPlanStep
    | DatabaseFailoverPlanStep
    | ValidationPlanStep
    | NotificationPlanStep
    | CleanupPlanStep,
    Field(discriminator="type"),
]
