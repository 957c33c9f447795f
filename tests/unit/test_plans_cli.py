"""``python -m disaster_recovery plans ...`` run the way users' CI runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from plan_factory import REPO, base_plan, write_plan

from disaster_recovery.plans import plan_json_schema


def run_cli(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": "plugins" if cwd == REPO else str(REPO / "plugins")}
    return subprocess.run(
        [sys.executable, "-m", "disaster_recovery", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_the_repository_plans():
    done = run_cli("plans", "validate", "include/plans")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    assert "plan(s) valid" in done.stderr


def test_validate_a_good_folder(tmp_path):
    write_plan(tmp_path, base_plan(name="one"), "one.yaml")
    write_plan(tmp_path, base_plan(name="two"), "two.yml")
    done = run_cli("plans", "validate", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    # Draft plans are valid; that they cannot run yet is a warning, which keeps the exit status 0.
    assert done.stdout.splitlines() == [
        f"warning: {tmp_path}/{file}: field 'approval.status': the plan is draft: every execution is refused "
        "until it is approved"
        for file in ("one.yaml", "two.yml")
    ]
    assert done.stderr.strip() == "2 plan(s) valid, 2 warning(s)"


def test_validate_a_bad_folder_prints_one_line_per_problem(tmp_path):
    write_plan(tmp_path, base_plan(name="good"), "good.yaml")
    bad = base_plan(name="bad")
    bad["steps"][1]["config"]["lag_limit_bytes"] = 5
    bad["steps"][0]["depends_on"] = ["ghost"]
    write_plan(tmp_path, bad, "bad.yaml")
    write_plan(tmp_path, "name: [\n", "broken.yaml")
    done = run_cli("plans", "validate", str(tmp_path))
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if not line.startswith("warning:")]
    assert lines[:2] == [
        f"{tmp_path}/bad.yaml: step 'promote' field 'config.lag_limit_bytes': "
        "unknown key 'lag_limit_bytes'; did you mean 'max_lag_bytes'?",
        f"{tmp_path}/bad.yaml: step 'check' field 'depends_on': unknown step 'ghost'",
    ]
    # The wording after the position is libyaml's (or PyYAML's, where it was built without libyaml).
    assert len(lines) == 3
    assert lines[2].startswith(f"{tmp_path}/broken.yaml: invalid YAML at line 2, column 1: while parsing a flow node")
    assert done.stderr.strip() == "3 problem(s) in 2 file(s); 1 plan(s) valid, 1 warning(s)"


def test_validate_relative_paths_name_the_file_as_given(tmp_path):
    (tmp_path / "include" / "plans").mkdir(parents=True)
    data = base_plan()
    data["steps"][1]["config"]["lag_limit_bytes"] = 1
    write_plan(tmp_path / "include" / "plans", data, "x.yaml")
    done = run_cli("plans", "validate", "include/plans", "--quiet", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == (
        "include/plans/x.yaml: step 'promote' field 'config.lag_limit_bytes': "
        "unknown key 'lag_limit_bytes'; did you mean 'max_lag_bytes'?\n"
    )
    assert done.stderr == ""


def test_validate_refuses_unimplemented_step_types_unless_allowed(tmp_path):
    data = base_plan()
    data["steps"].append(
        {
            "name": "tidy",
            "type": "cleanup",
            "config": {"actions": [{"kind": "remove_directory", "path": "/srv/scratch"}]},
        }
    )
    path = write_plan(tmp_path, data)
    done = run_cli("plans", "validate", str(path))
    assert done.returncode == 1
    assert done.stdout.startswith(f"{path}: step 'tidy' field 'type': step type 'cleanup' is not implemented yet")
    assert run_cli("plans", "validate", "--allow-unimplemented", str(path)).returncode == 0


def test_validate_missing_and_empty_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    done = run_cli("plans", "validate", str(tmp_path / "empty"), str(tmp_path / "absent"))
    assert done.returncode == 1
    assert done.stdout.splitlines() == [
        f"{tmp_path}/empty: no plan files (*.yaml, *.yml) here",
        f"{tmp_path}/absent: no such file or directory",
    ]


def test_validate_duplicate_names_across_paths(tmp_path):
    a = write_plan(tmp_path, base_plan(name="same"), "a.yaml")
    (tmp_path / "sub").mkdir()
    b = write_plan(tmp_path / "sub", base_plan(name="same"), "b.yaml")
    done = run_cli("plans", "validate", str(a), str(tmp_path / "sub"))
    assert done.returncode == 1
    # The first file (in the order given) keeps its plan; the newcomer is the problem.
    assert [line for line in done.stdout.splitlines() if not line.startswith("warning:")] == [
        f"{b}: field 'name': plan name 'same' is already used by {a}, which stays deployed; "
        "this file is ignored until it has a name of its own",
    ]


def test_schema_prints_the_json_schema(tmp_path):
    done = run_cli("plans", "schema")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == plan_json_schema()
    out = tmp_path / "schema.json"
    assert run_cli("plans", "schema", "--output", str(out)).returncode == 0
    assert out.read_text() == done.stdout


def test_usage_errors_exit_2():
    assert run_cli().returncode == 2
    assert run_cli("plans").returncode == 2
    done = run_cli("plans", "frobnicate")
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_help_lists_commands():
    done = run_cli("--help")
    assert done.returncode == 0 and "plans" in done.stdout
