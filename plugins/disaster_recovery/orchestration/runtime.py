"""What the rendered plan's tasks do: catalog records around each step, criteria, outcome, notices.

Decisions are pure (`governance`, `health.criteria`, `plans.criteria`); this module gathers their inputs
(catalog rows, Airflow context), applies them, and says in one sentence what it did.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from disaster_recovery.catalog.records import StepSpec
from disaster_recovery.catalog.repository import Catalog, ConflictingExecution, catalog_from_connection
from disaster_recovery.clusters.events import link_incident
from disaster_recovery.governance.admission import admit_execution
from disaster_recovery.governance.outcome import StepState, decide_outcome
from disaster_recovery.health.criteria import HealthSample, evaluate_failover_criteria
from disaster_recovery.orchestration.plan_version import ADMITTED_PLAN_KEY, VALIDATE_TASK, AdmittedPlan, admitted_plan
from disaster_recovery.plans import Plan, all_criteria_met, evaluate_criteria
from disaster_recovery.plans.model import document_clusters
from disaster_recovery.steps.base import RunTrigger, StepContext
from disaster_recovery.steps.registry import load_step_class

log = logging.getLogger("disaster_recovery.orchestration")
HEALTH_SAMPLES_PER_SERVICE = 20


def catalog() -> Catalog:
    return catalog_from_connection(os.environ.get("DR_CATALOG_CONN_ID", "dr_catalog"))


def _now() -> datetime:
    return datetime.now(UTC)


def run_info(plan: Plan, context) -> dict[str, Any]:
    """The run's parameters: the plan's defaults, then the task's params, then the run's conf.

    Only validate_execution carries the DAG's params (see rendering); every task sees the run's conf.
    """
    dag_run = context["dag_run"]
    values: dict[str, Any] = {
        "reason": "manual trigger",
        "execution_mode": plan.execution_mode.value,
        "trigger_type": "manual",
        "dry_run": False,
        "allow_duplicate": False,
    }
    values.update({k: v for k, v in dict(context.get("params") or {}).items() if k in values})
    conf = dict(getattr(dag_run, "conf", None) or {})
    values.update({k: v for k, v in conf.items() if k in values and v is not None})
    user = (
        conf.get("initiated_by")
        or getattr(dag_run, "triggering_user_name", None)
        or os.environ.get("USER")
        or "airflow"
    )
    mode = str(values["execution_mode"])
    evidence = conf.get("evidence")
    return {
        "reason": str(values["reason"] or "manual trigger"),
        "trigger_type": str(values["trigger_type"]),
        "execution_mode": mode,
        "dry_run": values["dry_run"] in (True, "true", "True", 1) or mode == "test",
        "allow_duplicate": values["allow_duplicate"] in (True, "true", "True", 1),
        "triggered_at": getattr(dag_run, "run_after", None) or getattr(dag_run, "queued_at", None),
        "initiated_by": str(user),
        "run_id": dag_run.run_id,
        "dag_id": dag_run.dag_id,
        "incident_id": str(conf["incident_id"]) if conf.get("incident_id") else None,
        "evidence": tuple(str(e) for e in evidence) if isinstance(evidence, list) else (),
    }


def run_trigger(info: dict[str, Any]) -> RunTrigger:
    return RunTrigger(
        reason=info["reason"], trigger_type=info["trigger_type"], initiated_by=info["initiated_by"],
        dag_id=info["dag_id"], run_id=info["run_id"], incident_id=info["incident_id"], evidence=info["evidence"],
    )


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


# -- tasks --------------------------------------------------------------------------------------------
def validate_and_open(plan: Plan, context) -> str:
    info = run_info(plan, context)
    cat = catalog()
    try:
        plan_row = upsert_plan_record(cat, plan)
        verdict = None
        if info["trigger_type"] in ("automated", "alert_based"):
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
            trigger_type=info["trigger_type"],
            execution_mode=info["execution_mode"],
            active_execution_names=(),
            criteria=verdict,
            conflicting_executions=conflicting,
        )
        event = {
            "reason": info["reason"],
            "timestamp": _now().isoformat(),
            "initiator": info["initiated_by"],
            "dag_id": info["dag_id"],
            "run_id": info["run_id"],
            "dry_run": info["dry_run"],
            "plan_fingerprint": plan.fingerprint(),
        }
        if info["triggered_at"] is not None:
            event["triggered_at"] = info["triggered_at"].isoformat()
        if info["allow_duplicate"]:
            event["allow_duplicate"] = True
        if verdict is not None:
            event["criteria"] = verdict.sentence
        if info["incident_id"]:
            event["incident_id"] = info["incident_id"]
            event["evidence"] = list(info["evidence"])
        common = {
            "execution_name": f"{plan.name} {info['run_id']}"[:200],
            "plan_id": plan_row.id,
            "trigger_type": info["trigger_type"],
            "trigger_event": event,
            "execution_mode": info["execution_mode"],
            "initiated_by": info["initiated_by"],
        }
        if admission.allowed:
            try:
                execution = cat.open_execution(
                    **common,
                    steps_total=len(plan.steps),
                    affected_services=sorted(_connection_ids(plan.document()["steps"])),
                    triggered_at=None if info["allow_duplicate"] else info["triggered_at"],
                    run_id=info["run_id"],
                )
            except ConflictingExecution as exc:
                hint = "" if info["allow_duplicate"] else (
                    "; to run it anyway once that one has ended, trigger with conf {\"allow_duplicate\": true}")
                admission = type(admission)(False, f"{exc}{hint}")
        if not admission.allowed:
            refused = cat.record_refused_execution(**common, reason=admission.sentence)
            log.error("execution refused (recorded as %s): %s", refused.id, admission.sentence)
            if info["incident_id"]:
                link_incident(cat, info["incident_id"], execution_id=str(refused.id), dag_id=info["dag_id"],
                              run_id=info["run_id"], refusal=admission.sentence)
            raise AirflowFailException(f"execution refused: {admission.sentence}")
        if info["incident_id"]:
            link_incident(cat, info["incident_id"], execution_id=str(execution.id), dag_id=info["dag_id"],
                          run_id=info["run_id"])
        cat.create_step_rows(execution.id, _step_specs(plan))
        # The version every task of this run executes (see admitted_plan), whatever the file says later.
        context["ti"].xcom_push(key=ADMITTED_PLAN_KEY, value=AdmittedPlan.of(plan).as_xcom())
        log.info("%s; execution %s opened (%d steps)", admission.sentence, execution.id, len(plan.steps))
        _notify_event(plan, event="started", execution_id=str(execution.id), status="in_progress",
                      summary=f"started: {info['reason']}", dry_run=info["dry_run"])
        return str(execution.id)
    finally:
        cat.dispose()


def _execution_id(context) -> str:
    execution_id = context["ti"].xcom_pull(task_ids=VALIDATE_TASK)
    if not execution_id:
        raise AirflowFailException("no execution was opened for this run (validate_execution did not succeed)")
    return execution_id


def run_step(plan: Plan, step_name: str, context, *, retries: int) -> dict:
    execution_id = _execution_id(context)
    try:
        plan = admitted_plan(plan, context)
    except AirflowFailException as exc:
        with catalog() as cat:
            cat.update_step(execution_id, step_name, status="failed", completed_at=_now(),
                            error_message=f"AirflowFailException: {exc}"[:4000])
        raise
    info = run_info(plan, context)
    step = plan.get_step(step_name)
    ti = context["ti"]
    try_number = int(getattr(ti, "try_number", 1) or 1)
    dry_run = step.dry_run or info["dry_run"]
    cat = catalog()
    started = _now()
    clock = time.monotonic()
    try:
        cat.update_step(
            execution_id, step_name, status="running", retry_count=try_number - 1,
            **({"started_at": started} if try_number == 1 else {}),
        )
        try:
            executor = load_step_class(step.type.value)()
            config = step.config
            if step.type.value == "notification" and not config.channels:
                config = config.model_copy(update={"channels": plan.notifications.channels})
            result = executor.run(
                config,
                StepContext(
                    plan_name=plan.name, step_name=step_name, dry_run=dry_run,
                    execution_id=execution_id, try_number=try_number, log=log, trigger=run_trigger(info),
                ),
            )
            if dry_run and not result.measured:
                checks: list[dict] = [{"criterion": "*", "ok": True,
                                       "message": "dry run: criteria not evaluated (nothing was done to judge)"}]
            else:
                results = evaluate_criteria(step.success_criteria, result.output)
                checks = [r.as_dict() for r in results]
                if not all_criteria_met(results):
                    unmet = "; ".join(r.message or f"{r.criterion}: {r.actual!r} {r.operator} {r.expected!r}"
                                      for r in results if not r.ok)
                    cat.update_step(execution_id, step_name, validation_results=checks, output_data=result.output)
                    raise AirflowException(f"success criteria not met: {unmet}")  # retried like a failure
        except Exception as exc:
            will_retry = try_number <= retries
            found = getattr(exc, "output", None)
            cat.update_step(
                execution_id, step_name,
                **({"output_data": found} if isinstance(found, dict) else {}),
                status="retrying" if will_retry else "failed",
                error_message=f"{type(exc).__name__}: {exc}"[:4000],
                **({} if will_retry else {"completed_at": _now(), "duration": timedelta(seconds=time.monotonic() - clock)}),
            )
            log.error("step %s attempt %d failed%s: %s", step_name, try_number,
                      " (will retry)" if will_retry else "", exc)
            raise
        cat.update_step(
            execution_id, step_name, status="completed", completed_at=_now(),
            duration=timedelta(seconds=time.monotonic() - clock), output_data=result.output,
            validation_results=checks, error_message=None,
        )
        log.info("step %s: %s", step_name, result.sentence)
        return result.output
    finally:
        cat.dispose()


def rollback_gate(plan: Plan, context) -> str:
    execution_id = _execution_id(context)
    plan = admitted_plan(plan, context, same_shape=False)
    cat = catalog()
    try:
        main = {s.name for s in plan.steps}
        failed = [r.step_name for r in cat.get_steps(execution_id) if r.step_name in main and r.status == "failed"]
        wanted = plan.rollback_criteria.on_failed_steps
        if not failed:
            raise AirflowSkipException("no step failed: no rollback")
        if wanted and not set(wanted) & set(failed):
            raise AirflowSkipException(f"failed step(s) {', '.join(failed)} are not in rollback_criteria")
        cat.update_row("recovery_executions", execution_id, rollback_initiated=True)
        return f"rolling back after failure of {', '.join(failed)}"
    finally:
        cat.dispose()


def _notify_event(plan: Plan, *, event: str, execution_id: str, status: str, summary: str,
                  dry_run: bool) -> list[dict]:
    """Send the plan's notice for this event (started, completed, failed, rolled_back) if it wants one.

    A notice that cannot be sent is logged and returned as undelivered; it never changes the outcome.
    """
    from disaster_recovery import notify

    if event not in {e.value for e in plan.notifications.events} or not plan.notifications.channels:
        return []
    notice = {
        "plan_name": plan.name, "execution_id": execution_id, "status": status, "event": event,
        "summary": summary, "dry_run": dry_run,
    }
    try:
        return [d.as_dict() for d in notify.send_notice(
            plan.notifications.channels, context=notice, message=f"Recovery plan '{plan.name}' {status}: {summary}",
        )]
    except Exception as exc:
        log.error("could not send the %s notice of %s: %s", event, plan.name, exc)
        return [{"ok": False, "error": str(exc)}]


def _rpo_figures(plan: Plan, rows) -> tuple[timedelta | None, int | None]:
    """RPO and data loss measured by database_failover steps (replication lag when promoted)."""
    lag_seconds: list[float] = []
    lag_bytes: list[int] = []
    for row in rows:
        if row.step_type == "database_failover" and row.status == "completed" and isinstance(row.output_data, dict):
            out = row.output_data
            if out.get("dry_run"):
                continue
            # The loss measured from the old primary's WAL when there is one, else the lag at the decision.
            seconds = out.get("data_loss_seconds", out.get("lag_seconds"))
            nbytes = out.get("data_loss_bytes", out.get("lag_bytes"))
            if isinstance(seconds, int | float):
                lag_seconds.append(float(seconds))
            if isinstance(nbytes, int):
                lag_bytes.append(nbytes)
    rpo = timedelta(seconds=max(lag_seconds)) if lag_seconds else (timedelta(0) if lag_bytes else None)
    return rpo, (max(lag_bytes) if lag_bytes else None)


def finalize(plan: Plan, context) -> dict:
    execution_id = context["ti"].xcom_pull(task_ids=VALIDATE_TASK)
    if not execution_id:
        raise AirflowFailException("the execution was refused or could not be opened; see validate_execution")
    plan = admitted_plan(plan, context, same_shape=False)
    info = run_info(plan, context)
    cat = catalog()
    try:
        rows = cat.get_steps(execution_id)
        main = {s.name for s in plan.steps}
        for row in rows:
            if row.status in ("pending", "running", "retrying"):
                # Never ran (an upstream step failed) or was cut off: say so instead of leaving it open.
                cat.update_step(execution_id, row.step_name, status="skipped" if row.status == "pending" else "failed")
        rows = cat.get_steps(execution_id)
        outcome = decide_outcome([StepState(r.step_name, r.status, r.step_name not in main) for r in rows])
        execution = cat.get_execution(execution_id)
        now = _now()
        begun = min(t for t in (execution.initiated_at, getattr(context["dag_run"], "queued_at", None)) if t)
        rpo, data_loss = _rpo_figures(plan, rows)
        criteria_met = all(
            all(c.get("ok", False) for c in (r.validation_results or []))
            for r in rows if r.step_name in main and r.status == "completed"
        )
        deliveries = _notify_event(plan, event=outcome.status, execution_id=execution_id, status=outcome.status,
                                   summary=outcome.sentence, dry_run=info["dry_run"])
        cat.finalize_execution(
            execution_id,
            status=outcome.status,
            completed_at=now if outcome.status != "failed" else None,
            failed_at=now if outcome.status == "failed" else None,
            total_duration=now - (execution.started_at or execution.initiated_at),
            actual_rto=now - begun,
            actual_rpo=rpo,
            data_loss_amount=data_loss,
            steps_completed=outcome.steps_completed,
            steps_total=outcome.steps_total,
            success_criteria_met=criteria_met and outcome.succeeded,
            error_details={"failed_steps": list(outcome.failed_steps), "summary": outcome.sentence}
            if not outcome.succeeded else None,
            execution_log={"summary": outcome.sentence, "notifications": deliveries, "dry_run": info["dry_run"]},
            rollback_initiated=outcome.rollback_initiated,
            rollback_completed=outcome.rollback_completed,
        )
        sentence = f"execution {execution_id} {outcome.status}: {outcome.sentence} (RTO {now - begun})"
        log.info(sentence)
        if not outcome.succeeded:
            raise AirflowFailException(sentence)
        return {"execution_id": execution_id, "status": outcome.status, "summary": outcome.sentence}
    finally:
        cat.dispose()
