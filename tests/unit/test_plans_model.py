from __future__ import annotations

import json
import subprocess
import sys
import typing
from datetime import UTC, date, datetime, timedelta

import pytest
from plan_factory import EXAMPLE_PLAN, REPO, base_plan, validation_step, write_plan
from pydantic import BaseModel, ValidationError

from disaster_recovery.plans import (
    CONFIG_MODELS,
    STEP_MODELS,
    ApprovalStatus,
    DisasterScenario,
    ExecutionMode,
    Plan,
    StepType,
    load_plan,
    load_plans,
    parse_plan,
)
from disaster_recovery.plans.language.step_configs import ClusterTarget, DatabaseFailoverConfig, DatabaseTarget
from disaster_recovery.plans.rules.secret_keys import looks_like_secret_key

EVERY_STEP_TYPE = [
    {
        "name": "restore",
        "type": "backup_restore",
        "config": {
            "source": "wedsync",
            "target": {"data_directory": "/srv/restore", "port": 6543},
            "point_in_time": "2025-03-01T12:00:00+01:00",
        },
    },
    {
        "name": "restore_logical",
        "type": "backup_restore",
        "config": {
            "source": "wedsync",
            "backup_id": "20250301T000000",
            "target": {"conn_id": "scratch", "database": "wedsync"},
            "replace_existing": True,
        },
    },
    {
        "name": "start_api",
        "type": "service_start",
        "config": {
            "services": [
                {
                    "name": "api",
                    "command": ["/usr/bin/api", "--port", "8080"],
                    "health_check": {"kind": "http", "url": "http://127.0.0.1:8080/health"},
                    "timeout": "2m",
                },
                {
                    "name": "worker",
                    "systemd_unit": "worker.service",
                    "health_check": {"kind": "tcp", "host": "127.0.0.1", "port": 9000},
                },
            ]
        },
    },
    {
        "name": "dns",
        "type": "dns_update",
        "config": {
            "aws_conn_id": "aws_dr",
            "hosted_zone_id": "Z0123456789ABC",
            "record_name": "db.wedsync.example.",
            "record_type": "CNAME",
            "value": "db-standby.wedsync.example",
            "ttl": 30,
        },
    },
    {
        "name": "lb",
        "type": "load_balancer_config",
        "config": {
            "target_group_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/0123456789abcdef",
            "register_targets": [{"id": "10.0.1.5", "port": 8080}],
            "deregister_targets": [{"id": "10.0.0.5"}],
        },
    },
    {
        "name": "failover",
        "type": "database_failover",
        "config": {"standby_conn_id": "standby", "fence_old_primary": False, "max_lag_seconds": 5.5},
    },
    {
        "name": "check",
        "type": "validation",
        "config": {
            "checks": [
                {"kind": "sql", "conn_id": "standby", "query": "select 1", "expected": 1},
                {"kind": "tcp", "host": "db", "port": 5432, "timeout": "3s"},
                {
                    "kind": "http",
                    "http_conn_id": "api",
                    "endpoint": "/health",
                    "expected_status": 204,
                    "expect_body_contains": "ok",
                },
            ]
        },
    },
    {"name": "notify", "type": "notification", "config": {}},
    {
        "name": "tidy",
        "type": "cleanup",
        "config": {
            "actions": [
                {"kind": "drop_replication_slot", "conn_id": "standby", "slot_name": "old_primary_slot"},
                {"kind": "remove_directory", "path": "/srv/restore"},
                {"kind": "sql", "conn_id": "standby", "statement": "VACUUM ANALYZE"},
            ]
        },
    },
]


def full_plan() -> dict:
    return base_plan(
        name="everything",
        steps=EVERY_STEP_TYPE,
        notifications={"channels": [{"kind": "email", "to": ["ops@example.com"]}]},
        rollback_steps=[validation_step("undo_check")],
        rollback_criteria={"on_failed_steps": ["failover"]},
        execution_mode="fully_automated",
        failover_criteria={
            "health_thresholds": {"db": {"consecutive_failures": 2}},
            "performance_thresholds": {"throughput_rps": 10},
        },
        tags=["wedsync", "tier:1"],
    )


def test_example_plan():
    plan = load_plan(EXAMPLE_PLAN)
    assert plan.name == "wedsync-database-failover"
    assert plan.dag_id == "dr_plan__wedsync-database-failover"
    assert plan.disaster_scenario is DisasterScenario.HARDWARE_FAILURE
    assert (plan.objectives.rto, plan.objectives.rpo) == (timedelta(minutes=15), timedelta(minutes=1))
    assert plan.approval.status is ApprovalStatus.APPROVED
    assert plan.approval.approved_at == datetime(2026, 12, 2, 9, tzinfo=UTC)
    assert plan.review_frequency == timedelta(days=180)
    assert plan.next_review_date() == date(2027, 5, 31)
    assert plan.execution_mode is ExecutionMode.FULLY_AUTOMATED  # the health monitor starts it by itself
    assert plan.failover_criteria.rearm_after == timedelta(seconds=30)
    assert [s.name for s in plan.steps] == ["promote_standby", "verify_writable", "verify_data", "notify_team"]
    promote = plan.get_step("promote_standby")
    assert promote.type is StepType.DATABASE_FAILOVER
    assert isinstance(promote.config, DatabaseFailoverConfig)
    assert (promote.config.cluster, promote.config.action.value) == ("wedsync", "failover")
    assert promote.depends_on == ()
    assert promote.success_criteria == {"promoted": True, "data_loss_bytes": {"operator": "<=", "value": 16777216}}
    assert {plan.get_step(n).parallel_group for n in ("verify_writable", "verify_data")} == {"verify"}
    check = plan.get_step("verify_writable").config.checks[0]
    assert (check.kind, check.cluster, check.role, check.query, check.expected) == (
        "sql",
        "wedsync",
        "primary",
        "SELECT NOT pg_is_in_recovery()",
        True,
    )
    channels = plan.get_step("notify_team").config.channels
    assert [c.kind for c in channels] == ["webhook", "email"]
    assert channels[0].http_conn_id == "dr_webhook" and channels[1].to == ("ops@wedsync.example",)
    with pytest.raises(KeyError):
        plan.get_step("nope")


def test_step_defaults():
    step = parse_plan(base_plan()).steps[0]
    assert step.retries == 0
    assert step.retry_delay == timedelta(seconds=1)
    assert step.retry_exponential_backoff is True
    assert step.max_retry_delay == timedelta(minutes=10)
    assert step.timeout is None and step.dry_run is False and step.depends_on == () and step.parallel_group is None
    assert step.success_criteria == {} and step.description == ""


def test_plan_defaults():
    plan = parse_plan(base_plan())
    assert plan.execution_mode is ExecutionMode.MANUAL
    assert plan.approval.status is ApprovalStatus.DRAFT and plan.next_review_date() is None
    assert plan.version == "1.0" and plan.review_frequency == timedelta(days=180)
    assert plan.failover_criteria.is_empty and plan.rollback_steps == () and plan.tags == ()
    failover = plan.steps[1].config
    assert failover.max_lag_bytes == 16 * 1024 * 1024 and failover.fence_old_primary
    assert failover.wait_writable_timeout == timedelta(seconds=60)


def test_every_step_type_has_a_valid_form():
    plan = parse_plan(full_plan())
    assert {s.type for s in plan.steps} == set(StepType)
    for step in plan.steps:
        assert isinstance(step, STEP_MODELS[step.type])
        assert isinstance(step.config, CONFIG_MODELS[step.type])
    assert isinstance(plan.get_step("restore").config.target, ClusterTarget)
    assert isinstance(plan.get_step("restore_logical").config.target, DatabaseTarget)
    assert plan.get_step("restore").config.point_in_time.utcoffset() == timedelta(hours=1)


def test_models_are_frozen():
    plan = parse_plan(base_plan())
    with pytest.raises(ValidationError):
        plan.name = "other"
    with pytest.raises(ValidationError):
        plan.steps[0].retries = 3
    with pytest.raises(AttributeError):
        plan.steps.append(None)


def test_document_is_json_and_round_trips():
    plan = parse_plan(full_plan())
    document = plan.document()
    assert json.loads(json.dumps(document)) == document
    assert document["objectives"] == {"rto": "15m", "rpo": "1m"}
    assert document["review_frequency"] == "180d"
    assert document["steps"][0]["config"]["point_in_time"] == "2025-03-01T12:00:00+01:00"
    assert Plan.model_validate(document) == plan
    assert Plan.model_validate(json.loads(json.dumps(document))).fingerprint() == plan.fingerprint()


def test_fingerprint_follows_content_not_approval():
    plan = parse_plan(base_plan())
    assert len(plan.fingerprint()) == 64
    assert parse_plan(base_plan()).fingerprint() == plan.fingerprint()
    approved = parse_plan(
        base_plan(approval={"status": "approved", "approved_by": "lead", "approved_at": "2025-01-01T00:00:00Z"})
    )
    assert approved.fingerprint() == plan.fingerprint()
    changed = base_plan()
    changed["steps"][1]["config"]["max_lag_bytes"] = 1
    assert parse_plan(changed).fingerprint() != plan.fingerprint()
    # defaults written out or left implicit are the same content
    explicit = base_plan()
    explicit["steps"][0]["retries"] = 0
    assert parse_plan(explicit).fingerprint() == plan.fingerprint()


def test_load_plans_keeps_valid_plans_beside_invalid_ones(tmp_path):
    write_plan(tmp_path, base_plan(name="good-one"), "a.yaml")
    write_plan(tmp_path, base_plan(name="broken", objectives={"rto": "x", "rpo": "1m"}), "b.yml")
    write_plan(tmp_path, base_plan(name="good-two"), "c.yaml")
    write_plan(tmp_path, "not: [yaml", "d.yaml")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.yaml").write_text("ignored: true")
    plan_set = load_plans(tmp_path)
    assert sorted(plan_set.plans) == ["good-one", "good-two"]
    assert plan_set.sources["good-two"] == tmp_path / "c.yaml"
    assert [p.file for p in plan_set.problems] == [str(tmp_path / "b.yml"), str(tmp_path / "d.yaml")]
    assert not plan_set.ok
    assert [f.name for f in plan_set.files] == ["a.yaml", "b.yml", "c.yaml", "d.yaml"]


def test_duplicate_plan_names_across_files(tmp_path):
    write_plan(tmp_path, base_plan(name="twin"), "a.yaml")
    write_plan(tmp_path, base_plan(name="twin"), "b.yaml")
    write_plan(tmp_path, base_plan(name="single"), "c.yaml")
    plan_set = load_plans(tmp_path)
    # The first file by path keeps the name (and its DAG); the newcomer is reported.
    assert list(plan_set.plans) == ["twin", "single"]
    assert plan_set.sources["twin"] == tmp_path / "a.yaml"
    assert [str(p) for p in plan_set.problems] == [
        f"{tmp_path / 'b.yaml'}: field 'name': plan name 'twin' is already used by {tmp_path / 'a.yaml'}, which "
        "stays deployed; this file is ignored until it has a name of its own",
    ]


def test_load_plans_on_a_missing_directory(tmp_path):
    plan_set = load_plans(tmp_path / "absent")
    assert plan_set.plans == {} and [p.message for p in plan_set.problems] == ["not a directory"]


def test_repository_plans_are_valid():
    plan_set = load_plans(REPO / "include" / "plans")
    assert plan_set.problems == []
    assert "wedsync-database-failover" in plan_set.plans


def _all_models(model: type[BaseModel], seen: set) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for arg in _flatten(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _all_models(arg, seen)


def _flatten(annotation) -> list:
    out = [annotation]
    for arg in typing.get_args(annotation):
        out.extend(_flatten(arg))
    return out


def test_no_field_of_the_plan_language_looks_like_a_secret():
    models: set = set()
    for step_model in STEP_MODELS.values():
        _all_models(step_model, models)
    _all_models(Plan, models)
    assert len(models) > 25
    assert [(m.__name__, f) for m in models for f in m.model_fields if looks_like_secret_key(f)] == []


def test_every_plan_model_forbids_unknown_keys_and_is_frozen():
    models: set = set()
    _all_models(Plan, models)
    for step_model in STEP_MODELS.values():
        _all_models(step_model, models)
    for model in models:
        assert model.model_config.get("extra") == "forbid", model
        assert model.model_config.get("frozen") is True, model


def test_plans_package_imports_no_airflow():
    code = (
        "import sys, disaster_recovery.plans, disaster_recovery.steps.registry, disaster_recovery.cli;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'sqlalchemy', 'psycopg2'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "plugins")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
