"""What is valid in a plan but probably not meant: warnings, shown by ``plans validate`` and in the DAG's
doc, never a refusal. Pure: ``today`` is given."""

from __future__ import annotations

from datetime import date, timedelta

from disaster_recovery.plans.language.durations import format_duration
from disaster_recovery.plans.language.enums import ApprovalStatus
from disaster_recovery.plans.model import Plan
from disaster_recovery.plans.reading.problems import PlanProblem
from disaster_recovery.plans.rules.step_outputs import criteria_unknown_paths


def _longest_timeout_chain(plan: Plan) -> timedelta:
    """The longest sum of step timeouts along a dependency path (steps without a timeout count zero)."""
    graph = plan.graph()
    best: dict[str, timedelta] = {}
    for name in graph.order:
        before = max((best[u] for u in graph.upstream[name]), default=timedelta(0))
        best[name] = before + (plan.get_step(name).timeout or timedelta(0))
    return max(best.values(), default=timedelta(0))


def plan_warnings(plan: Plan, *, file: str, today: date) -> list[PlanProblem]:
    found: list[PlanProblem] = []

    def warn(field: str | None, message: str, *, step: str | None = None, section: str = "steps") -> None:
        found.append(PlanProblem(file, step, field, message, section))

    rto, rpo = plan.objectives.rto, plan.objectives.rpo
    if rpo > rto:
        warn("objectives.rpo", f"the RPO ({format_duration(rpo)}) is larger than the RTO ({format_duration(rto)}): "
                               "were they swapped? (the RPO is data lost, the RTO time down)")
    chain = _longest_timeout_chain(plan)
    single = any(s.timeout is not None and s.timeout > rto for s in (*plan.steps, *plan.rollback_steps))
    if chain > rto and not single:  # one step's own timeout over the RTO is reported at that step
        warn("objectives.rto", f"the steps' timeouts along the longest path add up to {format_duration(chain)}, "
                               f"more than the RTO ({format_duration(rto)}): a slow run misses its RTO before it fails")
    status = plan.approval.status
    if status is not ApprovalStatus.APPROVED:
        warn("approval.status", f"the plan is {status.value}: every execution is refused until it is approved")
    elif plan.approval.fingerprint and plan.approval.fingerprint != plan.fingerprint():
        warn("approval.fingerprint", "the plan changed since it was approved: executions are refused until it is "
                                     f"approved again (fingerprint now {plan.fingerprint()})")
    review = plan.next_review_date()
    if review is not None and review < today:
        warn("review_frequency", f"the review was due on {review} (approved {plan.approval.approved_at:%Y-%m-%d}, "
                                 f"review every {format_duration(plan.review_frequency)}): review it and approve again")
    if plan.effective_date and plan.effective_date > today:
        warn("effective_date", f"not effective before {plan.effective_date}: executions are refused until then")
    for section in ("steps", "rollback_steps"):
        for step in getattr(plan, section):
            for path, message in criteria_unknown_paths(step.type, step.success_criteria):
                warn(f"success_criteria.{path}", message, step=step.name, section=section)
            if step.timeout is not None and step.timeout > rto:
                warn("timeout", f"the timeout ({format_duration(step.timeout)}) is longer than the plan's RTO "
                                f"({format_duration(rto)})", step=step.name, section=section)
    return found
