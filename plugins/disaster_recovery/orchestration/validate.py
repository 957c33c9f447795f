"""validate_execution: admit the run (the pure decision in ``governance.admission``), open its execution
and step rows under the plan's lock, and hand the admitted plan version to the run's other tasks."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from disaster_recovery.catalog.records import StepSpec
from disaster_recovery.catalog.repository import Catalog, ConflictingExecution
from disaster_recovery.clusters.events import link_incident
from disaster_recovery.governance.admission import admit_execution
from disaster_recovery.health.criteria import HealthSample, evaluate_failover_criteria
from disaster_recovery.orchestration.plan_version import ADMITTED_PLAN_KEY, AdmittedPlan
from disaster_recovery.orchestration.runtime import _notify_event, _now, catalog, run_info
from disaster_recovery.plans import Plan
from disaster_recovery.plans.model import document_clusters

log = logging.getLogger("disaster_recovery.orchestration")
HEALTH_SAMPLES_PER_SERVICE = 20


def _step_specs(plan: Plan) -> list[StepSpec]:
    graph, rgraph = plan.graph(), plan.rollback_graph()
    specs: list[StepSpec] = []
    for order, name in enumerate((*graph.order, *rgraph.order), 1):
        step = plan.get_step(name)
        upstream = graph.upstream.get(name) if name in graph.upstream else rgraph.upstream.get(name, ())
        specs.append(
            StepSpec(
                step_name=name,
                step_order=order,
                step_type=step.type.value,
                step_config=step.config.model_dump(mode="json"),
                max_retries=step.retries,
                success_criteria=step.success_criteria or {},
                dependencies=tuple(upstream or ()),
                parallel_group=step.parallel_group or ("rollback" if name in rgraph.upstream else None),
            )
        )
    return specs


def _health_samples(cat: Catalog, services) -> dict[str, list[HealthSample]]:
    from sqlalchemy import select

    from disaster_recovery.catalog.tables import system_health_monitoring as t

    samples: dict[str, list[HealthSample]] = {}
    with cat.engine.connect() as conn:
        for service in services:
            rows = conn.execute(
                select(t)
                .where(t.c.service_name == service)
                .order_by(t.c.monitoring_timestamp.desc())
                .limit(HEALTH_SAMPLES_PER_SERVICE)
            ).mappings()
            samples[service] = [
                HealthSample(
                    service_name=r["service_name"],
                    health_status=r["health_status"],
                    at=r["monitoring_timestamp"],
                    response_time_ms=r["response_time_ms"],
                    error_rate=float(r["error_rate"]) if r["error_rate"] is not None else None,
                    throughput_rps=float(r["throughput_rps"]) if r["throughput_rps"] is not None else None,
                )
                for r in rows
            ]
    return samples


def upsert_plan_record(cat: Catalog, plan: Plan):
    document = plan.document()
    return cat.upsert_plan(
        plan_name=plan.name,
        disaster_scenario=plan.disaster_scenario.value,
        plan_version=plan.version,
        plan_document={**document, "fingerprint": plan.fingerprint()},
        recovery_procedures={"steps": document["steps"], "rollback_steps": document["rollback_steps"]},
        resource_requirements={"connections": sorted(_connection_ids(document))},
        dependencies={s.name: list(s.depends_on) for s in plan.steps if s.depends_on},
        estimated_rto=plan.objectives.rto,
        estimated_rpo=plan.objectives.rpo,
        approval_status=plan.approval.status.value,
        approved_by=plan.approval.approved_by,
        approved_at=plan.approval.approved_at,
        effective_date=plan.effective_date,
        review_frequency=plan.review_frequency,
        next_review_date=plan.next_review_date(),
    )


def _connection_ids(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("conn_id") and isinstance(item, str):
                found.add(item)
            else:
                found |= _connection_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= _connection_ids(item)
    return found


def validate_and_open(plan: Plan, context) -> str:
    info = run_info(plan, context)
    cat = catalog()
    try:
        plan_row = upsert_plan_record(cat, plan)
        verdict = None
        if info.trigger_type in ("automated", "alert_based"):
            services = set(plan.failover_criteria.health_thresholds)
            verdict = evaluate_failover_criteria(plan.failover_criteria, _health_samples(cat, services))
        mine = set(plan.clusters())
        conflicting = tuple(
            a.execution_name for a in (cat.active_execution_plans() if mine else ())
            if a.plan_name != plan.name and mine & set(document_clusters(a.plan_document))
        )
        # Another execution of this plan (running now, or when this run was triggered) is decided by
        # open_execution under the plan's lock, so that of simultaneous triggers exactly one runs.
        admission = admit_execution(
            plan,
            today=date.today(),
            trigger_type=info.trigger_type,
            execution_mode=info.execution_mode,
            active_execution_names=(),
            criteria=verdict,
            conflicting_executions=conflicting,
        )
        event = {
            "reason": info.reason,
            "timestamp": _now().isoformat(),
            "initiator": info.initiated_by,
            "dag_id": info.dag_id,
            "run_id": info.run_id,
            "dry_run": info.dry_run,
            "plan_fingerprint": plan.fingerprint(),
        }
        if info.triggered_at is not None:
            event["triggered_at"] = info.triggered_at.isoformat()
        if info.allow_duplicate:
            event["allow_duplicate"] = True
        if verdict is not None:
            event["criteria"] = verdict.sentence
        if info.incident_id:
            event["incident_id"] = info.incident_id
            event["evidence"] = list(info.evidence)
        common = {
            "execution_name": f"{plan.name} {info.run_id}"[:200],
            "plan_id": plan_row.id,
            "trigger_type": info.trigger_type,
            "trigger_event": event,
            "execution_mode": info.execution_mode,
            "initiated_by": info.initiated_by,
        }
        if admission.allowed:
            try:
                execution = cat.open_execution(
                    **common,
                    steps_total=len(plan.steps),
                    affected_services=sorted(_connection_ids(plan.document()["steps"])),
                    triggered_at=None if info.allow_duplicate else info.triggered_at,
                    run_id=info.run_id,
                )
            except ConflictingExecution as exc:
                hint = "" if info.allow_duplicate else (
                    "; to run it anyway once that one has ended, trigger with conf {\"allow_duplicate\": true}")
                admission = type(admission)(False, f"{exc}{hint}")
        if not admission.allowed:
            refused = cat.record_refused_execution(**common, reason=admission.sentence)
            log.error("execution refused (recorded as %s): %s", refused.id, admission.sentence)
            if info.incident_id:
                link_incident(cat, info.incident_id, execution_id=str(refused.id), dag_id=info.dag_id,
                              run_id=info.run_id, refusal=admission.sentence)
            raise AirflowFailException(f"execution refused: {admission.sentence}")
        if info.incident_id:
            link_incident(cat, info.incident_id, execution_id=str(execution.id), dag_id=info.dag_id,
                          run_id=info.run_id)
        cat.create_step_rows(execution.id, _step_specs(plan))
        # The version every task of this run executes (see admitted_plan), whatever the file says later.
        context["ti"].xcom_push(key=ADMITTED_PLAN_KEY, value=AdmittedPlan.of(plan).as_xcom())
        log.info("%s; execution %s opened (%d steps)", admission.sentence, execution.id, len(plan.steps))
        _notify_event(plan, event="started", execution_id=str(execution.id), status="in_progress",
                      summary=f"started: {info.reason}", dry_run=info.dry_run)
        return str(execution.id)
    finally:
        cat.dispose()
