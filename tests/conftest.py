"""Shared fixtures: real PostgreSQL clusters on free ports and one migrated Airflow DB per session.

Airflow reads its configuration when first imported, so the environment is set here, before any test
module imports it: a private AIRFLOW_HOME, SQLite metadata DB, our dags/ folder, no examples.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, SESSION_DIR, destroy_all, drop_cluster, make_cluster, make_pair, register_cluster

_SESSION_DIR = SESSION_DIR
os.environ.setdefault("AIRFLOW_HOME", str(_SESSION_DIR / "airflow"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_SESSION_DIR / 'airflow' / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_hex(16))
os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(_SESSION_DIR / "airflow" / "logs")
(_SESSION_DIR / "airflow").mkdir(exist_ok=True)

from disaster_recovery.catalog.migrations import migrate  # noqa: E402
from disaster_recovery.postgres.cluster import LocalCluster  # noqa: E402

__all__ = ["drop_cluster", "make_cluster", "register_cluster"]


def pytest_sessionfinish(session, exitstatus):
    destroy_all()


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def control_cluster() -> LocalCluster:
    """One cluster for the whole session that holds throwaway catalog databases."""
    cluster = make_cluster("control")
    yield cluster
    drop_cluster(cluster)


@pytest.fixture(scope="module")
def catalog_cluster_db(control_cluster, request) -> tuple[LocalCluster, str]:
    """A fresh, migrated catalog database for one test module: (cluster, dbname)."""
    name = f"catalog_{secrets.token_hex(4)}"
    control_cluster.create_database(name)
    migrate(control_cluster.dsn(name))
    yield control_cluster, name
    control_cluster.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def cluster_pair():
    """A primary with a streaming standby (asynchronous), shared by one test module."""
    primary, standby = make_pair("pair")
    yield primary, standby
    drop_cluster(standby)
    drop_cluster(primary)


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Airflow's metadata DB, migrated once per session (SQLite in the session folder)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=dict(os.environ),
        timeout=300,
    )
    return Path(os.environ["AIRFLOW_HOME"])
