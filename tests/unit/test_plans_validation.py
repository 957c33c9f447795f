"""Every kind of invalid plan is refused with a problem naming the file, the step and the field."""

from __future__ import annotations

import copy

import pytest
from plan_factory import base_plan, validation_step, write_plan

from disaster_recovery.plans import PlanProblem, PlanValidationError, load_plan


def problems_of(tmp_path, data, **kwargs) -> list[PlanProblem]:
    path = write_plan(tmp_path, data)
    with pytest.raises(PlanValidationError) as info:
        load_plan(path, **kwargs)
    assert all(p.file == str(path) for p in info.value.problems)
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)
    return info.value.problems


def only_problem(tmp_path, data, **kwargs) -> PlanProblem:
    problems = problems_of(tmp_path, data, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


def with_step(index: int, **changes) -> dict:
    plan = base_plan()
    plan["steps"][index].update(copy.deepcopy(changes))
    return plan


def with_config(index: int, **changes) -> dict:
    plan = base_plan()
    plan["steps"][index]["config"].update(copy.deepcopy(changes))
    return plan


def promote_config(**changes) -> dict:
    return with_config(1, **changes)


def check(**fields) -> dict:
    return with_step(0, config={"checks": [fields]})


CASES = [
    # (id, plan data, step, field, message fragment)
    (
        "unknown step type",
        with_step(1, type="dns_updat"),
        "promote",
        "type",
        "unknown step type 'dns_updat'; expected one of: backup_restore, service_start, dns_update",
    ),
    ("missing step type", base_plan(steps=[{"name": "x", "config": {}}]), "x", "type", "required key is missing"),
    (
        "unknown config key",
        promote_config(lag_limit_bytes=5),
        "promote",
        "config.lag_limit_bytes",
        "unknown key 'lag_limit_bytes'; did you mean 'max_lag_bytes'?",
    ),
    (
        "unknown config key without a close match",
        promote_config(zzz=1),
        "promote",
        "config.zzz",
        "unknown key 'zzz'; allowed keys: cluster, action, candidate, member, rejoin_method, primary_conn_id, "
        "standby_conn_id",
    ),
    (
        "missing config key",
        with_step(1, config={"primary_conn_id": "p"}),
        "promote",
        "config.cluster",
        "name a 'cluster' (or a 'standby_conn_id' to promote)",
    ),
    (
        "missing config",
        base_plan(steps=[{"name": "v", "type": "validation"}]),
        "v",
        "config",
        "required key is missing",
    ),
    ("unknown step key", with_step(0, retry=3), "check", "retry", "unknown key 'retry'; did you mean 'retries'?"),
    (
        "secret in config",
        promote_config(password="hunter2"),
        "promote",
        "config.password",
        "key 'password' looks like a secret; secrets never go in a plan: store them in an Airflow connection",
    ),
    (
        "secret in nested check",
        check(kind="sql", conn_id="db", query="select 1", api_key="k"),
        "check",
        "config.checks[0].api_key",
        "looks like a secret",
    ),
    (
        "secret names the connection fields",
        promote_config(private_key="k"),
        "promote",
        "config.private_key",
        "such as 'primary_conn_id', 'standby_conn_id'",
    ),
    (
        "secret in webhook payload",
        with_step(
            0,
            type="notification",
            config={
                "channels": [{"kind": "webhook", "http_conn_id": "hook", "payload": {"meta": {"auth_token": "x"}}}]
            },
        ),
        "check",
        "config.channels[0].payload.meta.auth_token",
        "key 'auth_token' looks like a secret",
    ),
    (
        "password in a URL",
        check(kind="http", url="https://user:pw@example.com/health"),
        "check",
        "config.checks[0].url",
        "URL embeds a password; use an http connection",
    ),
    (
        "unknown check kind",
        check(kind="smtp"),
        "check",
        "config.checks[0].kind",
        "unknown kind 'smtp'; expected one of: sql, tcp, http",
    ),
    (
        "http check needs one target",
        check(kind="http"),
        "check",
        "config.checks[0].url",
        "give exactly one of 'url' or 'http_conn_id'",
    ),
    (
        "bad port",
        check(kind="tcp", host="h", port=70000),
        "check",
        "config.checks[0].port",
        "less than or equal to 65535",
    ),
    ("empty checks", with_step(0, config={"checks": []}), "check", "config.checks", "needs at least 1 item"),
    (
        "duplicate step names",
        base_plan(steps=[validation_step("a"), validation_step("a")]),
        "a",
        "name",
        "duplicate step name (also step #1)",
    ),
    ("dangling depends_on", with_step(1, depends_on=["nowhere"]), "promote", "depends_on", "unknown step 'nowhere'"),
    ("self dependency", with_step(1, depends_on=["promote"]), "promote", "depends_on", "cannot depend on itself"),
    (
        "cyclic depends_on",
        with_step(0, depends_on=["promote"]),
        "check",
        "depends_on",
        "dependency cycle: 'check' waits for 'promote' (depends_on), 'promote' waits for 'check' (plan order)",
    ),
    (
        "dependency inside a parallel group",
        base_plan(
            steps=[validation_step("a", parallel_group="g"), validation_step("b", parallel_group="g", depends_on=["a"])]
        ),
        "b",
        "depends_on",
        "'a' is in the same parallel_group 'g'",
    ),
    (
        "duration without unit",
        with_step(1, timeout=30),
        "promote",
        "timeout",
        "invalid duration 30: a bare number has no unit",
    ),
    ("unparsable duration", with_step(1, timeout="15 minutes"), "promote", "timeout", "invalid duration '15 minutes'"),
    ("zero timeout", with_step(1, timeout="0s"), "promote", "timeout", "greater than zero"),
    (
        "bad duration in config",
        promote_config(wait_writable_timeout="1 hour"),
        "promote",
        "config.wait_writable_timeout",
        "invalid duration '1 hour'",
    ),
    ("bad step name", with_step(0, name="Check Standby"), "Check Standby", "name", "is not a valid step name"),
    ("negative retries", with_step(0, retries=-1), "check", "retries", "greater than or equal to 0"),
    (
        "retry cap below delay",
        with_step(0, retry_delay="5m", max_retry_delay="1m"),
        "check",
        "max_retry_delay",
        "must not be shorter than retry_delay",
    ),
    (
        "bad success criterion",
        with_step(1, success_criteria={"lag_bytes": {"operator": "~", "value": 3}}),
        "promote",
        "success_criteria.lag_bytes",
        "unknown operator '~'",
    ),
    (
        "duplicate depends_on entry",
        with_step(1, depends_on=["check", "check"]),
        "promote",
        "depends_on",
        "listed more than once: check",
    ),
    (
        "fencing without primary",
        with_step(1, config={"standby_conn_id": "s"}),
        "promote",
        "config.fence_old_primary",
        "fencing needs 'primary_conn_id'",
    ),
    (
        "same primary and standby",
        promote_config(standby_conn_id="pg_primary"),
        "promote",
        "config.standby_conn_id",
        "same connection",
    ),
    (
        "bad connection id",
        promote_config(standby_conn_id="no spaces"),
        "promote",
        "config.standby_conn_id",
        "is not an Airflow connection id",
    ),
    (
        "restore target of neither kind",
        with_step(1, type="backup_restore", config={"source": "main", "target": {"x": 1}}),
        "promote",
        "config.target",
        "target needs either 'data_directory' and 'port', or 'conn_id'",
    ),
    (
        "point in time without zone",
        with_step(
            1,
            type="backup_restore",
            config={
                "source": "main",
                "target": {"data_directory": "/srv/r", "port": 6543},
                "point_in_time": "2025-01-01T00:00:00",
            },
        ),
        "promote",
        "config.point_in_time",
        "timezone",
    ),
    (
        "point in time into a database",
        with_step(
            1,
            type="backup_restore",
            config={"source": "main", "target": {"conn_id": "db"}, "point_in_time": "2025-01-01T00:00:00Z"},
        ),
        "promote",
        "config.point_in_time",
        "needs a cluster target",
    ),
    (
        "relative restore directory",
        with_step(
            1, type="backup_restore", config={"source": "main", "target": {"data_directory": "restore", "port": 6543}}
        ),
        "promote",
        "config.target.data_directory",
        "not an absolute path",
    ),
    (
        "dns value of the wrong family",
        with_step(
            1,
            type="dns_update",
            config={"hosted_zone_id": "Z123", "record_name": "db.example.com", "record_type": "A", "value": "::1"},
        ),
        "promote",
        "config.value",
        "not an IPv4 address (A record)",
    ),
    (
        "dns record type",
        with_step(
            1,
            type="dns_update",
            config={"hosted_zone_id": "Z123", "record_name": "db.example.com", "record_type": "MX", "value": "x"},
        ),
        "promote",
        "config.record_type",
        "Input should be 'A', 'AAAA' or 'CNAME'",
    ),
    (
        "load balancer without targets",
        with_step(
            1,
            type="load_balancer_config",
            config={"target_group_arn": "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web/abc"},
        ),
        "promote",
        "config.register_targets",
        "give targets",
    ),
    (
        "service without launcher",
        with_step(1, type="service_start", config={"services": [{"name": "api"}]}),
        "promote",
        "config.services[0].command",
        "give exactly one of 'command' or 'systemd_unit'",
    ),
    (
        "unknown cleanup action",
        with_step(1, type="cleanup", config={"actions": [{"kind": "format_disk"}]}),
        "promote",
        "config.actions[0].kind",
        "unknown kind 'format_disk'",
    ),
    (
        "remove root directory",
        with_step(1, type="cleanup", config={"actions": [{"kind": "remove_directory", "path": "/"}]}),
        "promote",
        "config.actions[0].path",
        "not an absolute path below '/'",
    ),
    (
        "notification without any channel",
        with_step(1, type="notification", config={}),
        "promote",
        "config.channels",
        "no channels here and none in the plan's notifications.channels",
    ),
    (
        "email address",
        with_step(1, type="notification", config={"channels": [{"kind": "email", "to": ["ops"]}]}),
        "promote",
        "config.channels[0].to[0]",
        "'ops' is not an e-mail address",
    ),
]


@pytest.mark.parametrize(("data", "step", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_step_problem_names_file_step_and_field(tmp_path, data, step, field, fragment):
    problem = only_problem(tmp_path, data)
    assert (problem.step, problem.field) == (step, field)
    assert fragment in problem.message
    assert str(problem) == f"{tmp_path / 'plan.yaml'}: step '{step}' field '{field}': {problem.message}"


PLAN_CASES = [
    ("missing name", {k: v for k, v in base_plan().items() if k != "name"}, "name", "required key is missing"),
    ("bad plan name", base_plan(name="Bad Name"), "name", "is not a valid plan name"),
    (
        "unknown scenario",
        base_plan(disaster_scenario="alien_invasion"),
        "disaster_scenario",
        "Input should be 'hardware_failure', 'software_corruption'",
    ),
    ("bad rto", base_plan(objectives={"rto": "soon", "rpo": "1m"}), "objectives.rto", "invalid duration 'soon'"),
    ("missing rpo", base_plan(objectives={"rto": "15m"}), "objectives.rpo", "required key is missing"),
    ("bad review frequency", base_plan(review_frequency="6 months"), "review_frequency", "invalid duration"),
    ("unquoted version", base_plan(version=1.0), "version", "expected text, got 1.0 (quote it in YAML)"),
    ("unknown execution mode", base_plan(execution_mode="yolo"), "execution_mode", "Input should be 'manual'"),
    (
        "approved without approver",
        base_plan(approval={"status": "approved", "approved_at": "2025-01-01T00:00:00Z"}),
        "approval.approved_by",
        "an approved plan needs approved_by and approved_at",
    ),
    ("unknown plan key", base_plan(owner="me"), "owner", "unknown key 'owner'; allowed keys: name, description"),
    ("secret at plan level", base_plan(db_password="x"), "db_password", "looks like a secret"),
    ("no steps", base_plan(steps=[]), "steps", "needs at least 1 item"),
    (
        "step without a name",
        base_plan(steps=[{"type": "validation", "config": {"checks": [{"kind": "tcp", "host": "h", "port": 1}]}}]),
        "steps[0].name",
        "required key is missing",
    ),
    ("step that is not a mapping", base_plan(steps=["promote"]), "steps[0]", "Input should be a valid dictionary"),
    (
        "rollback criteria naming an unknown step",
        base_plan(rollback_steps=[validation_step("undo")], rollback_criteria={"on_failed_steps": ["ghost"]}),
        "rollback_criteria.on_failed_steps[0]",
        "unknown step 'ghost'",
    ),
    (
        "rollback criteria without rollback steps",
        base_plan(rollback_criteria={"on_failed_steps": ["promote"]}),
        "rollback_criteria",
        "no effect",
    ),
    (
        "fully automated without criteria",
        base_plan(execution_mode="fully_automated"),
        "failover_criteria",
        "needs failover criteria",
    ),
    (
        "bad health status",
        base_plan(failover_criteria={"health_thresholds": {"db": {"status": "sad"}}}),
        "failover_criteria.health_thresholds.db.status",
        "Input should be 'degraded' or 'unhealthy'",
    ),
    (
        "error rate over 100",
        base_plan(failover_criteria={"performance_thresholds": {"error_rate_percent": 150}}),
        "failover_criteria.performance_thresholds.error_rate_percent",
        "less than or equal to 100",
    ),
    ("YAML 'on' key", "on: [completed]\n", "True", "is not a string (YAML reads unquoted on/off"),
]


@pytest.mark.parametrize(("data", "field", "fragment"), [c[1:] for c in PLAN_CASES], ids=[c[0] for c in PLAN_CASES])
def test_plan_problem_names_file_and_field(tmp_path, data, field, fragment):
    problem = only_problem(tmp_path, data)
    assert (problem.step, problem.field) == (None, field)
    assert fragment in problem.message
    assert str(problem) == f"{tmp_path / 'plan.yaml'}: field '{field}': {problem.message}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\n  bad: [\n", "invalid YAML at line 2, column 6: mapping values are not allowed"),
        ("steps: [\n", "invalid YAML at line 2"),
        ("name: a\nname: b\n", "invalid YAML at line 2, column 1: found duplicate key 'name' (first at line 1)"),
        ("", "expected a plan (a mapping of keys) but found nothing"),
        ("- a\n- b\n", "expected a plan (a mapping of keys) but found list"),
        ("---\nname: a\n---\nname: b\n", "invalid YAML"),
    ],
)
def test_file_level_problems(tmp_path, text, fragment):
    problem = only_problem(tmp_path, text)
    assert (problem.step, problem.field) == (None, None)
    assert fragment in problem.message
    assert str(problem) == f"{tmp_path / 'plan.yaml'}: {problem.message}"


def test_unreadable_file(tmp_path):
    with pytest.raises(PlanValidationError) as info:
        load_plan(tmp_path / "absent.yaml")
    assert "cannot read the file" in str(info.value)


def test_all_problems_of_a_file_are_reported_together(tmp_path):
    plan = base_plan()
    plan["steps"][0]["config"]["checks"][0]["port"] = "many"
    plan["steps"][1]["config"]["lag_limit_bytes"] = 1
    plan["steps"].append(
        {"name": "later", "type": "cleanup", "config": {"actions": [{"kind": "sql", "conn_id": "db"}]}}
    )
    problems = problems_of(tmp_path, plan)
    assert [(p.step, p.field) for p in problems] == [
        ("check", "config.checks[0].port"),
        ("promote", "config.lag_limit_bytes"),
        ("later", "config.actions[0].statement"),
    ]
    assert "(got 'many')" in problems[0].message


def test_unimplemented_step_type_is_refused(tmp_path):
    data = with_step(
        1,
        type="dns_update",
        config={
            "hosted_zone_id": "Z123",
            "record_name": "db.example.com",
            "record_type": "CNAME",
            "value": "db2.example.com",
        },
    )
    problem = only_problem(tmp_path, data, implemented_step_types={"validation", "database_failover"})
    assert (problem.step, problem.field) == ("promote", "type")
    assert problem.message == (
        "step type 'dns_update' is not implemented yet; this installation can run: database_failover, validation"
    )
    assert load_plan(tmp_path / "plan.yaml").steps[1].config.value == "db2.example.com"  # None: accept all


def test_rollback_step_problems_say_rollback(tmp_path):
    data = base_plan(rollback_steps=[{"name": "undo", "type": "validation", "config": {"checks": [{"kind": "tcp"}]}}])
    problems = problems_of(tmp_path, data)
    assert {(p.step, p.field, p.section) for p in problems} == {
        ("undo", "config.checks[0].host", "rollback_steps"),
        ("undo", "config.checks[0].port", "rollback_steps"),
    }
    assert str(problems[0]).startswith(f"{tmp_path / 'plan.yaml'}: rollback step 'undo' field 'config.checks[0].")


def test_rollback_step_names_must_differ_from_steps(tmp_path):
    problem = only_problem(tmp_path, base_plan(rollback_steps=[validation_step("check")]))
    assert (problem.step, problem.field, problem.section) == ("check", "name", "rollback_steps")
    assert "also the name of a step" in problem.message


def test_problem_without_field_but_with_step():
    problem = PlanProblem("p.yaml", "promote", None, "broken")
    assert str(problem) == "p.yaml: step 'promote': broken"


def test_dependency_problems_are_reported_beside_structural_ones(tmp_path):
    plan = base_plan()
    plan["steps"][0]["config"]["checks"][0]["port"] = 0
    plan["steps"][1]["depends_on"] = ["ghost"]
    plan["steps"].append(validation_step("check"))
    problems = problems_of(tmp_path, plan)
    assert [(p.step, p.field, p.message) for p in problems] == [
        ("check", "config.checks[0].port", "Input should be greater than or equal to 1 (got 0)"),
        ("check", "name", "duplicate step name (also step #1)"),
        ("promote", "depends_on", "unknown step 'ghost'"),
    ]
