"""Shared fixtures: real PostgreSQL clusters on free ports and one migrated Airflow DB per session.

Airflow reads its configuration when first imported, so the environment is set here, before any test
module imports it: a private AIRFLOW_HOME, SQLite metadata DB, our dags/ folder, no examples.

The session's clean-up survives a killed run: tests/support.py keeps everything in the session's folders and
registers every cluster, tests/sweeper.py records them in a per-user registry and, at the start of the next
session, clears what a dead one left. The last test (tests/test_session_end.py) and ``pytest_sessionfinish``
check that nothing of the session is left; a random choice is made with the ``rng`` fixture, whose seed a
failure prints (``DR_TEST_SEED=<seed>`` replays it).
"""

from __future__ import annotations

import os
import random
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.leftovers import leftovers
from tests.support import (
    OWNER,
    REPO,
    SCRATCH_DIR,
    SESSION_DIR,
    SWEEPER,
    TEMP_DIR,
    destroy_all,
    drop_cluster,
    end_session,
    hold,
    make_cluster,
    make_pair,
    register_cluster,
)

_SESSION_DIR = SESSION_DIR
os.environ.setdefault("AIRFLOW_HOME", str(_SESSION_DIR / "airflow"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_SESSION_DIR / 'airflow' / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", secrets.token_hex(16))
os.environ["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(_SESSION_DIR / "airflow" / "logs")
# pytest's tmp_path folders go with the session too (pytest would keep the last three runs' in /tmp).
os.environ["PYTEST_DEBUG_TEMPROOT"] = str(_SESSION_DIR)
(_SESSION_DIR / "airflow").mkdir(exist_ok=True)

from disaster_recovery.catalog.migrations import migrate  # noqa: E402
from disaster_recovery.postgres.cluster import LocalCluster  # noqa: E402

__all__ = ["drop_cluster", "make_cluster", "register_cluster"]
SEED_ENV = "DR_TEST_SEED"
_SWEPT: list[str] = []


# -- the session's clean-up ------------------------------------------------------------------------------
def pytest_sessionstart(session):
    if OWNER and SWEEPER is not None:
        _SWEPT.extend(SWEEPER.begin())


def pytest_report_header(config):
    if _SWEPT:
        return [f"swept what a killed test session left ({len(_SWEPT)}):", *(f"  {line}" for line in _SWEPT)]
    return None


def pytest_collection_modifyitems(session, config, items):
    """The end-of-session check runs last, whatever the order of collection."""
    last = [item for item in items if item.get_closest_marker("session_end")]
    items[:] = [item for item in items if not item.get_closest_marker("session_end")] + last


def pytest_configure(config):
    config.addinivalue_line("markers", "session_end: the end-of-session check (always run last)")


def pytest_sessionfinish(session, exitstatus):
    destroy_all()
    if not OWNER or SWEEPER is None:
        return
    problems = leftovers(SWEEPER, held=set(), scratch=SCRATCH_DIR, temp=TEMP_DIR, final=True)
    cleared = end_session()
    problems += [f"{folder} could not be removed" for folder in SWEEPER.record.folders if Path(folder).exists()]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if problems:
        if reporter is not None:
            reporter.write_line("")
            reporter.write_sep("=", "left behind by this session (now removed by the sweeper)", red=True)
            for line in problems + [f"  sweeper: {line}" for line in cleared]:
                reporter.write_line(line)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- seeded randomness ------------------------------------------------------------------------------------
@pytest.fixture
def rng(request) -> random.Random:
    """A seeded ``random.Random``: ``$DR_TEST_SEED`` or a fresh seed, shown with the test's failure."""
    seed = int(os.environ.get(SEED_ENV) or secrets.randbits(32))
    request.node.user_properties.append(("random seed", seed))
    return random.Random(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name, value in item.user_properties:
            if name == "random seed":
                report.sections.append(("random seed", f"{SEED_ENV}={value} replays this test's random choices"))


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def control_cluster() -> LocalCluster:
    """One cluster for the whole session that holds throwaway catalog databases."""
    cluster = hold(make_cluster("control"))
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
