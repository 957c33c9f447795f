"""A task's process builds just its own DAG, from the file the whole folder's parse deploys it from."""

from __future__ import annotations

import pytest
import yaml

from disaster_recovery import rendering
from tests.unit.plan_factory import base_plan


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DR_PARSE_CACHE", str(tmp_path / "cache"))
    plans = tmp_path / "plans"
    plans.mkdir()
    return plans


@pytest.fixture
def reads(monkeypatch):
    calls = []
    real = rendering.load_valid_plans

    def recording(files):
        calls.append([f.name for f in files])
        return real(files)

    monkeypatch.setattr(rendering, "load_valid_plans", recording)
    return calls


def _write(folder, filename, name, description):
    (folder / filename).write_text(yaml.safe_dump(base_plan(name=name, description=description)))


def test_a_file_named_after_its_plan_is_read_alone(folder, reads):
    for name in ("a", "p", "z"):
        _write(folder, f"{name}.yaml", name, f"plan {name}")
    dags = rendering.build_dags(folder, only_dag_id="dr_plan__p")
    assert set(dags) == {"dr_plan__p"} and dags["dr_plan__p"].description == "plan p"
    assert reads == [["p.yaml"]]


def test_the_deployed_holder_of_a_name_is_the_one_a_task_runs(folder, reads):
    """aa.yaml took the name first; p.yaml is the newcomer the loader ignores (and reports)."""
    _write(folder, "aa.yaml", "p", "the deployed plan")
    _write(folder, "p.yaml", "p", "a newcomer reusing the name")
    full = rendering.build_dags(folder)
    one = rendering.build_dags(folder, only_dag_id="dr_plan__p")
    assert full["dr_plan__p"].description == one["dr_plan__p"].description == "the deployed plan"
    assert str(folder / "aa.yaml") in one["dr_plan__p"].doc_md


def test_a_name_spelled_with_an_escape_is_still_found(folder):
    (folder / "aa.yaml").write_text(
        yaml.safe_dump(base_plan(name="PLACEHOLDER", description="the deployed plan")).replace(
            "PLACEHOLDER", '"\\x70"'))
    _write(folder, "p.yaml", "p", "a newcomer reusing the name")
    assert rendering.build_dags(folder)["dr_plan__p"].description == "the deployed plan"
    assert rendering.build_dags(folder, only_dag_id="dr_plan__p")["dr_plan__p"].description == "the deployed plan"


def test_a_plan_in_a_file_of_another_name_is_built_alone(folder):
    _write(folder, "a.yaml", "a", "plan a")
    _write(folder, "other-file.yaml", "p", "plan p")
    assert set(rendering.build_dags(folder, only_dag_id="dr_plan__p")) == {"dr_plan__p"}


def test_an_earlier_file_that_merely_mentions_the_name_changes_nothing(folder):
    _write(folder, "a.yaml", "a", "runs before p")
    _write(folder, "p.yaml", "p", "plan p")
    dags = rendering.build_dags(folder, only_dag_id="dr_plan__p")
    assert set(dags) == {"dr_plan__p"} and dags["dr_plan__p"].description == "plan p"
