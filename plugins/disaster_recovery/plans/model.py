"""A recovery plan: what disaster it answers, its objectives, approval, and steps."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from pydantic import AwareDatetime, Field, model_validator

from disaster_recovery.plans.language.base import Loc, PlanModel, raise_problems
from disaster_recovery.plans.language.channels import PlanNotifications
from disaster_recovery.plans.language.criteria_models import FailoverCriteria, RollbackCriteria
from disaster_recovery.plans.language.durations import Duration, PositiveDuration
from disaster_recovery.plans.language.enums import ApprovalStatus, DisasterScenario, ExecutionMode, StepType
from disaster_recovery.plans.language.names import PlanName, Tag, Version
from disaster_recovery.plans.language.step_models import AnyStep, Step
from disaster_recovery.plans.rules.graph import StepGraph, build_step_graph, step_graph_problems


def document_clusters(document: Any) -> tuple[str, ...]:
    """The clusters a plan document's database_failover steps (and rollback steps) name, in order; works on
    the catalog's ``plan_document`` JSON as well as on ``Plan.document()``."""
    found: list[str] = []
    if isinstance(document, dict):
        for section in ("steps", "rollback_steps"):
            steps = document.get(section)
            for step in steps if isinstance(steps, list) else ():
                config = step.get("config") if isinstance(step, dict) else None
                cluster = config.get("cluster") if isinstance(config, dict) else None
                if isinstance(cluster, str) and step.get("type") == "database_failover":
                    found.append(cluster)
    return tuple(dict.fromkeys(found))


class Objectives(PlanModel):
    rto: PositiveDuration = Field(description="recovery time objective: longest acceptable outage (above zero)")
    rpo: PositiveDuration = Field(
        description="recovery point objective: most data (as time) that may be lost (above zero: a zero-loss "
        "switchover meets an RPO of 1s)"
    )


class Approval(PlanModel):
    status: ApprovalStatus = ApprovalStatus.DRAFT
    approved_by: str | None = Field(None, min_length=1, max_length=200, description="Airflow user name")
    approved_at: AwareDatetime | None = Field(None, description="with time zone, e.g. 2025-01-31T10:00:00Z")
    fingerprint: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="the plan's fingerprint when it was approved ('plans fingerprint FILE'); an execution is "
        "refused when the plan changed since",
    )

    @model_validator(mode="after")
    def _approved_needs_who_and_when(self) -> Approval:
        if self.status is ApprovalStatus.APPROVED:
            raise_problems(
                type(self).__name__,
                [
                    ((key,), "an approved plan needs approved_by and approved_at", None)
                    for key in ("approved_by", "approved_at")
                    if getattr(self, key) is None
                ],
            )
        return self


class Plan(PlanModel):
    name: PlanName
    description: str = ""
    disaster_scenario: DisasterScenario
    version: Version = "1.0"
    tags: tuple[Tag, ...] = ()
    objectives: Objectives
    execution_mode: ExecutionMode = Field(ExecutionMode.MANUAL, description="default mode of an execution")
    approval: Approval = Approval()
    effective_date: date | None = Field(None, description="the plan may not run before this date")
    review_frequency: Duration = timedelta(days=180)
    failover_criteria: FailoverCriteria = FailoverCriteria()
    rollback_criteria: RollbackCriteria = RollbackCriteria()
    notifications: PlanNotifications = PlanNotifications()
    steps: tuple[AnyStep, ...] = Field(min_length=1)
    rollback_steps: tuple[AnyStep, ...] = ()

    @model_validator(mode="after")
    def _check_plan(self) -> Plan:
        raise_problems(type(self).__name__, self._problems())
        return self

    def _problems(self) -> Iterator[tuple[Loc, str, Any]]:
        for section in ("steps", "rollback_steps"):
            for p in step_graph_problems(getattr(self, section)):
                yield (section, p.index, p.field), p.message, None
        main_names = {s.name for s in self.steps}
        for i, step in enumerate(self.rollback_steps):
            if step.name in main_names:
                yield ("rollback_steps", i, "name"), f"{step.name!r} is also the name of a step", step.name
        for i, name in enumerate(self.rollback_criteria.on_failed_steps):
            if name not in main_names:
                yield ("rollback_criteria", "on_failed_steps", i), f"unknown step {name!r}", name
        if self.rollback_criteria.on_failed_steps and not self.rollback_steps:
            yield ("rollback_criteria",), "rollback criteria without rollback_steps have no effect", None
        for section in ("steps", "rollback_steps"):
            for i, step in enumerate(getattr(self, section)):
                if step.type is StepType.NOTIFICATION and not step.config.channels and not self.notifications.channels:
                    yield (
                        (section, i, "config", "channels"),
                        "no channels here and none in the plan's notifications.channels",
                        None,
                    )
        if self.execution_mode is ExecutionMode.FULLY_AUTOMATED and self.failover_criteria.is_empty:
            yield ("failover_criteria",), "a fully_automated plan needs failover criteria to trigger on", None

    # --- derived views ----------------------------------------------------------------------

    @property
    def dag_id(self) -> str:
        return f"dr_plan__{self.name}"

    def get_step(self, name: str) -> Step:
        """A step or rollback step by name; KeyError if none."""
        for step in (*self.steps, *self.rollback_steps):
            if step.name == name:
                return step
        raise KeyError(name)

    def graph(self) -> StepGraph:
        return build_step_graph(self.steps)

    def rollback_graph(self) -> StepGraph:
        return build_step_graph(self.rollback_steps)

    def shape(self) -> tuple:
        """What the plan's DAG is made of: each step's name, type, upstream steps and group, main and
        rollback. Two versions of a plan with the same shape render the same tasks and edges."""

        def section(steps: tuple[Step, ...], graph: StepGraph) -> tuple:
            return tuple((s.name, s.type.value, tuple(graph.upstream[s.name]), s.parallel_group) for s in steps)

        return section(self.steps, self.graph()), section(self.rollback_steps, self.rollback_graph())

    def clusters(self) -> tuple[str, ...]:
        """The clusters (include/clusters.yaml) the plan's database_failover steps act on."""
        return document_clusters(self.document())

    def next_review_date(self) -> date | None:
        """The approval date plus review_frequency (None while not approved)."""
        if self.approval.approved_at is None:
            return None
        return (self.approval.approved_at + self.review_frequency).date()

    def document(self) -> dict[str, Any]:
        """The whole plan, defaults filled in, as JSON-ready data (the catalog's plan_document)."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON of the plan's content.

        The ``approval`` block is left out: approving a plan does not change what it does, so an
        approval can be recorded against the fingerprint and checked later ("unchanged since approval").
        """
        content = self.document()
        content.pop("approval")
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
