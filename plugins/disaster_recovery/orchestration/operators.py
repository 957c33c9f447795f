"""The operators a rendered plan is made of. They connect Airflow to `runtime`, which does the I/O.

Each operator holds the (frozen) plan it was rendered from; the work happens in `execute`, so building a
DAG never touches the catalog or a connection.
"""

from __future__ import annotations

from typing import Any, Self

from airflow.sdk import BaseOperator

from disaster_recovery.plans import Plan


class _PlanOperator(BaseOperator):
    """Base of our operators. None of them has an ``__init__`` of its own, on purpose: Airflow wraps every
    ``__init__`` in the class chain with apply_defaults, which merges the DAG's defaults and params once per
    level, and a plan file renders thousands of these operators. They are built with ``for_plan`` (and
    ``RecoveryStepOperator.for_step``), which take Airflow's arguments and then attach the plan."""

    ui_color = "#e8f1fb"
    plan: Plan

    @classmethod
    def for_plan(cls, plan: Plan, /, **kwargs: Any) -> Self:
        """The operator, built from BaseOperator's keyword arguments, holding ``plan``."""
        op = cls(**kwargs)
        op.plan = plan
        return op

    @classmethod
    def get_serialized_fields(cls) -> frozenset[str]:
        """BaseOperator's fields without ``params``: Airflow's serializer writes a task's params itself (after
        its generic field loop), and that loop, given a non-empty ParamsDict, compares it with the defaults
        and renders it as a string it then throws away; both validate every param's JSON schema again. The
        serialized task is byte-for-byte the same without it (tests/unit/test_rendering_serialization.py)."""
        global _SERIALIZED_FIELDS
        if _SERIALIZED_FIELDS is None:
            _SERIALIZED_FIELDS = super().get_serialized_fields() - {"params"}
        return _SERIALIZED_FIELDS


_SERIALIZED_FIELDS: frozenset[str] | None = None


class ValidateExecutionOperator(_PlanOperator):
    """Admit the execution (approved, effective, no other running, criteria for automated triggers) and
    open its recovery_executions row; a refusal is recorded with its reason and fails fast."""

    ui_color = "#fff3cd"

    def execute(self, context) -> str:
        from disaster_recovery.orchestration import validate

        return validate.validate_and_open(self.plan, context)


class RecoveryStepOperator(_PlanOperator):
    """Run one plan step through its registered executor, recording its recovery_step_executions row."""

    step_name: str
    rollback: bool = False

    @classmethod
    def for_step(cls, plan: Plan, /, *, step_name: str, rollback: bool = False, **kwargs: Any) -> Self:
        """The task of step ``step_name`` (of the plan's rollback steps with ``rollback``)."""
        op = cls.for_plan(plan, **kwargs)
        op.step_name = step_name
        op.rollback = rollback
        return op

    def execute(self, context) -> dict:
        from disaster_recovery.orchestration import runtime

        return runtime.run_step(self.plan, self.step_name, context, retries=self.retries)


class RollbackGateOperator(_PlanOperator):
    """Let the rollback steps run only when a step failed and the plan's rollback criteria hold."""

    ui_color = "#f8d7da"

    def execute(self, context) -> str:
        from disaster_recovery.orchestration import runtime

        return runtime.rollback_gate(self.plan, context)


class FinalizeExecutionOperator(_PlanOperator):
    """Write the outcome (status, steps, RTO/RPO), notify, and fail unless the execution completed."""

    ui_color = "#d4edda"

    def execute(self, context) -> dict:
        from disaster_recovery.orchestration import finalize

        return finalize.finalize(self.plan, context)


class HealthMonitorOperator(BaseOperator):
    """Defers to the health monitor trigger for as long as it runs (see ``health.monitor.trigger``)."""

    ui_color = "#e2f0d9"

    def __init__(self, *, trigger_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trigger_kwargs = dict(trigger_kwargs or {})

    def execute(self, context) -> None:
        from disaster_recovery.health.monitor.trigger import HealthMonitorTrigger

        self.defer(trigger=HealthMonitorTrigger(**self.trigger_kwargs), method_name="execute_complete")

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        self.log.info("the health monitor ended: %s", event)
        return dict(event or {})
