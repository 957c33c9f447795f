"""Pure decisions of an execution: admission, failover criteria on a health snapshot, the outcome."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from disaster_recovery.governance.admission import admit_execution
from disaster_recovery.governance.outcome import StepState, decide_outcome
from disaster_recovery.health.criteria import HealthSample, evaluate_failover_criteria
from disaster_recovery.plans import parse_plan
from tests.unit.plan_factory import base_plan

APPROVED = {"status": "approved", "approved_by": "lead", "approved_at": "2025-01-01T00:00:00Z"}
CRITERIA = {
    "health_thresholds": {"primary-db": {"status": "unhealthy", "consecutive_failures": 3}},
    "performance_thresholds": {"response_time_ms": 500, "error_rate_percent": 5},
}
TODAY = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def plan(**overrides):
    return parse_plan(base_plan(**({"approval": APPROVED, "failover_criteria": CRITERIA} | overrides)))


def admit(p, **kwargs):
    args = {"today": TODAY, "trigger_type": "manual", "active_execution_names": (), "criteria": None}
    return admit_execution(p, **(args | kwargs))


def probes(service: str, *statuses: str, **metrics) -> list[HealthSample]:
    return [
        HealthSample(service_name=service, health_status=s, at=NOW - timedelta(minutes=i), **metrics)
        for i, s in enumerate(statuses)
    ]


def test_an_approved_effective_plan_is_admitted():
    verdict = admit(plan())
    assert verdict.allowed and "admitted" in verdict.sentence


@pytest.mark.parametrize(
    ("overrides", "kwargs", "reason"),
    [
        ({"approval": {"status": "draft"}}, {}, "is not approved (approval status: draft)"),
        ({"effective_date": "2026-07-01"}, {}, "not yet effective (effective 2026-07-01)"),
        ({}, {"active_execution_names": ("sample-plan run-1",)}, "already in progress: sample-plan run-1"),
        ({}, {"trigger_type": "whenever"}, "unknown trigger_type 'whenever'"),
        ({}, {"execution_mode": "yolo"}, "unknown execution_mode 'yolo'"),
        ({}, {"trigger_type": "automated"}, "no health data"),
        ({}, {"conflicting_executions": ("switchover run-7",)},
         "another recovery execution acts on cluster(s)  of 'sample-plan': switchover run-7"),
    ],
)
def test_refusals_say_why(overrides, kwargs, reason):
    p = parse_plan(base_plan(**({"approval": APPROVED, "failover_criteria": CRITERIA} | overrides)))
    verdict = admit(p, **kwargs)
    assert not verdict.allowed
    assert reason in verdict.sentence


def test_a_plan_changed_since_approval_is_refused():
    fingerprint = plan().fingerprint()
    same = plan(approval=APPROVED | {"fingerprint": fingerprint})
    assert admit(same).allowed
    changed = parse_plan(base_plan(approval=APPROVED | {"fingerprint": fingerprint}, failover_criteria=CRITERIA,
                                   description="edited after approval"))
    verdict = admit(changed)
    assert not verdict.allowed and "changed since it was approved" in verdict.sentence


def test_automated_trigger_needs_the_criteria_to_hold():
    p = plan()
    met = evaluate_failover_criteria(p.failover_criteria, {"primary-db": probes("primary-db", *["unhealthy"] * 3)})
    assert met.met and "primary-db was unhealthy" in met.sentence
    assert admit(p, trigger_type="automated", criteria=met).allowed
    not_met = evaluate_failover_criteria(
        p.failover_criteria, {"primary-db": probes("primary-db", "unhealthy", "unhealthy", "healthy")}
    )
    assert not not_met.met
    verdict = admit(p, trigger_type="automated", criteria=not_met)
    assert not verdict.allowed and "criteria not met" in verdict.sentence


def test_performance_thresholds_trigger_on_the_newest_probe():
    p = plan()
    slow = probes("api", "healthy", response_time_ms=900.0)
    verdict = evaluate_failover_criteria(p.failover_criteria, {"api": slow})
    assert verdict.met and "response time 900.0 ms > 500.0 ms" in verdict.sentence
    errors = probes("api", "healthy", error_rate=7.5)
    assert evaluate_failover_criteria(p.failover_criteria, {"api": errors}).met
    fine = probes("api", "healthy", response_time_ms=100.0, error_rate=0.1)
    assert not evaluate_failover_criteria(p.failover_criteria, {"api": fine}).met


def test_fewer_probes_than_consecutive_failures_is_not_enough():
    p = plan()
    verdict = evaluate_failover_criteria(p.failover_criteria, {"primary-db": probes("primary-db", "unhealthy")})
    assert not verdict.met


def test_outcome_completed_failed_and_rolled_back():
    done = decide_outcome([StepState("a", "completed"), StepState("b", "completed")])
    assert (done.status, done.steps_completed, done.steps_total) == ("completed", 2, 2)
    failed = decide_outcome([StepState("a", "completed"), StepState("b", "failed"), StepState("c", "skipped")])
    assert failed.status == "failed" and failed.failed_steps == ("b",) and failed.steps_completed == 1
    rolled = decide_outcome(
        [StepState("a", "failed"), StepState("undo", "completed", rollback=True)]
    )
    assert rolled.status == "rolled_back" and rolled.rollback_initiated and rolled.rollback_completed
    no_rollback = decide_outcome([StepState("a", "completed"), StepState("undo", "skipped", rollback=True)])
    assert no_rollback.status == "completed" and not no_rollback.rollback_initiated
    half = decide_outcome([StepState("a", "failed"), StepState("undo", "failed", rollback=True)])
    assert half.status == "failed" and "rollback did not complete" in half.sentence


def test_plan_clusters_come_from_its_failover_steps():
    data = base_plan(approval=APPROVED)
    data["steps"].append({"name": "promote2", "type": "database_failover", "config": {"cluster": "wedsync"}})
    data["rollback_steps"] = [{"name": "back", "type": "database_failover",
                               "config": {"cluster": "billing", "action": "switchover"}}]
    p = parse_plan(data)
    assert p.clusters() == ("wedsync", "billing")
    from disaster_recovery.plans.model import document_clusters

    assert document_clusters(p.document()) == ("wedsync", "billing") and document_clusters({"steps": "odd"}) == ()
    refused = admit(p, conflicting_executions=("wedsync-switchover run-1",))
    assert "acts on cluster(s) wedsync, billing" in refused.sentence
