"""Hostile plan files: every one becomes a problem naming the file (and step/field), fast and small.

Each case is a variation of the shipped failover plan, so the only thing wrong with it is the hostile part.
"""

from __future__ import annotations

import tracemalloc
from datetime import date

import pytest
import yaml
from plan_factory import EXAMPLE_PLAN, base_plan, write_plan

from disaster_recovery.plans import PlanValidationError, load_plan, load_plans, parse_plan
from disaster_recovery.plans.reading.bounds import MAX_DEPTH, MAX_FILE_BYTES
from disaster_recovery.plans.reading.loader import load_plan_files
from disaster_recovery.plans.rules.templates import TemplateRenderError, render_template
from disaster_recovery.steps.base import StepContext, StepFailed
from disaster_recovery.steps.notification import NotificationStep
from tests.hostile_plans import GOOD, HOSTILE, variant


def _write(tmp_path, name, text):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(text.encode("latin-1") if name.endswith("binary_garbage") else text.encode("utf-8"))
    return path


@pytest.mark.timeout(60)  # nothing hangs: a runaway walk or expansion fails here instead of spinning
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_plan_is_one_clear_problem_beside_a_good_plan(tmp_path, case):
    text, expected = HOSTILE[case]
    (tmp_path / "good.yaml").write_text(GOOD.replace("wedsync-database-failover", "good-plan"), encoding="utf-8")
    hostile = _write(tmp_path, f"x-{case}", text)
    tracemalloc.start()
    plan_set = load_plans(tmp_path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert list(plan_set.plans) == ["good-plan"]
    lines = [str(p) for p in plan_set.problems]
    assert lines and all(line.startswith(f"{hostile}:") for line in lines), lines
    assert any(expected in line for line in lines), lines
    # Bounded memory: the limits are far below what would hurt (a runaway takes gigabytes).
    assert peak < 64 << 20, f"{case}: {peak:,} bytes traced"


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(GOOD + "#" * (MAX_FILE_BYTES + 1), encoding="utf-8")
    with pytest.raises(PlanValidationError, match="larger than 1,048,576 bytes; refused unread"):
        load_plan(path)


def test_nesting_up_to_the_limit_is_fine_and_one_more_level_is_not():
    ok = base_plan(success_criteria_note=None)
    ok.pop("success_criteria_note")
    ok["steps"][0]["success_criteria"] = {"passed": 1}
    parse_plan(ok)
    deep: object = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    bad = base_plan()
    bad["tags"] = deep
    with pytest.raises(PlanValidationError, match=f"nested more than {MAX_DEPTH} levels deep"):
        parse_plan(bad)


@pytest.mark.timeout(60)
def test_data_with_shared_parts_is_measured_as_expanded_not_walked_forever():
    leaf = ["x"] * 10
    for _ in range(9):
        leaf = [leaf] * 10  # 10**10 values once expanded, ~100 objects in memory
    plan = base_plan()
    plan["steps"][0]["config"]["checks"][0] = {"kind": "sql", "name": "x", "conn_id": "c", "query": "SELECT 1",
                                               "expected": leaf}
    with pytest.raises(PlanValidationError, match=r"steps\[0\]\.config\.checks\[0\]\.expected.*expands to more than"):
        parse_plan(plan)


def test_merge_keys_still_work_and_an_explicit_key_overrides_the_merged_one(tmp_path):
    text = variant("  - name: verify_writable\n", "  - name: verify_writable\n") .replace(
        "    retries: 3\n    retry_delay: 2s\n", "    <<: &retry {retries: 3, retry_delay: 2s}\n", 1
    ).replace("    retries: 3\n    retry_delay: 2s\n", "    <<: *retry\n    retries: 5\n", 1)
    plan = load_plan(_write(tmp_path, "merge", text))
    assert plan.get_step("verify_writable").retries == 3
    assert plan.get_step("verify_data").retries == 5


def test_duplicate_plan_name_keeps_the_first_file_and_its_dag(tmp_path):
    first = write_plan(tmp_path, base_plan(name="same"), "a.yaml")
    newcomer = write_plan(tmp_path, base_plan(name="same", description="the copy"), "b.yaml")
    plan_set = load_plans(tmp_path)
    assert plan_set.sources == {"same": first}
    assert plan_set.plans["same"].description == ""
    assert [p.file for p in plan_set.problems] == [str(newcomer)]


@pytest.mark.parametrize("name", ["failover.YAML", "failover.Yml", "failover.json", "failover.yaml.bak"])
def test_a_file_the_loader_skips_is_reported(tmp_path, name):
    write_plan(tmp_path, base_plan(name="good"), "good.yaml")
    (tmp_path / name).write_text("name: skipped\n", encoding="utf-8")
    (tmp_path / "README.md").write_text("docs are fine\n", encoding="utf-8")
    (tmp_path / ".hidden.yaml").write_text("hidden is fine\n", encoding="utf-8")
    plan_set = load_plans(tmp_path)
    assert list(plan_set.plans) == ["good"]
    assert [(p.file, p.message.split(":")[0]) for p in plan_set.problems] == [(str(tmp_path / name), "not read")]


def _warnings(data, today=date(2026, 12, 2)):
    return [f"{w.field}: {w.message}" for w in load_plan_files([data], today=today).warnings]


def test_warnings_for_valid_but_questionable_plans(tmp_path):
    data = yaml.safe_load(GOOD)
    data["objectives"]["rpo"] = "1h"
    data["effective_date"] = "2027-01-01"
    data["steps"][0]["timeout"] = "20m"
    found = _warnings(write_plan(tmp_path, data, "w.yaml"))
    assert any(w.startswith("objectives.rpo: the RPO (1h) is larger than the RTO (15m)") for w in found), found
    assert any(w.startswith("effective_date: not effective before 2027-01-01") for w in found), found
    assert any(w.startswith("timeout: the timeout (20m) is longer than the plan's RTO (15m)") for w in found), found
    assert any(w.startswith("approval.fingerprint: the plan changed since it was approved") for w in found), found
    overdue = _warnings(EXAMPLE_PLAN, today=date(2027, 12, 2))
    assert any(w.startswith("review_frequency: the review was due on 2027-05-31") for w in overdue), overdue
    assert _warnings(EXAMPLE_PLAN) == []


def test_criteria_on_an_unknown_result_field_are_a_warning(tmp_path):
    data = yaml.safe_load(GOOD)
    data["steps"][1]["success_criteria"] = {"all_pased": True}
    found = _warnings(write_plan(tmp_path, data, "w.yaml"))
    assert any(w.startswith("success_criteria.all_pased: a validation step's result has no 'all_pased'")
               for w in found), found


def test_an_undefined_name_at_render_time_names_the_field_and_the_name():
    with pytest.raises(TemplateRenderError, match=r"field 'channels\[0\]\.subject': undefined name.*'missing'"):
        render_template("{{ plan_name.missing.deeper }}", {"plan_name": "p"}, field="channels[0].subject")
    # every notice name is defined (None where it does not apply)
    assert render_template("{{ summary }}/{{ step_name }}", {}, field="message") == "None/None"


def test_the_notification_step_fails_clearly_on_a_template_that_cannot_render():
    config = {"channels": [{"kind": "webhook", "url": "http://127.0.0.1:9/hook",
                            "payload": {"text": "{{ plan_name.nope.deeper }}"}}]}
    ctx = StepContext(plan_name="p", step_name="notify_team", dry_run=True)
    with pytest.raises(StepFailed, match=r"Step 'notify_team': the notice was not sent: field "
                                         r"'config\.channels\[0\]\.payload\.text': undefined name"):
        NotificationStep().run(config, ctx)
