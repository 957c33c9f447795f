"""What Airflow serializes of a rendered plan: our operators' shortcuts change its cost, never its content."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import BaseOperator
from airflow.serialization.serialized_objects import DagSerialization

from disaster_recovery.orchestration import operators
from disaster_recovery.plans import parse_plan
from disaster_recovery.rendering import render_plan
from tests.unit.plan_factory import base_plan, validation_step


def _dag():
    steps = [
        validation_step("check"),
        {"name": "promote", "type": "database_failover", "retries": 2, "retry_delay": "5s", "timeout": "1m",
         "description": "promote the standby",
         "config": {"primary_conn_id": "pg_primary", "standby_conn_id": "pg_standby"}},
        validation_step("verify_a", parallel_group="verify"),
        validation_step("verify_b", parallel_group="verify"),
        validation_step("last", depends_on=["check"]),
    ]
    return render_plan(parse_plan(base_plan(steps=steps, rollback_steps=[validation_step("undo")])))


def _serialized(dag) -> str:
    return json.dumps(DagSerialization.to_dict(dag), sort_keys=True, default=str)


def test_leaving_params_out_of_the_generic_field_loop_changes_nothing(monkeypatch):
    dag = _dag()
    ours = _serialized(dag)
    monkeypatch.setattr(
        operators._PlanOperator, "get_serialized_fields", classmethod(lambda cls: BaseOperator.get_serialized_fields())
    )
    assert "params" in operators._PlanOperator.get_serialized_fields()
    assert _serialized(dag) == ours


def test_the_run_parameters_and_the_shape_survive_serialization():
    dag = _dag()
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    expected = set(dag.params.keys())
    assert expected >= {"reason", "execution_mode", "trigger_type", "dry_run"}
    assert set(restored.params.keys()) == expected
    assert set(restored.task_dict["validate_execution"].params.keys()) == expected
    assert not restored.task_dict["promote"].params
    promote = restored.task_dict["promote"]
    assert promote.retries == 2 and promote.retry_delay.total_seconds() == 5
    assert promote.execution_timeout.total_seconds() == 60 and promote.doc_md == "promote the standby"
    assert {t.task_id: set(t.upstream_task_ids) for t in restored.tasks} == {
        t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert restored.task_dict["finalize_execution"].upstream_task_ids == {
        "last", "validate_execution", "undo", "rollback_gate"}


@pytest.mark.parametrize("cls", [operators.ValidateExecutionOperator, operators.FinalizeExecutionOperator,
                                 operators.RollbackGateOperator, operators.RecoveryStepOperator])
def test_our_operators_have_no_init_of_their_own(cls):
    """Airflow wraps each __init__ of the class chain in apply_defaults (one merge of defaults per level)."""
    assert "__init__" not in vars(cls)


def test_a_step_task_holds_its_plan_and_step():
    dag = _dag()
    undo = dag.task_dict["undo"]
    assert isinstance(undo, operators.RecoveryStepOperator)
    assert undo.step_name == "undo" and undo.rollback is True and undo.plan.name == "sample-plan"
    assert dag.task_dict["promote"].rollback is False
    assert dag.task_dict["validate_execution"].plan is undo.plan
