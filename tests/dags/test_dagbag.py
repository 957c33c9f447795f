"""The DAG folder imports cleanly and every DAG carries tags and retries (the Astro integrity test).

That parsing reaches no database, network, Variable, Connection or subprocess is test_parse_guard.py's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


def test_every_plan_becomes_a_dag(dagbag):
    plans = sorted(p.stem for p in (REPO / "include" / "plans").glob("*.yaml"))
    assert plans
    for name in plans:
        assert f"dr_plan__{name}" in dagbag.dags


@pytest.mark.parametrize("attribute", ["tags"])
def test_every_dag_has_tags(dagbag, attribute):
    for dag_id, dag in dagbag.dags.items():
        assert getattr(dag, attribute), f"{dag_id} has no {attribute}"


def test_every_dag_decides_its_retries(dagbag):
    """Retries are a decision per DAG (dr_restore deliberately never retries on its own)."""
    for dag_id, dag in dagbag.dags.items():
        assert "retries" in (dag.default_args or {}), f"{dag_id} leaves retries to Airflow's default"
        for task in dag.tasks:
            assert task.retries is not None and task.retries >= 0, f"{dag_id}.{task.task_id}"
    for dag_id in ("dr_verify_backups", "dr_plan__wedsync-database-failover"):
        assert any(task.retries > 0 for task in dagbag.dags[dag_id].tasks), dag_id


def test_backup_dags_and_the_asset_that_links_them(dagbag):
    from disaster_recovery.backups.sources import load_sources

    sources = load_sources(REPO / "include" / "backups.yaml")
    assert sources.ok, sources.problems
    for name in sources.sources:
        dag = dagbag.dags[f"dr_backup__{name}"]
        assert [t.task_id for t in dag.topological_sort()] == ["take_backup", "apply_retention", "check_freshness"]
        (outlet,) = dag.task_dict["take_backup"].outlets
        assert outlet.uri == f"dr-backup://{name}/"
    assert "dr_verify_backups" in dagbag.dags and "dr_restore" in dagbag.dags


def test_an_invalid_plan_is_an_import_error_and_hides_no_valid_plan(tmp_path, monkeypatch):
    shutil.copy(REPO / "include" / "plans" / "wedsync-database-failover.yaml", tmp_path)
    (tmp_path / "broken.yaml").write_text(
        (REPO / "include" / "plans" / "wedsync-database-failover.yaml")
        .read_text()
        .replace("name: wedsync-database-failover", "name: broken")
        .replace("max_lag_bytes: 16777216", "max_lag_bytes: lots")
    )
    monkeypatch.setenv("DR_PLANS_DIR", str(tmp_path))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert "dr_plan__wedsync-database-failover" in bag.dags
    assert "dr_plan__broken" not in bag.dags
    (path, message), = bag.import_errors.items()
    assert path.endswith("dr_config_errors.py")
    assert "broken.yaml" in message and "promote_standby" in message and "max_lag_bytes" in message


def test_an_invalid_clusters_or_services_file_is_an_import_error_and_hides_no_dag(tmp_path, monkeypatch):
    (tmp_path / "clusters.yaml").write_text("clusters:\n  - name: x\n    members: [{conn_id: a, password: p}]\n")
    (tmp_path / "services.yaml").write_text("services:\n  - name: s\n    probe: {kind: tcp}\n")
    monkeypatch.setenv("DR_CLUSTERS_FILE", str(tmp_path / "clusters.yaml"))
    monkeypatch.setenv("DR_SERVICES_FILE", str(tmp_path / "services.yaml"))
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert "dr_plan__wedsync-database-failover" in bag.dags and "dr_health_monitor" in bag.dags
    (path, message), = bag.import_errors.items()
    assert path.endswith("dr_config_errors.py")
    assert "clusters.yaml: cluster 'x' field 'members[0].password'" in message
    assert "services.yaml: service 's'" in message
