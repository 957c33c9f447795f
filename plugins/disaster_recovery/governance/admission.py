"""May this execution start? The spec's validateExecution, decided on a snapshot (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from disaster_recovery.health.criteria import CriteriaVerdict
from disaster_recovery.plans import Plan

TRIGGER_TYPES = ("manual", "automated", "scheduled", "alert_based")
EXECUTION_MODES = ("manual", "semi_automated", "fully_automated", "test")


@dataclass(frozen=True)
class Admission:
    allowed: bool
    sentence: str


def admit_execution(
    plan: Plan,
    *,
    today: date,
    trigger_type: str,
    execution_mode: str = "manual",
    active_execution_names: tuple[str, ...],
    criteria: CriteriaVerdict | None,
    conflicting_executions: tuple[str, ...] = (),
) -> Admission:
    """The first reason to refuse, or admission. ``criteria`` is needed for automated triggers;
    ``conflicting_executions``: executions of other plans acting on a cluster this plan acts on."""
    if trigger_type not in TRIGGER_TYPES:
        return Admission(False, f"unknown trigger_type {trigger_type!r}; expected one of {', '.join(TRIGGER_TYPES)}")
    if execution_mode not in EXECUTION_MODES:
        return Admission(
            False, f"unknown execution_mode {execution_mode!r}; expected one of {', '.join(EXECUTION_MODES)}"
        )
    status = plan.approval.status.value
    if status != "approved":
        return Admission(False, f"recovery plan {plan.name!r} is not approved (approval status: {status})")
    approved = plan.approval.fingerprint
    if approved and approved != plan.fingerprint():
        return Admission(
            False,
            f"recovery plan {plan.name!r} changed since it was approved (approved fingerprint {approved[:12]}…, "
            f"now {plan.fingerprint()[:12]}…): have it approved again",
        )
    if plan.effective_date and plan.effective_date > today:
        return Admission(False, f"recovery plan {plan.name!r} is not yet effective (effective {plan.effective_date})")
    if active_execution_names:
        return Admission(
            False,
            f"another recovery execution of {plan.name!r} is already in progress: {', '.join(active_execution_names)}",
        )
    if conflicting_executions:
        return Admission(
            False,
            f"another recovery execution acts on cluster(s) {', '.join(plan.clusters())} of {plan.name!r}: "
            f"{', '.join(conflicting_executions)}; two recoveries of one cluster never run at once",
        )
    if trigger_type in ("automated", "alert_based"):
        if criteria is None or not criteria.met:
            reason = criteria.sentence if criteria else "no health data to check the failover criteria against"
            return Admission(False, f"automated trigger refused: {reason}")
        return Admission(True, f"admitted: {criteria.sentence}")
    return Admission(True, f"admitted: plan {plan.name!r} is approved and effective; no other execution is running")
