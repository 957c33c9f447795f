"""README claims about plan DAGs, each through a rendered DAG (dag.test) on real clusters and the real catalog:

- ``execution_mode: test`` (in conf or in the plan) and ``dry_run`` run every step as a dry run: the
  failover step changes nothing, and the execution is recorded as such, with no RPO measured;
- ``validate_execution`` refuses a plan changed since its approval (``approval.fingerprint``, from
  ``python -m disaster_recovery plans fingerprint``) and one not yet effective, and records why;
- ``finalize_execution`` writes the RPO and the data lost that the failover measured.
"""

from __future__ import annotations

import copy
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from disaster_recovery.catalog.repository import Catalog
from disaster_recovery.catalog.tables import recovery_executions
from disaster_recovery.rendering import build_dags
from tests.support import drop_cluster, make_pair

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration
APPROVED = {"status": "approved", "approved_by": "dr-lead", "approved_at": "2025-01-01T00:00:00Z"}


@pytest.fixture(scope="module")
def world(airflow_db, catalog_cluster_db, tmp_path_factory):
    """A catalog, a plans folder, a clusters file, and a streaming pair ``dry`` that no test changes."""
    cluster, dbname = catalog_cluster_db
    primary, standby = make_pair("dry", setup_sql=("app", "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)"))
    root = tmp_path_factory.mktemp("plan-claims")
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_DR_CATALOG", cluster.uri(dbname))
    mp.setenv("DR_CATALOG_CONN_ID", "dr_catalog")
    mp.setenv("DR_PLANS_DIR", str(root / "plans"))
    mp.setenv("DR_CLUSTERS_FILE", str(root / "clusters.yaml"))
    (root / "plans").mkdir()
    state = {"root": root, "mp": mp, "clusters": [], "catalog": Catalog.from_dsn(cluster.dsn(dbname))}
    add_cluster(state, "dry", primary, standby)
    state.update(primary=primary, standby=standby)
    yield state
    state["catalog"].dispose()
    mp.undo()
    drop_cluster(standby)
    drop_cluster(primary)


def add_cluster(world, name: str, primary, standby) -> None:
    """Declare a pair as cluster ``name`` (members ``<name>_node1/2`` with host control) for the plans."""
    members = []
    for index, node in enumerate((primary, standby), 1):
        conn_id = f"{name}_node{index}"
        world["mp"].setenv(f"AIRFLOW_CONN_{conn_id.upper()}", node.uri("app"))
        members.append({"conn_id": conn_id, "control": {"kind": "local", "data_directory": str(node.data_dir)}})
    world["clusters"].append({"name": name, "database": "app", "members": members})
    (world["root"] / "clusters.yaml").write_text(yaml.safe_dump({"clusters": world["clusters"]}))


def failover_plan(name: str, cluster: str, **top) -> dict:
    return {
        "name": name, "disaster_scenario": "hardware_failure", "objectives": {"rto": "5m", "rpo": "1m"},
        "approval": APPROVED, **top,
        "steps": [
            {"name": "promote", "type": "database_failover",
             "config": {"cluster": cluster, "action": "failover", "max_lag_bytes": 1024**3,
                        "fence_old_primary": True, "wait_writable_timeout": "60s"}},
            {"name": "check", "type": "validation", "config": {"checks": [
                {"kind": "sql", "name": "rows", "cluster": cluster, "role": "primary",
                 "query": "SELECT count(*) FROM t", "expected": 2}]}},
        ],
    }


def write(world, plan: dict) -> Path:
    path = world["root"] / "plans" / f"{plan['name']}.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


def run(world, plan_name: str, **conf):
    dag = build_dags(world["root"] / "plans")[f"dr_plan__{plan_name}"]
    return dag.test(run_conf={"reason": "README claim", **conf})


def last_execution(world, plan_name: str):
    plan = world["catalog"].latest_plan(plan_name)
    t = recovery_executions
    with world["catalog"].engine.connect() as conn:
        row = conn.execute(select(t.c.id).where(t.c.plan_id == plan.id).order_by(t.c.initiated_at.desc())).first()
    return world["catalog"].get_execution(row.id)


def untouched(primary, standby) -> None:
    assert standby.in_recovery() and not primary.in_recovery()
    assert not (primary.data_dir / "standby.signal").exists() and not (primary.data_dir / "dr_fence.json").exists()
    assert primary.query("SHOW default_transaction_read_only") == [("off",)]
    primary.query("CREATE TABLE IF NOT EXISTS still_writable (x int)", dbname="app")
    assert primary.query("SELECT count(*) FROM pg_stat_replication") == [(1,)]


@pytest.mark.parametrize(("how", "conf", "top", "mode"), [
    ("conf execution_mode test", {"execution_mode": "test"}, {}, "test"),
    ("conf dry_run", {"dry_run": True}, {}, "manual"),
    ("plan execution_mode test", {}, {"execution_mode": "test"}, "test"),
], ids=["conf-test-mode", "conf-dry-run", "plan-test-mode"])
def test_test_mode_and_dry_run_run_every_step_as_a_dry_run(world, how, conf, top, mode):
    name = f"dry-{mode}-{len(conf)}{len(top)}"
    write(world, failover_plan(name, "dry", **top))
    dag_run = run(world, name, **conf)
    assert dag_run.state == "success", how
    untouched(world["primary"], world["standby"])
    execution = last_execution(world, name)
    assert (execution.status, execution.execution_mode) == ("completed", mode)
    assert execution.trigger_event["dry_run"] is True and execution.execution_log["dry_run"] is True
    assert execution.actual_rpo is None and not execution.data_loss_amount  # a dry run measures no loss
    steps = {s.step_name: s for s in world["catalog"].get_steps(execution.id)}
    assert {s.status for s in steps.values()} == {"completed"}
    promote = steps["promote"].output_data
    assert promote["dry_run"] is True and promote["promoted"] is False and promote["fenced"] is False
    assert steps["check"].output_data["checks"][0]["actual"] == 2  # the check still ran, read-only


def _fingerprint(path: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "disaster_recovery", "plans", "fingerprint", str(path)],
                          capture_output=True, text=True, timeout=120, check=True,
                          env={"PYTHONPATH": str(REPO / "plugins"), "PATH": "/usr/bin:/bin"})
    return proc.stdout.strip()


def sql_plan(name: str, **top) -> dict:
    return {
        "name": name, "disaster_scenario": "software_corruption", "objectives": {"rto": "5m", "rpo": "1m"},
        "approval": APPROVED, **top,
        "steps": [{"name": "check", "type": "validation", "config": {"checks": [
            {"kind": "sql", "name": "rows", "cluster": "dry", "role": "primary", "query": "SELECT count(*) FROM t",
             "expected": 2}]}}],
    }


def _refused(world, plan_name: str, dag_run) -> str:
    assert dag_run.state == "failed"
    execution = last_execution(world, plan_name)
    assert execution.status == "failed" and execution.started_at is None
    assert world["catalog"].get_steps(execution.id) == []  # no step of the plan ran
    return execution.error_details["refused"]


def test_a_plan_changed_since_its_approval_is_refused_until_approved_again(world):
    plan = sql_plan("approved-then-edited")
    path = write(world, plan)
    approved = _fingerprint(path)
    plan["approval"] = {**APPROVED, "fingerprint": approved}
    write(world, plan)
    assert run(world, plan["name"]).state == "success"  # as approved

    edited = copy.deepcopy(plan)
    edited["steps"][0]["config"]["checks"][0]["query"] = "SELECT count(*) FROM t WHERE x > 0"
    write(world, edited)
    now = _fingerprint(world["root"] / "plans" / f"{plan['name']}.yaml")
    assert now != approved
    reason = _refused(world, plan["name"], run(world, plan["name"]))
    assert reason == (f"recovery plan 'approved-then-edited' changed since it was approved (approved fingerprint "
                      f"{approved[:12]}…, now {now[:12]}…): have it approved again")

    edited["approval"] = {**APPROVED, "fingerprint": now}  # approved again
    write(world, edited)
    assert run(world, plan["name"]).state == "success"


def test_a_plan_not_yet_effective_is_refused_with_its_date(world):
    effective = dt.date.today() + dt.timedelta(days=2)
    write(world, sql_plan("not-yet", effective_date=effective.isoformat()))
    reason = _refused(world, "not-yet", run(world, "not-yet"))
    assert reason == f"recovery plan 'not-yet' is not yet effective (effective {effective})"
    write(world, sql_plan("not-yet", effective_date=(dt.date.today() - dt.timedelta(days=1)).isoformat()))
    assert run(world, "not-yet").state == "success"


def test_finalize_writes_the_rpo_and_the_data_lost_that_the_failover_measured(world):
    """Replication stalls, the primary commits on (a second apart), then crashes: the failover measures the
    loss from the old primary's WAL, and finalize records it as the execution's RPO and data loss."""
    primary, standby = make_pair("rpo", setup_sql=("app", "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)"))
    try:
        add_cluster(world, "rpo", primary, standby)
        standby.query("ALTER SYSTEM SET primary_conninfo = ''")  # the standby stops receiving
        standby.query("SELECT pg_reload_conf()")
        primary.query("INSERT INTO t VALUES (3)", dbname="app")
        primary.query("SELECT pg_sleep(1)")
        primary.query("INSERT INTO t VALUES (4)", dbname="app")
        primary.kill()
        write(world, failover_plan("rpo-failover", "rpo"))
        dag_run = run(world, "rpo-failover")
        assert dag_run.state == "success"
        execution = last_execution(world, "rpo-failover")
        (promote,) = [s for s in world["catalog"].get_steps(execution.id) if s.step_name == "promote"]
        out = promote.output_data
        assert out["promoted"] is True and out["data_loss"]["lost_transactions"] >= 2
        assert out["data_loss_seconds"] >= 1 and out["data_loss_bytes"] > 0
        assert execution.actual_rpo == dt.timedelta(seconds=out["data_loss_seconds"])
        assert execution.data_loss_amount == out["data_loss_bytes"]
        assert world["catalog"].latest_plan("rpo-failover").estimated_rpo == dt.timedelta(minutes=1)  # not copied
        assert standby.query("SELECT count(*) FROM t", dbname="app") == [(2,)]  # the two commits were lost
    finally:
        drop_cluster(standby)
        drop_cluster(primary)
