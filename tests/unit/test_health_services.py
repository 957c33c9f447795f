"""include/services.yaml: the models, problems naming file/service/field, the JSON Schema, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from disaster_recovery.commands.services import services_json_schema_text
from disaster_recovery.health.services import (
    DEFAULT_SERVICES_FILE,
    HttpProbe,
    MonitorSettings,
    PostgresProbe,
    Service,
    TcpProbe,
    load_services,
    monitor_settings,
    services_json_schema,
)
from disaster_recovery.plans.reading.loader import load_plan

REPO = Path(__file__).resolve().parents[2]
SCHEMA_FILE = REPO / "include" / "services.schema.json"


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "services.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def pg(**probe) -> dict:
    return {"name": "db", "probe": {"kind": "postgres", "cluster": "wedsync", **probe}}


def lines_of(path: Path, *services: dict, **settings) -> list[str]:
    return [str(p) for p in load_services(write(path, {"services": list(services), **settings})).problems]


def test_the_shipped_file_loads_and_keeps_the_failover_plans_service_name():
    services = load_services(DEFAULT_SERVICES_FILE)
    assert services.ok, services.problems
    assert list(services.items) == ["wedsync-primary-db", "wedsync-standby-db", "airflow-api", "smtp-relay"]
    primary = services.require("wedsync-primary-db").probe
    assert isinstance(primary, PostgresProbe) and (primary.cluster, primary.role) == ("wedsync", "primary")
    assert primary.wal_archiving and primary.replication_lag_bytes.degraded == 16 * 2**20
    assert primary.replication_lag_bytes.unhealthy is None  # lag never starts a failover of a working primary
    standby = services.require("wedsync-standby-db").probe
    assert isinstance(standby, PostgresProbe) and standby.role == "standby"
    api = services.require("airflow-api").probe
    assert isinstance(api, HttpProbe) and (api.http_conn_id, api.endpoint) == ("dr_airflow_api", "/api/v2/monitor/health")
    smtp = services.require("smtp-relay").probe
    assert isinstance(smtp, TcpProbe) and smtp.conn_id == "smtp_default" and smtp.host is None
    plan = load_plan(REPO / "include" / "plans" / "wedsync-database-failover.yaml")
    assert set(plan.failover_criteria.health_thresholds) <= set(services.items)
    settings = monitor_settings(services)
    assert (settings.heartbeat_interval, settings.retention, settings.catalog_conn_id) == (
        timedelta(seconds=10), timedelta(days=7), "dr_catalog")


def test_defaults_are_the_seconds_of_fast_detection():
    service = Service.model_validate(pg())
    assert service.interval == timedelta(seconds=1) and service.timeout == timedelta(seconds=2)
    assert service.retry_interval == timedelta(milliseconds=250)
    assert (service.failures_to_unhealthy, service.alert_after, service.window) == (1, 3, 300)
    a = service.anomaly
    assert (a.enabled, a.factor, a.min_samples, a.min_delta_ms) == (True, 3.0, 20, 50)
    assert service.probe.query == "SELECT 1" and service.probe.wal_archiving is False
    assert MonitorSettings() == MonitorSettings.model_validate({})
    # re-probe soon after a failure, until the alert is critical; otherwise at the interval
    assert service.next_delay(ok=False, consecutive_unhealthy=1) == timedelta(milliseconds=250)
    assert service.next_delay(ok=False, consecutive_unhealthy=3) == timedelta(seconds=1)
    assert service.next_delay(ok=True, consecutive_unhealthy=0) == timedelta(seconds=1)


def test_the_default_file_comes_from_the_environment(tmp_path, monkeypatch):
    path = write(tmp_path, {"services": [pg()]})
    monkeypatch.setenv("DR_SERVICES_FILE", str(path))
    assert list(load_services().items) == ["db"]


def test_problems_name_file_service_and_field(tmp_path):
    lines = lines_of(
        tmp_path,
        {"name": "ok", "probe": {"kind": "tcp", "host": "127.0.0.1", "port": 25}},
        {"name": "both", "probe": {"kind": "postgres", "conn_id": "a", "cluster": "wedsync"}},
        {"name": "role", "probe": {"kind": "postgres", "conn_id": "a", "role": "standby"}},
        {"name": "creds", "probe": {"kind": "http", "url": "https://u:pw@example.com/health"}},
        {"name": "head", "probe": {"kind": "http", "url": "https://example.com", "method": "HEAD",
                                   "expect_body_contains": "ok"}},
        {"name": "noport", "probe": {"kind": "tcp", "host": "127.0.0.1"}},
        {"name": "kind", "probe": {"kind": "ftp"}},
        {**pg(replication_lag_bytes={"degraded": 100, "unhealthy": 10}), "name": "order"},
        {**pg(password="hunter2"), "name": "secret"},
        {**pg(), "name": "ms", "interval": "250ms"},
    )
    path = tmp_path / "services.yaml"
    expected = {
        "both": "field 'probe.conn_id': give exactly one of 'conn_id' or 'cluster'",
        "role": "field 'probe.role': 'role' goes with 'cluster'",
        "creds": "field 'probe.url': URL embeds a password",
        "head": "field 'probe.expect_body_contains': a HEAD answer has no body",
        "noport": "field 'probe.port': required key is missing",
        "kind": "field 'probe.kind': unknown kind 'ftp'; expected one of: postgres, http, tcp",
        "order": "field 'probe.replication_lag_bytes.unhealthy': the unhealthy limit (10) is below the degraded",
        "secret": "field 'probe.password': key 'password' looks like a secret",
        "ms": "field 'interval': invalid duration '250ms'",
    }
    for name, text in expected.items():
        assert any(line.startswith(f"{path}: service {name!r} {text}") for line in lines), (name, lines)


def test_a_bad_service_hides_no_good_one_and_bad_settings_are_problems(tmp_path):
    path = write(tmp_path, {"heartbeat_interval": "often", "services": [pg(), {"name": "bad", "probe": {"kind": "tcp"}}]})
    services = load_services(path)
    assert list(services.items) == ["db"]
    lines = [str(p) for p in services.problems]
    assert any(line.startswith(f"{path}: field 'heartbeat_interval': invalid duration 'often'") for line in lines)
    assert any(line.startswith(f"{path}: service 'bad' field 'probe.host'") for line in lines), lines
    assert monitor_settings(services) == MonitorSettings()  # the defaults when the settings are invalid
    typo = load_services(write(tmp_path, {"catalog": "x", "services": [pg()]}))
    assert f"{tmp_path / 'services.yaml'}: field 'catalog': unknown key 'catalog'; did you mean 'catalog_conn_id'?" in [
        str(p) for p in typo.problems]
    assert "needs a list of at least one service" in str(load_services(write(tmp_path, {"services": []})).problems[0])


def test_sub_second_durations_and_tcp_from_a_connection():
    service = Service.model_validate({"name": "smtp", "probe": {"kind": "tcp", "conn_id": "smtp_default"},
                                      "interval": "1.5s", "retry_interval": "0.1s", "timeout": "0.5s"})
    assert service.retry_interval == timedelta(milliseconds=100) and service.timeout == timedelta(milliseconds=500)
    assert service.model_dump(mode="json")["interval"] == "1.5s"


def test_checked_in_schema_matches_the_models():
    assert SCHEMA_FILE.read_text() == services_json_schema_text(), (
        "regenerate: PYTHONPATH=plugins python -m disaster_recovery services schema -o include/services.schema.json")
    assert services_json_schema()["additionalProperties"] is False


def test_shipped_file_satisfies_its_schema():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    assert list(validator.iter_errors(yaml.safe_load(DEFAULT_SERVICES_FILE.read_text()))) == []


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": "plugins"}
    return subprocess.run([sys.executable, "-m", "disaster_recovery", "services", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_validates_files_and_clusters_they_name(tmp_path):
    done = run_cli("validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr.strip() == "4 service(s) valid"
    path = write(tmp_path, {"services": [pg(cluster="nowhere"), {"name": "x", "probe": {"kind": "tcp"}}]})
    done = run_cli("validate", str(path))
    assert done.returncode == 1
    assert f"{path}: service 'db' field 'probe.cluster': no cluster 'nowhere' in the clusters file" in done.stdout
    assert f"{path}: service 'x' field 'probe.host': give exactly one of" in done.stdout
    schema = run_cli("schema")
    assert schema.returncode == 0 and json.loads(schema.stdout)["title"] == "Monitored services"
