"""What the rendered plan's tasks do: catalog records around each step, criteria, outcome, notices.

Decisions are pure (`governance`, `health.criteria`, `plans.criteria`); this module gathers their inputs
(catalog rows, Airflow context), applies them, and says in one sentence what it did.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from disaster_recovery.catalog.repository import Catalog, catalog_from_connection
from disaster_recovery.orchestration.plan_version import VALIDATE_TASK, admitted_plan
from disaster_recovery.plans import Plan, all_criteria_met, evaluate_criteria
from disaster_recovery.steps.base import RunTrigger, StepContext
from disaster_recovery.steps.registry import load_step_class

log = logging.getLogger("disaster_recovery.orchestration")


def catalog() -> Catalog:
    return catalog_from_connection(os.environ.get("DR_CATALOG_CONN_ID", "dr_catalog"))


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    """A run's parameters, checked: what every task of the run reads about why and how it runs."""

    reason: str
    trigger_type: str
    execution_mode: str
    dry_run: bool
    allow_duplicate: bool
    triggered_at: datetime | None
    initiated_by: str
    run_id: str
    dag_id: str
    incident_id: str | None
    evidence: tuple[str, ...]


def run_info(plan: Plan, context) -> RunInfo:
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
    return RunInfo(**{
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
    })


def run_trigger(info: RunInfo) -> RunTrigger:
    return RunTrigger(
        reason=info.reason, trigger_type=info.trigger_type, initiated_by=info.initiated_by,
        dag_id=info.dag_id, run_id=info.run_id, incident_id=info.incident_id, evidence=info.evidence,
    )


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
    dry_run = step.dry_run or info.dry_run
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

