"""The real lab, as `make run` starts it, in a temp folder on free ports: Airflow answers, logins work, the
health monitor fails a killed primary over by itself, the old primary stays fenced across `down` + `up`,
and rejoin + switchover through the REST API bring back the original topology.

The module shares one lab and its tests run in order; its last test stops the lab and checks that nothing
is left running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg2
import pytest

from disaster_recovery.lab.processes import group_members
from disaster_recovery.lab.stack import AIRFLOW_COMPONENTS, Lab
from tests.integration.lab_plans import MID_RUN_EDIT, approved, mid_run_edit_plan, write_lab_plans, write_plan
from tests.integration.lab_support import (
    catalog_rows,
    command_line,
    lab_command,
    lab_plans_dir,
    processes_of,
    running,
    trigger,
    wait_for_dag,
    wait_for_run,
    wait_until,
)

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab(session_dir):
    home = session_dir / "lab"
    # The shipped plans and the tests' own, in a folder of the lab's (DR_PLANS_DIR reaches every component).
    plans = write_lab_plans(lab_plans_dir(home))
    proc = lab_command(home, "up")
    lab = Lab(home)
    if proc.returncode != 0:
        lab_command(home, "down")
        pytest.fail(f"lab up failed:\n{proc.stdout}\n{proc.stderr}")
    lab.up_output = proc.stdout
    lab.plans_dir = plans
    yield lab
    lab_command(home, "down")


@pytest.fixture(scope="module")
def token(lab) -> str:
    resp = httpx.post(
        f"{lab.api_url}/auth/token",
        json={"username": lab.config.admin_user, "password": lab.config.admin_password},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["access_token"]


def test_up_prints_the_ui_url_and_login(lab):
    assert lab.api_url in lab.up_output
    assert f"login: admin / {lab.config.admin_password}" in lab.up_output
    assert "wedsync_node1 is the primary of wedsync (timeline 1); streaming to wedsync_node2." in lab.up_output


def test_health_is_green(lab):
    health = httpx.get(f"{lab.api_url}/api/v2/monitor/health", timeout=10).json()
    for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", health


def test_rest_api_needs_a_token_and_lists_dags(lab, token):
    assert httpx.get(f"{lab.api_url}/api/v2/dags", timeout=10).status_code == 401
    resp = httpx.get(f"{lab.api_url}/api/v2/dags", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200
    assert "dags" in resp.json()


def test_dr_api_is_mounted_and_protected(lab, token):
    url = f"{lab.api_url}/disaster-recovery/api/health"
    assert httpx.get(url, timeout=10).status_code in (401, 403)
    resp = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 200 and resp.json()["success"] is True


def test_clusters_and_connections(lab):
    topology = lab.members.topology()
    assert (topology.primary, topology.streaming) == ("wedsync_node1", ("wedsync_node2",))
    assert lab.nodes["wedsync_node2"].in_recovery()
    assert lab.primary.query("SHOW synchronous_standby_names") == [('ANY 1 ("wedsync_node2")',)]
    rows = lab.primary.query("SELECT count(*) FROM weddings", dbname="wedsync")[0][0]
    assert rows >= 500
    tables = lab.control.query(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_name IN ('recovery_executions', 'backup_inventories', 'recovery_metrics')",
        dbname="dr_catalog",
    )[0][0]
    assert tables == 3
    env = lab.airflow_env()
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "connections", "list", "-o", "plain"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    for conn_id in ("dr_catalog", "wedsync_node1", "wedsync_node2", "dr_airflow_api"):
        assert conn_id in out.stdout


def _runs(lab, headers, dag_id: str, run_ids: list[str]) -> dict[str, str]:
    return {run_id: wait_for_run(lab, headers, dag_id, run_id) for run_id in run_ids}


def test_ten_simultaneous_triggers_start_one_recovery(lab, token):
    """An operator, the health monitor and a pager bot pressing at once: one execution runs the plan, the
    others are refused (and recorded, with the reason), including those Airflow queued behind it."""
    headers = {"Authorization": f"Bearer {token}"}
    dag_id = "dr_plan__wedsync-database-failover"
    wait_for_dag(lab, headers, dag_id)
    with ThreadPoolExecutor(max_workers=10) as pool:
        run_ids = list(pool.map(lambda i: trigger(lab, headers, dag_id, f"press {i}", dry_run=True), range(10)))
    states = _runs(lab, headers, dag_id, run_ids)
    assert sorted(states.values()) == ["failed"] * 9 + ["success"], states
    rows = catalog_rows(lab, "SELECT id::text, trigger_event->>'run_id', status, started_at IS NOT NULL, "
                             "error_details->>'refused' FROM recovery_executions "
                             "WHERE trigger_event->>'run_id' = ANY(%s)", (run_ids,))
    assert len(rows) == 10
    (winner,) = [r for r in rows if r[3]]
    assert states[winner[1]] == "success" and winner[2] == "completed"
    for _, run_id, status, started, refused in (r for r in rows if r is not winner):
        assert (status, started, states[run_id]) == ("failed", False, "failed")
        assert refused.startswith(f"duplicate of execution {winner[0]} "), refused
        assert "triggered while it was running" in refused
    steps = catalog_rows(lab, "SELECT count(DISTINCT execution_id) FROM recovery_step_executions "
                              "WHERE execution_id::text = ANY(%s)", ([r[0] for r in rows],))
    assert steps == [(1,)]  # only the winner has step rows: no refused run touched a step


def _wait_for_task_state(lab, headers, dag_id: str, run_id: str, task_id: str, state: str) -> None:
    url = f"{lab.api_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
    wait_until(lambda: httpx.get(url, headers=headers, timeout=10).json().get("state") == state,
               timeout=120, what=f"{task_id} {state}")


def _step_row(lab, run_id: str, step: str) -> tuple:
    (row,) = catalog_rows(lab, "SELECT s.status, s.output_data, s.error_message FROM recovery_step_executions s "
                               "JOIN recovery_executions e ON e.id = s.execution_id "
                               "WHERE e.trigger_event->>'run_id' = %s AND s.step_name = %s", (run_id, step))
    return row


def test_a_plan_edited_mid_run_runs_the_admitted_version_or_fails_clearly(lab, token):
    headers = {"Authorization": f"Bearer {token}"}
    dag_id = f"dr_plan__{MID_RUN_EDIT}"
    admitted = approved(mid_run_edit_plan())
    # An edit of a step's config while the run is under way: the run keeps the version it was admitted with.
    run_id = trigger(lab, headers, dag_id, "mid-run edit: config")
    _wait_for_task_state(lab, headers, dag_id, run_id, "slow", "running")
    write_plan(lab.plans_dir, mid_run_edit_plan(version="v2"), approval=admitted["approval"])
    assert wait_for_run(lab, headers, dag_id, run_id) == "success"
    status, output, _ = _step_row(lab, run_id, "version")
    assert status == "completed" and output["checks"][0]["actual"] == "v1", output
    # An edit that adds a step: the tasks no longer match the admitted steps, so the next step fails clearly.
    write_plan(lab.plans_dir, admitted)
    run_id = trigger(lab, headers, dag_id, "mid-run edit: shape")
    _wait_for_task_state(lab, headers, dag_id, run_id, "slow", "running")
    write_plan(lab.plans_dir, mid_run_edit_plan(extra_step=True), approval=admitted["approval"])
    assert wait_for_run(lab, headers, dag_id, run_id) == "failed"
    status, _, error = _step_row(lab, run_id, "version")
    assert status == "failed"
    assert f"the plan file of {MID_RUN_EDIT!r} changed during this run" in error, error
    assert "its steps differ (added extra)" in error, error
    write_plan(lab.plans_dir, admitted)


def test_second_up_is_harmless(lab):
    before = lab.primary.query("SELECT count(*) FROM payments", dbname="wedsync")[0][0]
    pids = {name: lab.processes.pgid(f"airflow-{name}") for name in AIRFLOW_COMPONENTS}
    proc = lab_command(lab.home, "up")
    assert proc.returncode == 0, proc.stderr
    assert {name: lab.processes.pgid(f"airflow-{name}") for name in AIRFLOW_COMPONENTS} == pids
    assert lab.primary.query("SELECT count(*) FROM payments", dbname="wedsync")[0][0] == before


def test_backup_dag_then_asset_triggered_verification(lab, token):
    """The lab backs up wedsync through Airflow; the new backup's asset triggers its verification."""
    headers = {"Authorization": f"Bearer {token}"}
    wait_for_dag(lab, headers, "dr_backup__wedsync")
    resp = httpx.post(f"{lab.api_url}/api/v2/dags/dr_backup__wedsync/dagRuns", headers=headers,
                      json={"logical_date": None, "conf": {}}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert wait_for_run(lab, headers, "dr_backup__wedsync", resp.json()["dag_run_id"]) == "success"
    # The lab may also have taken the latest scheduled backup when the DAG appeared (catchup is off,
    # the newest interval still runs): every wedsync backup must end verified.
    deadline = time.monotonic() + 300
    rows: list = []
    while time.monotonic() < deadline:
        rows = lab.control.query(
            "SELECT verification_status, restore_tested FROM backup_inventories WHERE data_source = 'wedsync'",
            dbname="dr_catalog",
        )
        if rows and all(r[0] in ("verified", "failed", "corrupted") for r in rows):
            break
        time.sleep(2)
    assert rows and set(rows) == {("verified", True)}, rows
    runs = httpx.get(f"{lab.api_url}/api/v2/dags/dr_verify_backups/dagRuns", headers=headers, timeout=10).json()
    assert "asset_triggered" in {r["run_type"] for r in runs["dag_runs"]}
    assert list((lab.home / "backups" / "wedsync").rglob("*.drbk"))


def automated_runs(lab) -> list[tuple]:
    return catalog_rows(lab, "SELECT trigger_event->>'run_id', status FROM recovery_executions "
                             "WHERE trigger_type = 'automated' ORDER BY initiated_at")


def test_the_monitor_records_every_service_and_its_own_heartbeat(lab, token):
    headers = {"Authorization": f"Bearer {token}"}
    wait_for_dag(lab, headers, "dr_health_monitor")
    wait_until(lambda: catalog_rows(lab, "SELECT 1 FROM system_health_monitoring WHERE service_name = "
                                         "'dr-health-monitor'"), timeout=120, what="a heartbeat row")
    services = dict(catalog_rows(lab, "SELECT DISTINCT ON (service_name) service_name, health_status FROM "
                                      "system_health_monitoring ORDER BY service_name, monitoring_timestamp DESC"))
    assert set(services) >= {"wedsync-primary-db", "wedsync-standby-db", "airflow-api", "smtp-relay",
                             "dr-health-monitor"}
    assert services["wedsync-primary-db"] in ("healthy", "degraded"), services
    runs = httpx.get(f"{lab.api_url}/api/v2/dags/dr_health_monitor/dagRuns", headers=headers, timeout=10).json()
    (running_run,) = [r for r in runs["dag_runs"] if r["state"] == "running"]
    ti = httpx.get(f"{lab.api_url}/api/v2/dags/dr_health_monitor/dagRuns/{running_run['dag_run_id']}"
                   "/taskInstances/monitor", headers=headers, timeout=10).json()
    assert ti["state"] == "deferred"  # it lives in the triggerer


def test_killing_the_primary_fails_over_by_itself(lab, token):
    """The scheduler and the monitor are running, as in `make run`: nobody triggers anything."""
    headers = {"Authorization": f"Bearer {token}"}
    lab.nodes["wedsync_node1"].kill()
    incident = wait_until(lambda: catalog_rows(
        lab, "SELECT id::text, impact_assessment->>'detected_at' FROM failover_events WHERE automated"),
        timeout=60, what="the incident")
    ((incident_id, detected_at),) = incident
    run_id = f"dr_incident__{incident_id}"
    assert wait_for_run(lab, headers, "dr_plan__wedsync-database-failover", run_id) == "success"
    assert lab.members.topology().primary == "wedsync_node2"
    ((status, source, target, trigger_type, initiator),) = catalog_rows(
        lab, "SELECT f.status, f.source_system, f.target_system, f.trigger_type, e.initiated_by FROM "
             "failover_events f JOIN recovery_executions e ON e.id::text = f.impact_assessment->>'execution_id' "
             "WHERE f.id::text = %s", (incident_id,))
    assert (status, source, target, trigger_type) == ("completed", "wedsync_node1", "wedsync_node2",
                                                      "health_check_failure")
    assert initiator == "dr-monitor"
    assert automated_runs(lab) == [(run_id, "completed")]
    unhealthy = catalog_rows(lab, "SELECT count(*) FROM system_health_monitoring WHERE service_name = "
                                  "'wedsync-primary-db' AND health_status = 'unhealthy'")[0][0]
    assert unhealthy >= 3 and detected_at


def test_wal_archiving_follows_the_new_primary(lab):
    """The new primary inherited the archive_command: its timeline-2 WAL lands in the backup storage."""
    walfile = lab.primary.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    assert walfile.startswith("00000002")
    lab.primary.query("CREATE TABLE IF NOT EXISTS after_failover (x int); INSERT INTO after_failover VALUES (1)",
                      dbname="wedsync")
    switched = lab.primary.query("SELECT pg_walfile_name(pg_switch_wal())")[0][0]
    archived = lab.home / "backups" / "wedsync" / "wal" / "00000002" / f"{switched}.zst.drbk"
    wait_until(archived.exists, timeout=60, what=f"{archived.name} archived")
    assert (archived.parent / "00000002.history.zst.drbk").exists()


def test_the_monitor_resumes_after_a_kill_9_of_the_triggerer(lab):
    name = "airflow-triggerer"
    os.kill(lab.processes.pgid(name), signal.SIGKILL)
    wait_until(lambda: not lab.processes.alive(name), timeout=30, what="the triggerer gone")
    killed = time.time()
    assert lab_command(lab.home, "up").returncode == 0
    # The dead triggerer's trigger (the monitor) moves to the new one once the old one's heartbeat is stale.
    wait_until(lambda: catalog_rows(lab, "SELECT 1 FROM system_health_monitoring WHERE service_name = "
                                         "'dr-health-monitor' AND monitoring_timestamp > to_timestamp(%s)",
                                    (killed,)), timeout=120, what="a heartbeat from the restarted triggerer")
    assert len(automated_runs(lab)) == 1


def test_the_old_primary_restarted_refuses_writes(lab):
    node1 = lab.nodes["wedsync_node1"]
    node1.start()
    node1.wait_ready()
    assert node1.in_recovery()
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        node1.query("INSERT INTO weddings (couple_id) VALUES (1)", dbname="wedsync")
    node1.stop()  # as a crashed host would be: the lab brings it back below


def test_down_and_up_after_a_failover_keep_one_primary_and_say_so(lab):
    assert lab_command(lab.home, "down").returncode == 0
    proc = lab_command(lab.home, "up")
    assert proc.returncode == 0, proc.stderr
    assert "wedsync_node2 is the primary of wedsync (timeline 2)" in proc.stdout
    assert "FENCED" in proc.stdout and "rejoin it with dr_plan__wedsync-rejoin" in proc.stdout
    topology = lab.members.topology()
    assert topology.primary == "wedsync_node2" and not topology.split_brain
    assert lab.nodes["wedsync_node1"].in_recovery()


def test_the_monitor_resumes_after_the_restart_and_never_repeats_the_incident(lab):
    restarted = time.time()
    wait_until(lambda: catalog_rows(lab, "SELECT 1 FROM system_health_monitoring WHERE service_name = "
                                         "'dr-health-monitor' AND monitoring_timestamp > to_timestamp(%s)",
                                    (restarted,)), timeout=120, what="a heartbeat after the restart")
    # The new primary answers; it is degraded, not unhealthy: no standby streams from it until the rejoin.
    ((status, alerts),) = wait_until(lambda: catalog_rows(
        lab, "SELECT health_status, alerts_triggered FROM system_health_monitoring WHERE service_name = "
             "'wedsync-primary-db' AND monitoring_timestamp > to_timestamp(%s) ORDER BY monitoring_timestamp DESC "
             "LIMIT 1", (restarted,)), timeout=60, what="the new primary probed")
    assert status == "degraded" and any("no standby streams from wedsync_node2" in a for a in alerts), alerts
    assert len(automated_runs(lab)) == 1


def test_rejoin_then_switchover_through_the_rest_api_restore_the_original_topology(lab, token):
    headers = {"Authorization": f"Bearer {token}"}
    run = trigger(lab, headers, "dr_plan__wedsync-rejoin", "rejoin after the failover")
    assert wait_for_run(lab, headers, "dr_plan__wedsync-rejoin", run) == "success"
    assert lab.members.topology().streaming == ("wedsync_node1",)
    run = trigger(lab, headers, "dr_plan__wedsync-switchover", "back to the preferred primary")
    assert wait_for_run(lab, headers, "dr_plan__wedsync-switchover", run) == "success"
    topology = lab.members.topology()
    assert (topology.primary, topology.streaming, topology.fenced) == ("wedsync_node1", ("wedsync_node2",), ())
    assert lab.primary.query("SHOW synchronous_standby_names") == [('ANY 1 ("wedsync_node2")',)]
    actions = catalog_rows(lab, "SELECT impact_assessment->>'action', status FROM failover_events "
                                "ORDER BY initiated_at")
    assert actions[-2:] == [("rejoin", "completed"), ("switchover", "completed")]
    time.sleep(3)  # the switchover stopped the primary for a moment: the monitor held, it did not fail over
    assert len(automated_runs(lab)) == 1


def test_failover_plan_triggered_through_the_rest_api(lab, token):
    """The shipped plan triggered by hand, like an operator would: a second failover after the round trip."""
    headers = {"Authorization": f"Bearer {token}"}
    run_id = trigger(lab, headers, "dr_plan__wedsync-database-failover", "end-to-end test")
    assert wait_for_run(lab, headers, "dr_plan__wedsync-database-failover", run_id) == "success"
    assert lab.members.topology().primary == "wedsync_node2"
    row = catalog_rows(lab, "SELECT status, trigger_event->>'initiator', recovery_steps_completed FROM "
                            "recovery_executions WHERE trigger_event->>'run_id' = %s", (run_id,))
    assert row == [("completed", lab.config.admin_user, 4)]
    assert list((lab.home / "mail").glob("*.eml"))
    assert "failover" in (lab.home / "webhooks.jsonl").read_text()


def kill_scheduler_leader(lab) -> tuple[int, list[int]]:
    """`kill -9` the scheduler's main process; (its group id, the processes it leaves behind)."""
    name = "airflow-scheduler"
    pgid = lab.processes.pgid(name)
    deadline = time.monotonic() + 60
    # A scheduler reports healthy a little before it has forked its LocalExecutor workers.
    while not any("LocalExecutor" in command_line(pid) for pid in lab.processes.members(name)):
        assert time.monotonic() < deadline, [command_line(pid) for pid in lab.processes.members(name)]
        time.sleep(0.2)
    os.kill(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while lab.processes.alive(name):
        assert time.monotonic() < deadline, "the scheduler survived SIGKILL"
        time.sleep(0.1)
    left = lab.processes.members(name)
    assert left, "nothing outlived the scheduler's leader: this test no longer tests anything"
    return pgid, left


def test_up_ends_what_a_killed_scheduler_left_and_starts_it_again(lab):
    pgid, left = kill_scheduler_leader(lab)
    proc = lab_command(lab.home, "up")
    assert proc.returncode == 0, proc.stderr
    assert "airflow-scheduler: its leader was gone" in proc.stdout
    assert "starting airflow-scheduler again" in proc.stdout
    assert not [pid for pid in left if running(pid)]
    new_pgid = lab.processes.pgid("airflow-scheduler")
    assert new_pgid != pgid and lab.processes.alive("airflow-scheduler")
    schedulers = [pid for pid, cmd in processes_of(lab).items() if cmd.endswith("-m airflow scheduler")]
    assert schedulers and all(pid in group_members(new_pgid) for pid in schedulers), schedulers


def test_down_after_the_scheduler_was_killed_leaves_none_of_its_processes(lab):
    """The reported bug: its LocalExecutor workers and log server outlived a `kill -9` and `down`."""
    pgid, left = kill_scheduler_leader(lab)
    proc = lab_command(lab.home, "down")
    assert proc.returncode == 0, proc.stderr
    assert not [pid for pid in left if running(pid)]
    assert group_members(pgid) == {}
    assert processes_of(lab) == {}
    # The module's last test stops the lab itself: bring it back.
    proc = lab_command(lab.home, "up")
    assert proc.returncode == 0, proc.stderr


def test_down_leaves_no_process_or_port_behind(lab):
    groups = [lab.processes.pgid(name) for name in [f"airflow-{c}" for c in AIRFLOW_COMPONENTS] + ["sinks"]]
    assert all(groups)
    proc = lab_command(lab.home, "down")
    assert proc.returncode == 0, proc.stderr
    for pgid in groups:
        assert group_members(pgid) == {}
    assert processes_of(lab) == {}
    for cluster in (lab.control, *lab.nodes.values()):
        assert not (cluster.data_dir / "postmaster.pid").exists()
    for port in lab.config.ports.values():
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
