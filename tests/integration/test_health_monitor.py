"""The health monitor's loop on real clusters and a real catalog: rows, heartbeat, one incident per outage.

Airflow's REST API is played by a loopback HTTP server that answers as Airflow does (a token, the DAG,
201 for a new run id and 409 for one it has seen, the run's state), so this module can count triggers;
test_lab.py proves the same path against the real Airflow.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from disaster_recovery.catalog.repository import Catalog
from disaster_recovery.clusters.events import FailoverImpact
from disaster_recovery.health.monitor.loop import MONITOR_SERVICE, Monitor, MonitorConfig, run_id_for
from disaster_recovery.postgres.cluster import free_port
from tests.support import REPO, SESSION_DIR, drop_cluster, make_pair

pytestmark = pytest.mark.integration
PLAN = REPO / "include" / "plans" / "wedsync-database-failover.yaml"


class FakeAirflow:
    """Just the REST calls the monitor makes, answered the way Airflow answers them."""

    def __init__(self) -> None:
        self.runs: dict[str, dict] = {}
        self.posts: list[dict] = []
        self.paused = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/auth/token":
                    ok = body == {"username": "dr-monitor", "password": "secret"}
                    return self._send(201 if ok else 401, {"access_token": "t"} if ok else {})
                if self.headers.get("Authorization") != "Bearer t":
                    return self._send(401, {})
                owner.posts.append(body)
                if body["dag_run_id"] in owner.runs:
                    return self._send(409, {"detail": "exists"})
                owner.runs[body["dag_run_id"]] = {"state": "queued", "conf": body["conf"]}
                return self._send(200, {"dag_run_id": body["dag_run_id"]})

            def do_GET(self):  # noqa: N802
                parts = self.path.strip("/").split("/")
                if parts[-2:-1] == ["dagRuns"]:
                    run = owner.runs.get(parts[-1])
                    return self._send(200, run) if run else self._send(404, {})
                return self._send(200, {"dag_id": parts[-1], "is_paused": owner.paused})

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def world(catalog_cluster_db):
    node1, node2 = make_pair("mon")
    api = FakeAirflow()
    mp = pytest.MonkeyPatch()
    cat_cluster, cat_db = catalog_cluster_db
    mp.setenv("AIRFLOW_CONN_MON_NODE1", node1.uri())
    mp.setenv("AIRFLOW_CONN_MON_NODE2", node2.uri())
    mp.setenv("AIRFLOW_CONN_MON_CATALOG", cat_cluster.uri(cat_db))
    mp.setenv("AIRFLOW_CONN_MON_API", json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": api.port,
                                                  "schema": "http", "login": "dr-monitor", "password": "secret"}))
    folder = SESSION_DIR / "monitor"
    plans = folder / "plans"
    plans.mkdir(parents=True)
    (folder / "clusters.yaml").write_text(yaml.safe_dump({"clusters": [{"name": "wedsync", "members": [
        {"conn_id": "mon_node1"}, {"conn_id": "mon_node2"}]}]}))
    (folder / "services.yaml").write_text(yaml.safe_dump({"heartbeat_interval": "1s", "services": [
        {"name": "wedsync-primary-db", "probe": {"kind": "postgres", "cluster": "wedsync", "role": "primary"},
         "interval": "0.5s", "retry_interval": "0.2s", "timeout": "2s"},
        {"name": "wedsync-standby-db", "probe": {"kind": "postgres", "cluster": "wedsync", "role": "standby"},
         "interval": "0.5s"},
    ]}))
    shutil.copy(PLAN, plans)  # fully automated: unhealthy 3 probes in a row, re-armed after 30 s clear
    config = MonitorConfig(services_file=str(folder / "services.yaml"), clusters_file=str(folder / "clusters.yaml"),
                           plans_dir=str(plans), catalog_conn_id="mon_catalog", api_conn_id="mon_api")
    catalog = Catalog.from_dsn(cat_cluster.dsn(cat_db))
    yield {"node1": node1, "node2": node2, "api": api, "config": config, "catalog": catalog}
    catalog.dispose()
    api.close()
    mp.undo()
    drop_cluster(node2)
    drop_cluster(node1)


def run_monitor(config: MonitorConfig, *, seconds: float, during=None) -> Monitor:
    """Run a monitor for ``seconds`` (calling ``during`` in a thread half a second in)."""
    async def main() -> Monitor:
        monitor = Monitor(config)
        await monitor.setup()
        try:
            task = asyncio.create_task(monitor.run(duration=seconds))
            if during is not None:
                await asyncio.sleep(0.5)
                await asyncio.to_thread(during)
            await task
        finally:
            await monitor.aclose()
        return monitor

    return asyncio.run(main())


def rows(catalog: Catalog, service: str) -> list:
    return catalog.recent_health([service], limit_per_service=1000)[service]


def test_healthy_cluster_is_recorded_and_nothing_is_triggered(world):
    monitor = run_monitor(world["config"], seconds=2.5)
    assert monitor.problems == [] and [w.plan_name for w in monitor.watches] == ["wedsync-database-failover"]
    primary = rows(world["catalog"], "wedsync-primary-db")
    assert len(primary) >= 3 and {r.health_status for r in primary} == {"healthy"}
    assert primary[0].response_time_ms is not None and primary[0].availability_percent == 100.0
    assert rows(world["catalog"], "wedsync-standby-db")[0].health_status == "healthy"
    heartbeat = rows(world["catalog"], MONITOR_SERVICE)
    assert heartbeat and heartbeat[0].health_status == "healthy"
    assert world["api"].posts == []


def test_the_primary_dies_and_exactly_one_recovery_is_triggered(world):
    api = world["api"]
    monitor = run_monitor(world["config"], seconds=4.0, during=world["node1"].kill)
    assert len(api.posts) == 1, api.posts
    post = api.posts[0]
    conf = post["conf"]
    assert conf["trigger_type"] == "automated" and conf["reason"].startswith("automated: failover criteria met")
    assert any("wedsync-primary-db" in e for e in conf["evidence"])
    assert post["dag_run_id"] == run_id_for(conf["incident_id"])
    incident = world["catalog"].get_failover_event(conf["incident_id"])
    impact = FailoverImpact.of(incident)
    assert incident.status == "initiated" and incident.automated and incident.trigger_type == "health_check_failure"
    assert impact.incident and impact.plan_name == "wedsync-database-failover" and impact.detected_at is not None
    assert impact.first_failure_at <= impact.detected_at
    statuses = [r.health_status for r in rows(world["catalog"], "wedsync-primary-db")]
    assert statuses[:3] == ["unhealthy"] * 3
    guard = monitor.guards["wedsync-database-failover"]
    assert guard.open_incident is not None and guard.open_incident.incident_id == conf["incident_id"]


def test_a_restarted_monitor_does_not_trigger_the_same_incident_again(world):
    """The outage goes on (the primary is still dead): a new monitor restores the open incident."""
    api = world["api"]
    monitor = run_monitor(world["config"], seconds=2.5)
    assert len(api.posts) == 1
    assert monitor.guards["wedsync-database-failover"].open_incident is not None


def test_an_incident_whose_run_ended_without_completing_it_is_closed(world):
    api = world["api"]
    (run_id,) = api.runs
    api.runs[run_id]["state"] = "failed"  # e.g. refused, or failed before its failover step
    monitor = run_monitor(world["config"], seconds=3.0)
    incident_id = api.runs[run_id]["conf"]["incident_id"]
    row = world["catalog"].get_failover_event(incident_id)
    assert row.status == "failed" and "ended failed without completing the incident" in row.success_validation["sentence"]
    guard = monitor.guards["wedsync-database-failover"]
    assert guard.open_incident is None and not guard.armed  # the outage goes on: no second recovery
    assert len(api.posts) == 1
    assert datetime.now(UTC) > row.completed_at
