"""Parse time touches no database, network, Variable, Connection or subprocess (tests/dags/parse_guard.py).

One subprocess parses, in this order: a throwaway folder of DAG files that each do one forbidden thing
against real servers (and swallow the error), which proves the guard catches every kind even when the file
hides it; then, in a network namespace of its own, our dags/ folder with the shipped include/ config, and
again with an invalid plan beside the valid ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from disaster_recovery.postgres.cluster import free_port

REPO = Path(__file__).resolve().parents[2]
GUARD = Path(__file__).with_name("parse_guard.py")
PLANS = REPO / "include" / "plans"

HEADER = "from airflow.sdk import DAG\n"
FOOTER = "\nwith DAG({dag_id!r}, schedule=None, tags=['probe']):\n    pass\n"

# name -> (kind the guard must report, code that does it and swallows whatever happens)
PROBES = {
    "socket_connect": ("network", "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {http_port}))"),
    "raw_socket": ("network", "import _socket\n_socket.socket().connect(('127.0.0.1', {http_port}))"),
    "http_get": ("network", "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{http_port}/', timeout=2)"),
    "dns_lookup": ("network", "import socket\nsocket.getaddrinfo('localhost', 80)"),
    "psycopg2_connect": ("database", "import psycopg2\npsycopg2.connect({dsn!r})"),
    "psycopg2_class": ("database", "import psycopg2.extensions\npsycopg2.extensions.connection({dsn!r})"),
    "psycopg3_connect": ("database", "import psycopg\npsycopg.connect({dsn!r})"),
    "sqlite_connect": ("database", "import sqlite3\nsqlite3.connect({sqlite!r}).execute('create table t (x)')"),
    "sqlite_raw": ("database", "import _sqlite3\n_sqlite3.connect({sqlite!r}).execute('create table t (x)')"),
    "sqlalchemy": ("database", "import sqlalchemy\nsqlalchemy.create_engine('sqlite:///' + {sqlite!r}).connect()"),
    "airflow_metadata_db": ("database", "from airflow import settings\nsettings.engine.connect()"),
    "variable_sdk": ("variable", "from airflow.sdk import Variable\nVariable.get('dr_probe')"),
    "variable_models": ("variable", "from airflow.models import Variable\nVariable.get('dr_probe')"),
    "variable_secrets_backend": (
        "variable",
        "from airflow.secrets.environment_variables import EnvironmentVariablesBackend\n"
        "EnvironmentVariablesBackend().get_variable('dr_probe')",
    ),
    "connection_basehook": ("connection", "from airflow.sdk import BaseHook\nBaseHook.get_connection('dr_probe')"),
    "connection_sdk": ("connection", "from airflow.sdk import Connection\nConnection.get('dr_probe')"),
    "connection_postgres_hook": (
        "connection",
        "from airflow.providers.postgres.hooks.postgres import PostgresHook\nPostgresHook('dr_probe').get_conn()",
    ),
    "subprocess_run": ("subprocess", "import subprocess\nsubprocess.run(['true'])"),
    "os_system": ("subprocess", "import os\nos.system('true')"),
    "posix_spawn": ("subprocess", "import os\nos.waitpid(os.posix_spawn('/bin/true', ['true'], {{}}), 0)"),
}


def _probe_file(name: str, code: str, values: dict) -> str:
    body = "\n".join(f"    {line}" for line in code.format(**values).splitlines())
    return f"{HEADER}try:\n{body}\nexcept BaseException:\n    pass\n{FOOTER.format(dag_id=f'probe__{name}')}"


@pytest.fixture(scope="module")
def http_server():
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            return

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], hits
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="module")
def guarded_parses(tmp_path_factory, control_cluster, http_server):
    """Run the guard once over all three folders; {parse name: result}, plus what the probes left."""
    root = tmp_path_factory.mktemp("parse-guard")
    http_port, hits = http_server
    sqlite = root / "probe.sqlite"
    probes = root / "probes"
    probes.mkdir()
    values = {"http_port": http_port, "dsn": control_cluster.dsn(), "sqlite": str(sqlite)}
    for name, (_, code) in PROBES.items():
        (probes / f"{name}.py").write_text(_probe_file(name, code, values))
    plans = root / "plans"
    plans.mkdir()
    for plan in PLANS.glob("*.yaml"):
        shutil.copy(plan, plans)
    shutil.copy(PLANS / "plan.schema.json", plans)
    (plans / "broken.yaml").write_text(
        (PLANS / "wedsync-database-failover.yaml").read_text()
        .replace("name: wedsync-database-failover", "name: broken")
        .replace("max_lag_bytes: 16777216", "max_lag_bytes: lots")
    )
    airflow_home = root / "airflow"
    airflow_home.mkdir()
    secrets = {"AIRFLOW_VAR_DR_PROBE": "would be read",
               "AIRFLOW_CONN_DR_PROBE": control_cluster.uri()}
    spec = {
        "watch": [str(probes), str(REPO / "dags"), str(REPO / "plugins")],
        "parses": [
            {"name": "probes", "dag_folder": str(probes), "env": secrets},
            {"name": "shipped", "dag_folder": str(REPO / "dags"), "isolate_network": os.geteuid() == 0,
             "env": {"DR_PLANS_DIR": None}},
            {"name": "with_invalid_plan", "dag_folder": str(REPO / "dags"), "env": {"DR_PLANS_DIR": str(plans)}},
        ],
    }
    (root / "spec.json").write_text(json.dumps(spec))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "DR_"))},
        "PYTHONPATH": str(REPO / "plugins"),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
    }
    proc = subprocess.run([sys.executable, str(GUARD), str(root / "spec.json")], capture_output=True, text=True,
                          timeout=300, env=env, cwd=str(root))
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"results": results, "hits": hits, "sqlite": sqlite, "airflow_db": airflow_home / "airflow.db",
            "probes": probes}


@pytest.mark.parametrize("name", sorted(PROBES))
def test_the_guard_catches_each_kind_of_access_even_when_the_file_swallows_it(guarded_parses, name):
    result = guarded_parses["results"]["probes"]
    kind = PROBES[name][0]
    path = str(guarded_parses["probes"] / f"{name}.py")
    mine = [a for a in result["attempts"] if a["where"].startswith(path + ":")]
    assert mine, f"{name}: nothing recorded; all attempts: {result['attempts']}"
    assert mine[0]["kind"] == kind, mine
    # The refusal was swallowed by the file, so the DAG still built: only the guard saw it.
    assert f"probe__{name}" in result["dags"]


def test_nothing_the_probes_tried_happened(guarded_parses):
    """Refused, not only recorded: the HTTP server saw no request, the SQLite files and Airflow's DB were never
    created, and no probe is missing from the report."""
    result = guarded_parses["results"]["probes"]
    assert result["import_errors"] == {}
    assert guarded_parses["hits"] == []
    assert not guarded_parses["sqlite"].exists()
    assert not guarded_parses["airflow_db"].exists()
    assert {Path(a["where"].rsplit(":", 1)[0]).stem for a in result["attempts"]} == set(PROBES)


def test_our_dags_folder_parses_with_nothing_reached(guarded_parses):
    result = guarded_parses["results"]["shipped"]
    assert result["attempts"] == []
    assert result["import_errors"] == {}
    if os.geteuid() == 0:
        assert result["network"] == "isolated"
    plans = sorted(f"dr_plan__{p.stem}" for p in PLANS.glob("*.yaml"))
    assert set(plans) <= set(result["dags"])
    assert {"dr_restore", "dr_verify_backups", "dr_health_monitor"} <= set(result["dags"])
    assert not guarded_parses["airflow_db"].exists()


def test_an_invalid_plan_beside_valid_ones_reaches_nothing_either(guarded_parses):
    result = guarded_parses["results"]["with_invalid_plan"]
    assert result["attempts"] == []
    (path, message), = result["import_errors"].items()
    assert path.endswith("dr_config_errors.py") and "broken.yaml" in message and "max_lag_bytes" in message
    assert "dr_plan__broken" not in result["dags"]
    assert {f"dr_plan__{p.stem}" for p in PLANS.glob("*.yaml")} <= set(result["dags"])
