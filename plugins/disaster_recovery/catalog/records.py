"""Frozen records the catalog returns (one field per column, named as the column) and `StepSpec`.

Values as PostgreSQL gives them, normalised: timestamps are timezone-aware UTC, INTERVAL is `timedelta`,
UUID is `uuid.UUID`, TEXT[] is a tuple of str, JSONB is the decoded value (dict/list) or None.
`as_json()` gives a JSON-safe dict (ISO 8601 timestamps, seconds for intervals, str ids), e.g. for XCom.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Self


def normalize(value: Any) -> Any:
    """One column value as records hold it: timestamps become aware UTC."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive timestamp {value!r} from the catalog (columns are TIMESTAMPTZ)")
        return value.astimezone(dt.UTC)
    return value


def to_json(value: Any) -> Any:
    """A JSON-safe form of a record value."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, tuple | list):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


class _Record:
    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            value = normalize(row[f.name])
            if isinstance(value, list) and "tuple[" in str(f.type):  # TEXT[] columns
                value = tuple(value)
            values[f.name] = value
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def as_json(self) -> dict[str, Any]:
        return {k: to_json(v) for k, v in self.as_dict().items()}


@dataclass(frozen=True)
class PlanRecord(_Record):
    id: uuid.UUID
    plan_name: str
    disaster_scenario: str
    plan_version: str
    plan_document: Any
    recovery_procedures: Any
    resource_requirements: Any
    dependencies: Any
    estimated_rto: dt.timedelta
    estimated_rpo: dt.timedelta
    approval_status: str | None
    approved_by: str | None
    approved_at: dt.datetime | None
    effective_date: dt.date | None
    review_frequency: dt.timedelta | None
    next_review_date: dt.date | None
    created_by: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclass(frozen=True)
class ExecutionRecord(_Record):
    id: uuid.UUID
    execution_name: str
    plan_id: uuid.UUID | None
    trigger_type: str
    trigger_event: Any
    execution_mode: str | None
    status: str | None
    initiated_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    failed_at: dt.datetime | None
    total_duration: dt.timedelta | None
    actual_rto: dt.timedelta | None
    actual_rpo: dt.timedelta | None
    data_loss_amount: int | None
    affected_services: tuple[str, ...] | None
    recovery_steps_completed: int | None
    recovery_steps_total: int | None
    success_criteria_met: bool | None
    execution_log: Any
    error_details: Any
    rollback_initiated: bool | None
    rollback_completed: bool | None
    initiated_by: str | None
    created_at: dt.datetime | None

    @property
    def is_active(self) -> bool:
        return self.status in ("initiated", "in_progress")


@dataclass(frozen=True)
class StepRecord(_Record):
    id: uuid.UUID
    execution_id: uuid.UUID | None
    step_name: str
    step_order: int
    step_type: str
    step_config: Any
    status: str | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    duration: dt.timedelta | None
    retry_count: int | None
    max_retries: int | None
    success_criteria: Any
    validation_results: Any
    output_data: Any
    error_message: str | None
    dependencies: tuple[str, ...] | None
    parallel_group: str | None
    created_at: dt.datetime | None


@dataclass(frozen=True)
class FailoverEventRecord(_Record):
    id: uuid.UUID
    event_name: str
    trigger_type: str
    source_system: str
    target_system: str
    failover_reason: str
    automated: bool | None
    initiated_at: dt.datetime
    completed_at: dt.datetime | None
    duration: dt.timedelta | None
    status: str | None
    data_consistency_check: bool | None
    traffic_redirected: bool | None
    dns_updated: bool | None
    ssl_certificates_migrated: bool | None
    rollback_plan: Any
    success_validation: Any
    impact_assessment: Any
    notification_sent: bool | None
    created_by: str | None


@dataclass(frozen=True, kw_only=True)
class ActiveExecution:
    """An execution still initiated or in progress, with what its plan is (``Catalog.active_execution_plans``)."""

    plan_name: str
    execution_name: str
    plan_document: Any


@dataclass(frozen=True)
class StepSpec:
    """One step row to create for an execution (`Catalog.create_step_rows`)."""

    step_name: str
    step_order: int
    step_type: str
    step_config: dict[str, Any] = field(default_factory=dict)
    max_retries: int = 3
    success_criteria: dict[str, Any] | None = None
    dependencies: tuple[str, ...] = ()
    parallel_group: str | None = None
