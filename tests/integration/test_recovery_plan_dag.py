"""Rendered plans run under real Airflow (dag.test) against real clusters, recorded in a real catalog.

The shipped plan include/plans/wedsync-database-failover.yaml fails a primary over to its streaming
standby; e-mail goes to an aiosmtpd server and webhooks to an HTTP server, both on loopback.
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2
import pytest
import yaml
from aiosmtpd.controller import Controller

from disaster_recovery.catalog.repository import Catalog
from disaster_recovery.postgres.cluster import free_port
from disaster_recovery.rendering import build_dags
from tests.support import drop_cluster, make_pair

REPO = Path(__file__).resolve().parents[2]
FAILOVER_PLAN = REPO / "include" / "plans" / "wedsync-database-failover.yaml"
pytestmark = pytest.mark.integration


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture(scope="module")
def sinks():
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    hooks: list = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            hooks.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield {"smtp_port": smtp.port, "webhook_port": httpd.server_address[1], "inbox": inbox, "hooks": hooks}
    httpd.shutdown()
    httpd.server_close()
    smtp.stop()


@pytest.fixture(scope="module")
def wedsync_pair():
    primary, standby = make_pair("wedsync", setup_sql=(
        "wedsync",
        "CREATE TABLE weddings (id serial PRIMARY KEY, couple text NOT NULL);"
        "INSERT INTO weddings (couple) SELECT 'couple ' || g FROM generate_series(1, 50) g",
    ))
    yield primary, standby
    drop_cluster(standby)
    drop_cluster(primary)


@pytest.fixture(scope="module")
def env(airflow_db, catalog_cluster_db, wedsync_pair, sinks, tmp_path_factory):
    """Airflow connections (as env vars: Airflow's own secrets backend) and a plans folder."""
    cluster, dbname = catalog_cluster_db
    primary, standby = wedsync_pair
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_DR_CATALOG", cluster.uri(dbname))
    mp.setenv("AIRFLOW_CONN_WEDSYNC_NODE1", primary.uri("wedsync"))
    mp.setenv("AIRFLOW_CONN_WEDSYNC_NODE2", standby.uri("wedsync"))
    # The shipped plan names the cluster: its members are this module's pair, with host control.
    clusters = tmp_path_factory.mktemp("clusters") / "clusters.yaml"
    clusters.write_text(yaml.safe_dump({"clusters": [{"name": "wedsync", "database": "wedsync", "members": [
        {"conn_id": "wedsync_node1", "control": {"kind": "local", "data_directory": str(primary.data_dir)}},
        {"conn_id": "wedsync_node2", "control": {"kind": "local", "data_directory": str(standby.data_dir)}},
    ]}]}))
    mp.setenv("DR_CLUSTERS_FILE", str(clusters))
    mp.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": sinks["smtp_port"],
                    "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "dr@test.example"}}),
    )
    mp.setenv(
        "AIRFLOW_CONN_DR_WEBHOOK",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": sinks["webhook_port"], "schema": "http"}),
    )
    plans = tmp_path_factory.mktemp("plans")
    shutil.copy(FAILOVER_PLAN, plans)
    mp.setenv("DR_PLANS_DIR", str(plans))
    catalog = Catalog.from_dsn(cluster.dsn(dbname))
    yield {"plans": plans, "catalog": catalog, "primary": primary, "standby": standby}
    catalog.dispose()
    mp.undo()


def write_plan(folder: Path, data: dict) -> str:
    (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return f"dr_plan__{data['name']}"


def sql_plan(name: str, *, conn_id: str, query: str, expected, retries: int = 0, approved: bool = True) -> dict:
    approval = (
        {"status": "approved", "approved_by": "dr-lead", "approved_at": "2025-01-01T00:00:00Z"}
        if approved else {"status": "draft"}
    )
    return {
        "name": name,
        "disaster_scenario": "software_corruption",
        "objectives": {"rto": "5m", "rpo": "1m"},
        "approval": approval,
        "steps": [
            {"name": "check", "type": "validation", "retries": retries, "retry_delay": "1s",
             "config": {"checks": [{"kind": "sql", "name": "q", "conn_id": conn_id, "query": query,
                                    "expected": expected}]}},
        ],
    }


def run(env, dag_id: str, **conf):
    dag = build_dags(env["plans"])[dag_id]
    return dag.test(run_conf={"reason": "integration test", **conf})


def executions(env, plan_name: str):
    plan = env["catalog"].latest_plan(plan_name)
    from sqlalchemy import select

    from disaster_recovery.catalog.tables import recovery_executions as t

    with env["catalog"].engine.connect() as conn:
        return list(conn.execute(select(t).where(t.c.plan_id == plan.id).order_by(t.c.initiated_at)).mappings())


def test_unapproved_plan_is_refused_with_the_reason_recorded(env):
    dag_id = write_plan(env["plans"], sql_plan("draft-plan", conn_id="wedsync_node1", query="SELECT 1",
                                               expected=1, approved=False))
    dag_run = run(env, dag_id)
    assert dag_run.state == "failed"
    (row,) = executions(env, "draft-plan")
    assert row["status"] == "failed"
    assert "not approved" in row["error_details"]["refused"]
    assert row["trigger_event"]["reason"] == "integration test"


def test_a_second_concurrent_execution_is_refused(env):
    dag_id = write_plan(env["plans"], sql_plan("busy-plan", conn_id="wedsync_node1", query="SELECT 1", expected=1))
    first = run(env, dag_id)
    assert first.state == "success"
    plan = env["catalog"].latest_plan("busy-plan")
    running = env["catalog"].open_execution(
        execution_name="busy-plan started elsewhere", plan_id=plan.id, trigger_type="manual",
        trigger_event={"reason": "DR API"}, execution_mode="manual", initiated_by="ops", steps_total=1,
    )
    second = run(env, dag_id)
    assert second.state == "failed"
    refused = executions(env, "busy-plan")[-1]
    assert refused["status"] == "failed"
    reason = refused["error_details"]["refused"]
    assert reason.startswith(f"duplicate of execution {running.id} ('busy-plan started elsewhere'), triggered while "
                             "it was running (it is still running)"), reason
    assert env["catalog"].get_execution(running.id).status == "in_progress"
    # The override does not make two executions of one plan run at once.
    third = run(env, dag_id, allow_duplicate=True)
    assert third.state == "failed"
    assert "duplicate of execution" in executions(env, "busy-plan")[-1]["error_details"]["refused"]


def test_a_run_triggered_while_another_ran_is_refused_even_after_that_one_ended(env):
    """A run queued behind a recovery (max_active_runs, a pager bot pressing again) is its duplicate: it
    must not run the plan again once the first one is over, unless its conf says allow_duplicate."""
    dag_id = write_plan(env["plans"], sql_plan("queued-plan", conn_id="wedsync_node1", query="SELECT 1", expected=1))
    assert run(env, dag_id).state == "success"
    (first,) = executions(env, "queued-plan")
    during = first["started_at"] + (first["completed_at"] - first["started_at"]) / 2
    dag = build_dags(env["plans"])[dag_id]
    queued = dag.test(run_after=during, run_conf={"reason": "pressed again"})
    assert queued.state == "failed"
    refused = executions(env, "queued-plan")[-1]
    assert refused["status"] == "failed" and refused["started_at"] is None
    reason = refused["error_details"]["refused"]
    assert reason.startswith(f"duplicate of execution {first['id']} ('{first['execution_name']}'), triggered while "
                             "it was running (it ended at "), reason
    assert 'trigger with conf {"allow_duplicate": true}' in reason
    assert env["catalog"].get_steps(refused["id"]) == []  # no step of the plan ran
    forced = dag.test(run_after=during + timedelta(microseconds=1),
                      run_conf={"reason": "second recovery on purpose", "allow_duplicate": True})
    assert forced.state == "success"
    assert executions(env, "queued-plan")[-1]["trigger_event"]["allow_duplicate"] is True
    assert run(env, dag_id).state == "success"  # triggered after the others ended: a new recovery


def test_failing_step_retries_then_fails_the_run_and_the_execution(env, sinks):
    plan = sql_plan("failing-plan", conn_id="wedsync_node1", query="SELECT 41", expected=42, retries=2)
    plan["notifications"] = {"events": ["started", "failed"],
                             "channels": [{"kind": "webhook", "http_conn_id": "dr_webhook"}]}
    dag_id = write_plan(env["plans"], plan)
    dag_run = run(env, dag_id)
    assert dag_run.state == "failed"
    (row,) = executions(env, "failing-plan")
    assert row["status"] == "failed" and row["failed_at"] is not None
    assert row["recovery_steps_completed"] == 0 and row["recovery_steps_total"] == 1
    (step,) = env["catalog"].get_steps(row["id"])
    assert step.status == "failed"
    assert step.retry_count == 2
    assert "41" in step.error_message
    assert step.output_data["checks"][0]["actual"] == 41  # what the failed check saw is kept
    notices = [h for h in sinks["hooks"] if h.get("plan_name") == "failing-plan"]
    assert [n["event"] for n in notices] == ["started", "failed"]


def test_failover_plan_promotes_the_standby_and_records_everything(env, sinks):
    primary, standby = env["primary"], env["standby"]
    primary.query("INSERT INTO weddings (couple) VALUES ('committed before failover')", dbname="wedsync")
    dag_run = run(env, "dr_plan__wedsync-database-failover")
    assert dag_run.state == "success"

    # The standby is the new primary, with the row committed before the failover.
    assert not standby.in_recovery()
    assert standby.query("SELECT count(*) FROM weddings WHERE couple = 'committed before failover'",
                         dbname="wedsync")[0][0] == 1
    standby.query("INSERT INTO weddings (couple) VALUES ('after failover')", dbname="wedsync")
    # The old primary was fenced for good: stopped, and started again it comes up as a standby.
    assert (primary.data_dir / "standby.signal").exists() and (primary.data_dir / "dr_fence.json").exists()
    primary.start()
    primary.wait_ready()
    assert primary.in_recovery()
    conn = primary.connect("wedsync")
    try:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), conn.cursor() as cur:
            cur.execute("INSERT INTO weddings (couple) VALUES ('split brain')")
    finally:
        conn.close()

    (row,) = executions(env, "wedsync-database-failover")
    assert row["status"] == "completed"
    assert row["recovery_steps_completed"] == row["recovery_steps_total"] == 4
    assert row["completed_at"] is not None and row["actual_rto"] is not None
    assert row["actual_rto"].total_seconds() > 0
    assert row["success_criteria_met"] is True
    assert row["trigger_event"]["run_id"] == dag_run.run_id
    steps = {s.step_name: s for s in env["catalog"].get_steps(row["id"])}
    assert list(steps) == ["promote_standby", "verify_writable", "verify_data", "notify_team"]
    assert all(s.status == "completed" for s in steps.values())
    promote = steps["promote_standby"]
    assert promote.output_data["promoted"] is True
    assert promote.output_data["timeline"] > promote.output_data["previous_timeline"]
    assert {v["criterion"] for v in promote.validation_results} == {"promoted", "data_loss_bytes"}
    assert promote.output_data["lasting_fence"] is True and promote.output_data["data_loss_bytes"] == 0
    assert all(v["ok"] for v in promote.validation_results)
    assert steps["verify_writable"].parallel_group == "verify"
    # Notifications reached the real SMTP server and the webhook.
    assert any("failed over" in m.content.decode(errors="replace") for m in sinks["inbox"].messages)
    assert any("failover" in json.dumps(h) for h in sinks["hooks"])


def test_a_failed_step_runs_the_rollback_steps_and_the_execution_is_rolled_back(env):
    plan = sql_plan("rollback-plan", conn_id="wedsync_node1", query="SELECT 41", expected=42)
    plan["steps"].append({"name": "never", "type": "validation", "config": {"checks": [
        {"kind": "sql", "name": "q", "conn_id": "wedsync_node1", "query": "SELECT 1", "expected": 1}]}})
    plan["rollback_steps"] = [{"name": "undo", "type": "validation", "config": {"checks": [
        {"kind": "sql", "name": "q", "conn_id": "wedsync_node1", "query": "SELECT 1", "expected": 1}]}}]
    plan["rollback_criteria"] = {"on_failed_steps": ["check"]}
    dag_run = run(env, write_plan(env["plans"], plan))
    assert dag_run.state == "failed"  # a rolled-back recovery did not recover
    (row,) = executions(env, "rollback-plan")
    assert row["status"] == "rolled_back"
    assert row["rollback_initiated"] is True and row["rollback_completed"] is True
    steps = {s.step_name: s.status for s in env["catalog"].get_steps(row["id"])}
    assert steps == {"check": "failed", "never": "skipped", "undo": "completed"}
