"""Health probes against real servers: a primary/standby pair found through a clusters file and Airflow
connections (AIRFLOW_CONN_* variables), a cluster whose WAL archiver fails, loopback HTTP and TCP servers;
and the catalog round trip of the rows they become.

The pair tests run in order on one pair; the last one kills its primary.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from disaster_recovery.catalog.repository import Catalog
from disaster_recovery.clusters.model import load_clusters
from disaster_recovery.health.criteria import evaluate_failover_criteria
from disaster_recovery.health.evaluation import ProbeObservation, ServiceHistory, evaluate
from disaster_recovery.health.probes import ConnectionCache, airflow_connection, probe_http_client, probe_service
from disaster_recovery.health.services import Service
from disaster_recovery.plans.language.criteria_models import FailoverCriteria
from tests.support import SESSION_DIR, drop_cluster, make_cluster, make_pair

pytestmark = pytest.mark.integration


def service(name: str, probe: dict, **fields) -> Service:
    return Service.model_validate({"name": name, "probe": probe, **fields})


def probe(svc: Service, *, lookup=airflow_connection, clusters=None) -> ProbeObservation:
    return asyncio.run(probe_service(svc, lookup=lookup, clusters=clusters))


def wait_for(check, *, timeout: float = 30, pause: float = 0.1):
    """Poll until ``check()`` returns something truthy (a convergence wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(pause)


@pytest.fixture(scope="module")
def world():
    node1, node2 = make_pair("health")
    arch = make_cluster("health-arch")
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_HEALTH_NODE1", node1.uri())
    mp.setenv("AIRFLOW_CONN_HEALTH_NODE2", node2.uri())
    mp.setenv("AIRFLOW_CONN_HEALTH_ARCH", arch.uri())
    clusters_file = SESSION_DIR / "health-clusters.yaml"
    clusters_file.write_text(yaml.safe_dump({"clusters": [
        {"name": "hp", "members": [{"conn_id": "health_node1"}, {"conn_id": "health_node2"}]},
        {"name": "arch", "members": [{"conn_id": "health_arch"}]},
        {"name": "hp-plain", "members": [{"conn_id": "health_plain1"}, {"conn_id": "health_plain2"}]},
        {"name": "arch-plain", "members": [{"conn_id": "health_arch_plain"}]},
    ]}))
    mp.setenv("DR_CLUSTERS_FILE", str(clusters_file))
    clusters = load_clusters()  # from $DR_CLUSTERS_FILE, as the monitor reads it
    assert clusters.ok, clusters.problems
    yield {"node1": node1, "node2": node2, "arch": arch, "clusters": clusters}
    mp.undo()
    for cluster in (node2, node1, arch):
        drop_cluster(cluster)


def lag_services(**limits) -> tuple[Service, Service]:
    primary = service("hp-primary", {"kind": "postgres", "cluster": "hp", "role": "primary", **limits})
    standby = service("hp-standby", {"kind": "postgres", "cluster": "hp", "role": "standby", **limits})
    return primary, standby


def caught_up(world) -> bool:
    lsn = world["node1"].query("SELECT pg_current_wal_lsn()::text")[0][0]
    return bool(world["node2"].query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0])


def test_primary_and_standby_are_healthy(world):
    primary, standby = lag_services(replication_lag_bytes={"degraded": 1 << 20})
    world["node1"].query("CREATE TABLE IF NOT EXISTS beat (at timestamptz)")
    world["node1"].query("INSERT INTO beat VALUES (now())")  # the standby has a replayed transaction to date
    assert wait_for(lambda: caught_up(world))
    obs = probe(primary, clusters=world["clusters"])
    assert obs.ok is True, obs.error
    assert (obs.member, obs.role, obs.timeline, obs.standbys_streaming) == ("health_node1", "primary", 1, 1)
    assert obs.target == f"127.0.0.1:{world['node1'].port}" and obs.response_ms > 0 and obs.connections >= 1
    assert obs.lag_bytes is not None and "health_node1 is the primary of hp" in obs.topology
    reading = evaluate(primary, obs, ServiceHistory(primary))
    assert reading.status == "healthy" and reading.alert_level == "none", reading.sentence

    obs = probe(standby, clusters=world["clusters"], lookup=ConnectionCache())
    assert obs.ok is True, obs.error
    assert (obs.member, obs.role, obs.replay_paused) == ("health_node2", "standby", False)
    assert obs.lag_bytes is not None and obs.lag_bytes < 1 << 20
    assert evaluate(standby, obs, ServiceHistory(standby)).status == "healthy"

    # a lone server named by its connection says what it is
    lone = probe(service("node2", {"kind": "postgres", "conn_id": "health_node2", "query": "SELECT count(*) FROM beat",
                                   "replication_lag_bytes": {"degraded": 1 << 20}}))
    assert lone.ok is True and lone.role == "standby" and lone.timeline == 1 and lone.lag_bytes is not None


def test_replication_lag_with_replay_paused(world):
    primary, standby = lag_services(replication_lag_bytes={"degraded": 1 << 20, "unhealthy": 1 << 30},
                                    replication_lag_seconds={"degraded": 0})
    node1, node2 = world["node1"], world["node2"]
    node2.query("SELECT pg_wal_replay_pause()")
    try:
        node1.query("CREATE TABLE bulk AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 50000) g")
        behind = wait_for(lambda: (o := probe(primary, clusters=world["clusters"])).lag_bytes
                          and o.lag_bytes > 1 << 20 and o)
        assert behind, "the primary never saw its standby fall behind"
        reading = evaluate(primary, behind, ServiceHistory(primary))
        assert reading.status == "degraded", reading.sentence
        assert any(a.startswith("replication lag") and "degraded limit 1048576 bytes" in a for a in reading.alerts)

        obs = probe(standby, clusters=world["clusters"])
        assert obs.ok is True and obs.replay_paused is True and obs.lag_bytes > 1 << 20
        assert obs.lag_seconds is not None and obs.lag_seconds > 0
        reading = evaluate(standby, obs, ServiceHistory(standby))
        assert reading.status == "degraded" and reading.consecutive_failures == 0
    finally:
        node2.query("SELECT pg_wal_replay_resume()")
    assert wait_for(lambda: probe(standby, clusters=world["clusters"]).lag_bytes == 0)
    obs = probe(standby, clusters=world["clusters"])
    assert obs.lag_seconds == 0 and evaluate(standby, obs, ServiceHistory(standby)).status == "healthy"


def test_wal_archiving_off_then_failing(world):
    arch = world["arch"]
    svc = service("arch-db", {"kind": "postgres", "cluster": "arch", "wal_archiving": True})
    obs = probe(svc, clusters=world["clusters"])
    assert obs.ok is True and obs.archive_mode == "off"
    assert evaluate(svc, obs, ServiceHistory(svc)).alerts == ("WAL archiving is off on health_arch (archive_mode off)",)

    arch.write_settings({**arch.base_settings(), "archive_mode": "on", "archive_command": "'false'"})
    arch.stop()
    arch.start()
    arch.query("CREATE TABLE wal_fodder AS SELECT generate_series(1, 1000) g")
    arch.query("SELECT pg_switch_wal()")
    failing = wait_for(lambda: (o := probe(svc, clusters=world["clusters"])).archiver_failing and o)
    assert failing, "the archiver never reported a failure"
    reading = evaluate(svc, failing, ServiceHistory(svc))
    assert reading.status == "degraded" and reading.alert_level == "warning"
    assert reading.alerts[0].startswith("WAL archiving is failing on health_arch (last failed: 0000000100000000000000")


def plain_uri(cluster) -> str:
    return f"postgresql://plain:plain-pw@127.0.0.1:{cluster.port}/postgres"


def test_an_unprivileged_login_is_a_configuration_problem_not_a_lost_server(world, monkeypatch):
    node1, arch = world["node1"], world["arch"]
    for cluster in (node1, arch):
        cluster.query("CREATE ROLE plain LOGIN PASSWORD 'plain-pw'")
    monkeypatch.setenv("AIRFLOW_CONN_HEALTH_PLAIN1", plain_uri(node1))
    monkeypatch.setenv("AIRFLOW_CONN_HEALTH_PLAIN2", plain_uri(world["node2"]))
    monkeypatch.setenv("AIRFLOW_CONN_HEALTH_ARCH_PLAIN", plain_uri(arch))
    assert wait_for(lambda: caught_up(world))  # the role reached the standby
    svc = service("plain", {"kind": "postgres", "cluster": "hp-plain", "replication_lag_bytes": {"degraded": 1}})
    obs = probe(svc, clusters=world["clusters"])
    assert obs.ok is True and obs.member == "health_plain1", obs.error
    reading = evaluate(svc, obs, ServiceHistory(svc))  # not "no standby streams": it cannot see them
    assert reading.status == "degraded" and "hidden from this login (give it pg_monitor)" in reading.alerts[0]

    arch.query("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
    try:
        unreadable = probe(service("x", {"kind": "postgres", "cluster": "arch-plain"}), clusters=world["clusters"])
    finally:
        arch.query("GRANT EXECUTE ON FUNCTION pg_control_system() TO PUBLIC")
    assert unreadable.ok is None and "cannot tell the roles in cluster arch-plain" in unreadable.error


def test_probes_that_cannot_run_are_unknown(world):
    undefined = probe(service("x", {"kind": "postgres", "conn_id": "health_nowhere"}))
    assert undefined.ok is None and "'health_nowhere' is not defined" in undefined.error
    unknown = probe(service("y", {"kind": "postgres", "cluster": "elsewhere"}), clusters=world["clusters"])
    assert unknown.ok is None and "cluster 'elsewhere' is not a valid cluster" in unknown.error
    assert evaluate(service("y", {"kind": "tcp", "conn_id": "c"}), unknown, ServiceHistory(300)).status == "unknown"


class Handler(BaseHTTPRequestHandler):
    release = threading.Event()
    seen_auth: list[str | None] = []

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        Handler.seen_auth.append(self.headers.get("Authorization"))
        if self.path == "/slow":
            Handler.release.wait(20)
        status = 500 if self.path == "/fail" else 200
        body = b'{"metadatabase": {"status": "healthy"}}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_HEALTH_WEB", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                     "port": server.server_port, "schema": "http",
                                                     "login": "probe", "password": "s3cret"}))
    yield f"http://127.0.0.1:{server.server_port}"
    Handler.release.set()
    mp.undo()
    server.shutdown()
    server.server_close()


def test_http_probes(web):
    ok = probe(service("web", {"kind": "http", "url": f"{web}/health", "expect_body_contains": "metadatabase"}))
    assert ok.ok is True and ok.response_ms > 0 and ok.target == f"{web}/…"
    fail = probe(service("web", {"kind": "http", "url": f"{web}/fail"}))
    assert fail.ok is False and fail.error == f"{web}/… answered HTTP 500 (expected 200)"
    expected_500 = probe(service("web", {"kind": "http", "url": f"{web}/fail", "expected_status": 500}))
    assert expected_500.ok is True
    body = probe(service("web", {"kind": "http", "url": f"{web}/health", "expect_body_contains": "scheduler"}))
    assert body.ok is False and "does not contain 'scheduler'" in body.error
    slow = probe(service("web", {"kind": "http", "url": f"{web}/slow"}, timeout="0.3s"))
    assert slow.ok is False and slow.error == "no answer within 0.3 s"

    Handler.seen_auth.clear()
    via_conn = probe(service("web", {"kind": "http", "http_conn_id": "health_web", "endpoint": "/health",
                                     "method": "HEAD"}))
    assert via_conn.ok is True, via_conn.error
    assert Handler.seen_auth == ["Basic " + base64.b64encode(b"probe:s3cret").decode()]

    async def shared_client():
        async with probe_http_client() as client:
            svc = service("web", {"kind": "http", "url": f"{web}/health"})
            return [await probe_service(svc, lookup=airflow_connection, clusters=None, http=client) for _ in range(3)]

    assert [o.ok for o in asyncio.run(shared_client())] == [True] * 3


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_probes(monkeypatch):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        ok = probe(service("smtp", {"kind": "tcp", "host": "127.0.0.1", "port": port}))
        assert ok.ok is True and ok.network_latency_ms is not None and ok.target == f"127.0.0.1:{port}"
        monkeypatch.setenv("AIRFLOW_CONN_HEALTH_SMTP", json.dumps({"conn_type": "smtp", "host": "127.0.0.1",
                                                                   "port": port}))
        via_conn = probe(service("smtp", {"kind": "tcp", "conn_id": "health_smtp"}))
        assert via_conn.ok is True and via_conn.target == f"127.0.0.1:{port}"
    refused = probe(service("smtp", {"kind": "tcp", "host": "127.0.0.1", "port": closed_port()}))
    assert refused.ok is False and "Connect call failed" in refused.error
    reading = evaluate(service("smtp", {"kind": "tcp", "conn_id": "x"}), refused, ServiceHistory(300))
    assert reading.status == "unhealthy" and reading.row().network_latency_ms is None


def test_record_and_read_back_health_rows(catalog_cluster_db):
    cluster, db = catalog_cluster_db
    catalog = Catalog.from_dsn(cluster.dsn(db))
    try:
        svc = service("rt-db", {"kind": "tcp", "host": "127.0.0.1", "port": 5})
        history = ServiceHistory(svc)
        base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        readings = [history.observe(svc, ProbeObservation(at=base + timedelta(seconds=i), kind="tcp", ok=ok,
                                                          response_ms=1.2 if ok else None, error=None if ok else "down"))
                    for i, ok in enumerate([True] * 5 + [False] * 3)]
        heartbeat = {"monitoring_timestamp": base, "service_name": "rt-monitor", "health_status": "healthy",
                     "custom_metrics": {"cycles": 12}}
        assert catalog.record_health([r.row() for r in readings] + [heartbeat]) == 9
        assert catalog.record_health([]) == 0

        recent = catalog.recent_health(["rt-db", "rt-monitor", "rt-none"], limit_per_service=4)
        assert list(recent) == ["rt-db", "rt-monitor", "rt-none"] and recent["rt-none"] == []
        newest = recent["rt-db"]
        assert [s.at for s in newest] == [r.at for r in reversed(readings[-4:])]
        assert [s.health_status for s in newest] == ["unhealthy"] * 3 + ["healthy"]
        assert [s.ok for s in newest] == [False, False, False, True]
        assert newest[0].consecutive_failures == 3 and newest[0].alert_level == "critical"
        assert newest[0].error_rate == pytest.approx(37.5) and newest[-1].response_time_ms == 1
        assert recent["rt-monitor"][0].ok is None  # rows of other writers load too
        rows = cluster.query("SELECT alerts_triggered, anomalies_detected, custom_metrics->>'probe' FROM "
                             "system_health_monitoring WHERE service_name = 'rt-db' ORDER BY monitoring_timestamp "
                             "DESC LIMIT 1", dbname=db)
        assert rows == [(["probe failed: down", "critical: unhealthy in 3 probes in a row"], {}, "tcp")]

        warm = ServiceHistory.from_samples(svc, catalog.recent_health(["rt-db"], limit_per_service=300)["rt-db"])
        assert (len(warm.readings), warm.consecutive_failures, warm.consecutive_unhealthy) == (8, 3, 3)
        criteria = FailoverCriteria.model_validate({"health_thresholds": {"rt-db": {"consecutive_failures": 3}}})
        assert evaluate_failover_criteria(criteria, recent).met

        assert catalog.delete_health_before(base + timedelta(seconds=5)) == 6  # five rt-db rows + the heartbeat
        left = catalog.recent_health(["rt-db", "rt-monitor"], limit_per_service=100)
        assert (len(left["rt-db"]), left["rt-monitor"]) == (3, [])
    finally:
        catalog.dispose()


def test_a_hung_primary_fails_within_the_timeout_and_the_standby_still_answers(world):
    primary, standby = lag_services()
    node1 = world["node1"]
    os.kill(node1.postmaster_pid(), signal.SIGSTOP)  # accepts TCP connections, never answers them
    try:
        hung = probe(primary, clusters=world["clusters"])
        obs = probe(standby, clusters=world["clusters"])
    finally:
        os.kill(node1.postmaster_pid(), signal.SIGCONT)
    assert hung.ok is False and "health_node1 (no answer within 1.2 s)" in hung.error, hung.error
    assert obs.ok is True and obs.member == "health_node2", obs.error
    assert wait_for(lambda: probe(primary, clusters=world["clusters"]).ok)


def test_a_dead_primary_fails_its_probe_and_the_standby_still_answers(world):
    primary, standby = lag_services()
    world["node1"].kill()
    history = ServiceHistory(primary)
    observations = [probe(primary, clusters=world["clusters"]) for _ in range(3)]
    readings = [history.observe(primary, o) for o in observations]
    first = observations[0]
    assert first.ok is False and first.error.startswith("no writable primary: Cluster hp has no writable primary")
    assert "Connection refused" in first.error and first.member is None
    assert [r.status for r in readings] == ["unhealthy"] * 3 and readings[-1].alert_level == "critical"
    plan = FailoverCriteria.model_validate({"health_thresholds": {"hp-primary": {"consecutive_failures": 3}}})
    assert evaluate_failover_criteria(plan, {"hp-primary": [r.sample() for r in reversed(readings)]}).met

    obs = probe(standby, clusters=world["clusters"])
    assert obs.ok is True and obs.member == "health_node2" and obs.role == "standby", obs.error
    assert evaluate(standby, obs, ServiceHistory(standby)).status == "healthy"
    lone = probe(service("node1", {"kind": "postgres", "conn_id": "health_node1"}))
    assert lone.ok is False and "Connection refused" in lone.error
