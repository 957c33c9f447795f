"""The catalog's execution rows: recovery_executions and recovery_step_executions (a part of ``Catalog``).

Concurrency: `open_execution` locks the plan row (``SELECT ... FOR NO KEY UPDATE``) before it looks for a
running execution of the plan, so of two callers racing for the same plan exactly one opens and the other
gets `ConflictingExecution`; a caller triggered before an execution of the plan ended gets
`DuplicateExecution` even when that execution has ended since (a queued duplicate never runs the plan).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, insert, select, update

from disaster_recovery.catalog.base import (
    DuplicateExecution,
    NotFound,
    _check_choice,
    _lock_key,
    _prepare,
    _uuid,
)
from disaster_recovery.catalog.records import ActiveExecution, ExecutionRecord, StepRecord, StepSpec
from disaster_recovery.catalog.tables import (
    ACTIVE_EXECUTION_STATUSES,
    EXECUTION_STATUS,
    STEP_STATUS,
    disaster_recovery_plans,
    recovery_executions,
    recovery_step_executions,
)

STEP_UPDATABLE = frozenset(
    {
        "status",
        "started_at",
        "completed_at",
        "duration",
        "retry_count",
        "output_data",
        "validation_results",
        "error_message",
    }
)


class ExecutionRows:
    """Executions and their steps; mixed into ``Catalog``, which gives it ``engine``."""

    engine: Any

    def active_executions(self, plan_id: uuid.UUID | str | None = None) -> list[ExecutionRecord]:
        """Executions initiated or in progress (of one plan when given), oldest first."""
        t = recovery_executions
        query = select(t).where(t.c.status.in_(ACTIVE_EXECUTION_STATUSES))
        if plan_id is not None:
            query = query.where(t.c.plan_id == _uuid(plan_id))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.c.initiated_at, t.c.id)).mappings().all()
        return [ExecutionRecord.from_row(r) for r in rows]

    def active_execution_plans(self) -> list[ActiveExecution]:
        """Every execution still initiated or in progress, with its plan's name and document."""
        e, p = recovery_executions, disaster_recovery_plans
        query = (
            select(p.c.plan_name, e.c.execution_name, p.c.plan_document)
            .select_from(e.join(p, e.c.plan_id == p.c.id))
            .where(e.c.status.in_(list(ACTIVE_EXECUTION_STATUSES)))
            .order_by(e.c.initiated_at)
        )
        with self.engine.connect() as conn:
            return [ActiveExecution(plan_name=r[0], execution_name=r[1], plan_document=r[2] or {})
                    for r in conn.execute(query)]

    def open_execution(
        self,
        *,
        execution_name: str,
        plan_id: uuid.UUID | str | None,
        trigger_type: str,
        trigger_event: dict,
        execution_mode: str,
        initiated_by: str | None,
        steps_total: int,
        affected_services: Iterable[str] = (),
        triggered_at: dt.datetime | None = None,
        run_id: str | None = None,
    ) -> ExecutionRecord:
        """Open an execution (status in_progress, started now), unless the plan already has a running one.

        With ``triggered_at`` (when this run was asked for) an execution of the plan that was running then
        refuses it too, even if it has ended since: a run queued behind a recovery is its duplicate, not
        a second recovery. Executions of ``run_id`` itself (a cleared and re-run task) do not count.
        Raises `DuplicateExecution` or `ConflictingExecution` naming the other execution, `NotFound` for
        an unknown plan.
        """
        t = recovery_executions
        plan_uuid = None if plan_id is None else _uuid(plan_id)
        values = _prepare(
            t,
            {
                "execution_name": execution_name,
                "plan_id": plan_uuid,
                "trigger_type": trigger_type,
                "trigger_event": trigger_event,
                "execution_mode": execution_mode,
                "initiated_by": initiated_by,
                "recovery_steps_total": steps_total,
                "affected_services": list(affected_services),
            },
        )
        with self.engine.begin() as conn:
            if plan_uuid is None:
                _lock_key(conn, "dr_execution:no-plan")
                same_plan = t.c.plan_id.is_(None)
            else:
                p = disaster_recovery_plans
                locked = conn.execute(
                    select(p.c.id).where(p.c.id == plan_uuid).with_for_update(key_share=True)
                ).scalar()
                if locked is None:
                    raise NotFound(f"no recovery plan with id {plan_uuid}")
                same_plan = t.c.plan_id == plan_uuid
            # A new statement after the lock: in READ COMMITTED it sees a winner's committed row.
            other = conn.execute(
                select(t.c.id, t.c.execution_name)
                .where(same_plan, t.c.status.in_(ACTIVE_EXECUTION_STATUSES))
                .order_by(t.c.initiated_at, t.c.id)
                .limit(1)
            ).first()
            if other is not None:
                raise DuplicateExecution(other.id, other.execution_name, plan_uuid)
            if triggered_at is not None:
                ended = func.coalesce(t.c.completed_at, t.c.failed_at)
                earlier = conn.execute(
                    select(t.c.id, t.c.execution_name, ended.label("ended"))
                    .where(same_plan, t.c.started_at.is_not(None), ended > triggered_at,
                           t.c.trigger_event["run_id"].astext.is_distinct_from(run_id))
                    .order_by(t.c.started_at.desc())
                    .limit(1)
                ).first()
                if earlier is not None:
                    raise DuplicateExecution(earlier.id, earlier.execution_name, plan_uuid, ended_at=earlier.ended)
            row = (
                conn.execute(
                    insert(t).values(**values, status="in_progress", started_at=func.clock_timestamp()).returning(t)
                )
                .mappings()
                .one()
            )
        return ExecutionRecord.from_row(row)

    def record_refused_execution(
        self,
        *,
        execution_name: str,
        plan_id: uuid.UUID | str | None,
        trigger_type: str,
        trigger_event: dict,
        execution_mode: str,
        initiated_by: str | None,
        reason: str,
    ) -> ExecutionRecord:
        """Record a run that was refused before it started: status failed, failed now, the reason."""
        t = recovery_executions
        values = _prepare(
            t,
            {
                "execution_name": execution_name,
                "plan_id": plan_id,
                "trigger_type": trigger_type,
                "trigger_event": trigger_event,
                "execution_mode": execution_mode,
                "initiated_by": initiated_by,
                "error_details": {"refused": reason},
                "success_criteria_met": False,
            },
        )
        with self.engine.begin() as conn:
            row = (
                conn.execute(insert(t).values(**values, status="failed", failed_at=func.clock_timestamp()).returning(t))
                .mappings()
                .one()
            )
        return ExecutionRecord.from_row(row)

    def get_execution(self, execution_id: uuid.UUID | str) -> ExecutionRecord:
        t = recovery_executions
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == _uuid(execution_id))).mappings().one_or_none()
        if row is None:
            raise NotFound(f"no recovery execution with id {execution_id}")
        return ExecutionRecord.from_row(row)

    def finalize_execution(
        self,
        execution_id: uuid.UUID | str,
        *,
        status: str,
        completed_at: dt.datetime | None = None,
        failed_at: dt.datetime | None = None,
        total_duration: dt.timedelta | None,
        actual_rto: dt.timedelta | None,
        actual_rpo: dt.timedelta | None = None,
        steps_completed: int,
        steps_total: int,
        success_criteria_met: bool | None,
        error_details: dict | None = None,
        execution_log: dict | None = None,
        rollback_initiated: bool = False,
        rollback_completed: bool = False,
        data_loss_amount: int | None = None,
    ) -> ExecutionRecord:
        """Close an execution with its outcome. Columns are written as given (None -> NULL), except
        ``execution_log`` and ``data_loss_amount``, which None leaves as they are."""
        _check_choice("execution status", status, EXECUTION_STATUS)
        if status in ACTIVE_EXECUTION_STATUSES:
            raise ValueError(f"finalize_execution needs a final status, not {status!r}")
        t = recovery_executions
        fields: dict[str, Any] = {
            "status": status,
            "completed_at": completed_at,
            "failed_at": failed_at,
            "total_duration": total_duration,
            "actual_rto": actual_rto,
            "actual_rpo": actual_rpo,
            "recovery_steps_completed": steps_completed,
            "recovery_steps_total": steps_total,
            "success_criteria_met": success_criteria_met,
            "error_details": error_details,
            "rollback_initiated": rollback_initiated,
            "rollback_completed": rollback_completed,
        }
        if execution_log is not None:
            fields["execution_log"] = execution_log
        if data_loss_amount is not None:
            fields["data_loss_amount"] = data_loss_amount
        with self.engine.begin() as conn:
            row = (
                conn.execute(update(t).where(t.c.id == _uuid(execution_id)).values(**_prepare(t, fields)).returning(t))
                .mappings()
                .one_or_none()
            )
        if row is None:
            raise NotFound(f"no recovery execution with id {execution_id}")
        return ExecutionRecord.from_row(row)

    # -- steps ----------------------------------------------------------------------------------------
    def create_step_rows(self, execution_id: uuid.UUID | str, steps: Iterable[StepSpec]) -> list[StepRecord]:
        """Create the pending step rows of an execution; steps that already have a row are left alone
        (a retried task does not duplicate them). Returns all step rows of the execution, in order."""
        steps = list(steps)
        names = [s.step_name for s in steps]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate step name(s): {', '.join(duplicates)}")
        exec_id = _uuid(execution_id)
        t, e = recovery_step_executions, recovery_executions
        with self.engine.begin() as conn:
            found = conn.execute(select(e.c.id).where(e.c.id == exec_id).with_for_update(key_share=True)).scalar()
            if found is None:
                raise NotFound(f"no recovery execution with id {execution_id}")
            existing = set(conn.execute(select(t.c.step_name).where(t.c.execution_id == exec_id)).scalars())
            rows = [
                _prepare(
                    t,
                    {
                        "execution_id": exec_id,
                        "step_name": s.step_name,
                        "step_order": s.step_order,
                        "step_type": s.step_type,
                        "step_config": s.step_config,
                        "max_retries": s.max_retries,
                        "success_criteria": s.success_criteria,
                        "dependencies": list(s.dependencies),
                        "parallel_group": s.parallel_group,
                        "status": "pending",
                    },
                )
                for s in steps
                if s.step_name not in existing
            ]
            if rows:
                conn.execute(insert(t), rows)
            result = conn.execute(self._steps_query(exec_id)).mappings().all()
        return [StepRecord.from_row(r) for r in result]

    def update_step(self, execution_id: uuid.UUID | str, step_name: str, **fields: Any) -> StepRecord:
        """Update a step row: status, started_at, completed_at, duration, retry_count, output_data,
        validation_results, error_message."""
        unknown = sorted(set(fields) - STEP_UPDATABLE)
        if unknown:
            raise ValueError(
                f"update_step cannot set {', '.join(unknown)}; allowed: {', '.join(sorted(STEP_UPDATABLE))}"
            )
        if not fields:
            raise ValueError("update_step needs at least one field")
        if "status" in fields:
            _check_choice("step status", fields["status"], STEP_STATUS)
        t = recovery_step_executions
        with self.engine.begin() as conn:
            row = (
                conn.execute(
                    update(t)
                    .where(t.c.execution_id == _uuid(execution_id), t.c.step_name == step_name)
                    .values(**_prepare(t, fields))
                    .returning(t)
                )
                .mappings()
                .one_or_none()
            )
        if row is None:
            raise NotFound(f"execution {execution_id} has no step {step_name!r}")
        return StepRecord.from_row(row)

    def get_steps(self, execution_id: uuid.UUID | str) -> list[StepRecord]:
        """The step rows of an execution, by step_order."""
        with self.engine.connect() as conn:
            rows = conn.execute(self._steps_query(_uuid(execution_id))).mappings().all()
        return [StepRecord.from_row(r) for r in rows]

    @staticmethod
    def _steps_query(execution_id: uuid.UUID):
        t = recovery_step_executions
        return select(t).where(t.c.execution_id == execution_id).order_by(t.c.step_order, t.c.created_at, t.c.id)
