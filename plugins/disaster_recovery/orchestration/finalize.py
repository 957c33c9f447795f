"""finalize_execution: whatever happened, close the execution with its outcome (status, steps, RTO, RPO
measured by the failover steps), send the plan's notice, and fail the run unless the execution completed."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk.exceptions import AirflowFailException

from disaster_recovery.governance.outcome import StepState, decide_outcome
from disaster_recovery.orchestration.plan_version import VALIDATE_TASK, admitted_plan
from disaster_recovery.orchestration.runtime import _notify_event, _now, catalog, log, run_info
from disaster_recovery.plans import Plan


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
                                   summary=outcome.sentence, dry_run=info.dry_run)
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
            execution_log={"summary": outcome.sentence, "notifications": deliveries, "dry_run": info.dry_run},
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
