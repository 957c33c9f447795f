"""Each hostile plan file beside the production failover plan, parsed by Airflow's DagBag over our real
dags/ folder: the production DAG is always there, the problem is an import error of dr_config_errors.py
naming the file, and recovery_plans.py itself never fails. Every parse runs under a timeout."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.hostile_plans import EXAMPLE_PLAN, GOOD, HOSTILE

REPO = EXAMPLE_PLAN.parents[2]
PRODUCTION = "dr_plan__wedsync-database-failover"


def _as_other_plan(text: str) -> str:
    return text.replace("name: wedsync-database-failover", "name: hostile-plan", 1)


def _bag(folder, monkeypatch) -> DagBag:
    monkeypatch.setenv("DR_PLANS_DIR", str(folder))
    return DagBag(dag_folder=str(REPO / "dags"))


def _check(bag: DagBag, hostile_name: str) -> str:
    assert PRODUCTION in bag.dags, bag.import_errors
    assert "dr_plan__hostile-plan" not in bag.dags
    assert set(bag.import_errors) == {str(REPO / "dags" / "dr_config_errors.py")}, bag.import_errors
    (message,) = bag.import_errors.values()
    assert hostile_name in message, message
    return message


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_plan_never_hides_the_production_dag(tmp_path, monkeypatch, case):
    text, expected = HOSTILE[case]
    (tmp_path / EXAMPLE_PLAN.name).write_text(GOOD, encoding="utf-8")
    name = f"hostile-{case}.yaml"
    raw = _as_other_plan(text)
    (tmp_path / name).write_bytes(raw.encode("latin-1") if case == "binary_garbage" else raw.encode("utf-8"))
    message = _check(_bag(tmp_path, monkeypatch), name)
    assert expected in message, message


@pytest.mark.timeout(120)
def test_a_second_file_with_the_production_plan_name_never_removes_its_dag(tmp_path, monkeypatch):
    (tmp_path / EXAMPLE_PLAN.name).write_text(GOOD, encoding="utf-8")
    copy = GOOD.replace("description: >-\n", "description: >-\n  A copy that must not take over.\n", 1)
    (tmp_path / "zz-copy.yaml").write_text(copy, encoding="utf-8")
    bag = _bag(tmp_path, monkeypatch)
    message = _check(bag, "zz-copy.yaml")
    assert "is already used by" in message and EXAMPLE_PLAN.name in message
    assert "must not take over" not in (bag.dags[PRODUCTION].description or "")
    assert str(tmp_path / EXAMPLE_PLAN.name) in bag.dags[PRODUCTION].doc_md


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["failover.YAML", "failover.yml.bak"])
def test_a_file_the_loader_skips_is_an_import_error_not_silence(tmp_path, monkeypatch, name):
    (tmp_path / EXAMPLE_PLAN.name).write_text(GOOD, encoding="utf-8")
    (tmp_path / name).write_text(_as_other_plan(GOOD), encoding="utf-8")
    assert "not read" in _check(_bag(tmp_path, monkeypatch), name)


@pytest.mark.timeout(120)
def test_a_valid_but_questionable_plan_is_deployed_with_its_warnings_in_the_dag_doc(tmp_path, monkeypatch):
    (tmp_path / EXAMPLE_PLAN.name).write_text(GOOD, encoding="utf-8")
    (tmp_path / "odd.yaml").write_text(_as_other_plan(GOOD).replace("rpo: 1m", "rpo: 1h"), encoding="utf-8")
    bag = _bag(tmp_path, monkeypatch)
    assert bag.import_errors == {}
    doc = bag.dags["dr_plan__hostile-plan"].doc_md
    assert "## Warnings" in doc
    assert "field 'objectives.rpo': the RPO (1h) is larger than the RTO (15m)" in doc
    assert "## Warnings" not in bag.dags[PRODUCTION].doc_md
    assert bag.dags[PRODUCTION].max_active_runs > 1  # duplicates are refused at once, not queued
