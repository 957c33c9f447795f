"""Plan -> DAG: the rendered task order, parallel groups, edges and retries (no I/O)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk import TriggerRule

from disaster_recovery.plans import parse_plan
from disaster_recovery.rendering import MAX_ACTIVE_RUNS, build_dags, plan_problems, render_plan


def sql_step(name: str, **extra) -> dict:
    return {
        "name": name,
        "type": "validation",
        "config": {"checks": [{"kind": "sql", "name": "c", "conn_id": "db", "query": "SELECT 1", "expected": 1}]},
        **extra,
    }


def plan_with(steps: list[dict], **extra) -> dict:
    return {
        "name": "p",
        "disaster_scenario": "hardware_failure",
        "objectives": {"rto": "15m", "rpo": "1m"},
        "approval": {"status": "approved", "approved_by": "lead", "approved_at": "2025-01-01T00:00:00Z"},
        "steps": steps,
        **extra,
    }


def upstream(dag) -> dict[str, set[str]]:
    return {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}


def topological(dag) -> list[str]:
    order, seen = [], set()
    ups = upstream(dag)
    while len(order) < len(ups):
        ready = sorted(t for t, u in ups.items() if t not in seen and u <= seen)
        assert ready, "cycle"
        order.extend(ready)
        seen.update(ready)
    return order


def test_sequential_steps_keep_plan_order():
    dag = render_plan(parse_plan(plan_with([sql_step("a"), sql_step("b"), sql_step("c")])))
    assert dag.dag_id == "dr_plan__p"
    assert topological(dag) == ["validate_execution", "a", "b", "c", "finalize_execution"]
    assert upstream(dag)["finalize_execution"] == {"c", "validate_execution"}
    assert dag.task_dict["finalize_execution"].trigger_rule == TriggerRule.ALL_DONE
    assert dag.max_active_runs == MAX_ACTIVE_RUNS and dag.schedule is None
    assert {"disaster-recovery", "recovery-plan", "hardware_failure"} <= set(dag.tags)
    assert set(dag.params.keys()) >= {"reason", "execution_mode", "trigger_type", "dry_run"}


def test_parallel_group_runs_at_its_first_members_position():
    steps = [
        sql_step("a"),
        sql_step("g1", parallel_group="g"),
        sql_step("b"),
        sql_step("g2", parallel_group="g"),
        sql_step("c"),
    ]
    ups = upstream(render_plan(parse_plan(plan_with(steps))))
    # g1 and g2 run together right after a (the spec's grouping would move them to the end).
    assert ups["g1"] == {"a"} and ups["g2"] == {"a"}
    assert ups["b"] == {"g1", "g2"}
    assert ups["c"] == {"b"}


def test_depends_on_adds_edges():
    steps = [sql_step("a"), sql_step("x", parallel_group="g"), sql_step("y", parallel_group="g", depends_on=["a"])]
    ups = upstream(render_plan(parse_plan(plan_with(steps))))
    assert ups["x"] == {"a"} and ups["y"] == {"a"}
    steps = [sql_step("a"), sql_step("b"), sql_step("c", depends_on=["a"])]
    assert upstream(render_plan(parse_plan(plan_with(steps))))["c"] == {"a", "b"}


def test_retries_and_backoff_become_airflow_retries():
    steps = [sql_step("a", retries=3, retry_delay="2s", max_retry_delay="1m", timeout="30s"),
             sql_step("b", retry_exponential_backoff=False)]
    dag = render_plan(parse_plan(plan_with(steps)))
    a, b = dag.task_dict["a"], dag.task_dict["b"]
    assert a.retries == 3 and a.retry_delay == timedelta(seconds=2)
    assert a.retry_exponential_backoff == 2.0 and a.max_retry_delay == timedelta(minutes=1)
    assert a.execution_timeout == timedelta(seconds=30)
    assert b.retries == 0 and b.retry_exponential_backoff == 0
    assert dag.task_dict["validate_execution"].retries == 0


def test_rollback_steps_hang_off_a_gate():
    plan = plan_with([sql_step("a"), sql_step("b")], rollback_steps=[sql_step("undo")])
    ups = upstream(render_plan(parse_plan(plan)))
    assert ups["rollback_gate"] == {"a", "b"}
    assert ups["undo"] == {"rollback_gate"}
    assert ups["finalize_execution"] >= {"b", "undo", "rollback_gate"}


def test_unimplemented_step_type_is_never_rendered(tmp_path):
    plan = plan_with([sql_step("a"), {"name": "dns", "type": "dns_update", "config": {
        "aws_conn_id": "aws", "hosted_zone_id": "Z1", "record_name": "db.example.com", "record_type": "A",
        "value": "10.0.0.1"}}])
    import yaml

    (tmp_path / "p.yaml").write_text(yaml.safe_dump(plan))
    assert build_dags(tmp_path) == {}
    (problem,) = plan_problems(tmp_path)
    assert "p.yaml" in problem and "'dns'" in problem and "not implemented" in problem


@pytest.mark.parametrize("count", [3])
def test_only_dag_id_builds_a_single_dag(tmp_path, count):
    import yaml

    for i in range(count):
        (tmp_path / f"p{i}.yaml").write_text(yaml.safe_dump({**plan_with([sql_step("a")]), "name": f"p{i}"}))
    assert set(build_dags(tmp_path)) == {f"dr_plan__p{i}" for i in range(count)}
    assert set(build_dags(tmp_path, only_dag_id="dr_plan__p1")) == {"dr_plan__p1"}
