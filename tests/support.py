"""Session-wide test support shared by conftest.py and test modules: the session folder and clusters.

Import it as ``tests.support`` (never import conftest.py from a test: pytest has it loaded already).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from disaster_recovery.postgres.cluster import LocalCluster, create_standby, free_port, wait_streaming

REPO = Path(__file__).resolve().parents[1]
SESSION_DIR = Path(os.environ.get("DR_TEST_SESSION_DIR") or tempfile.mkdtemp(prefix="dr-tests-"))
os.environ["DR_TEST_SESSION_DIR"] = str(SESSION_DIR)
# A staged copy of the WAL commands' runtime (see backups.wal_archive.stage_runtime) goes with the session.
os.environ["DR_WAL_RUNTIME_DIR"] = str(SESSION_DIR)
# The clusters run as the unprivileged postgres OS user when we are root: it must reach their folders.
SESSION_DIR.chmod(0o755)
_CLUSTERS: list[LocalCluster] = []


def register_cluster(cluster: LocalCluster) -> LocalCluster:
    """Have the session destroy this cluster at the latest when it ends."""
    _CLUSTERS.append(cluster)
    return cluster


def make_cluster(name: str, *, base: Path | None = None) -> LocalCluster:
    """A new running cluster under the session folder (destroyed at the latest when the session ends)."""
    folder = base or SESSION_DIR / "clusters"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    cluster = register_cluster(
        LocalCluster(data_dir=folder / f"{name}-{secrets.token_hex(3)}", port=free_port(),
                     password=secrets.token_hex(12))
    )
    cluster.initdb()
    cluster.start()
    return cluster


def make_pair(name: str, *, setup_sql: tuple[str, str] | None = None) -> tuple[LocalCluster, LocalCluster]:
    """A running primary (optionally with ``setup_sql`` = (dbname, sql) applied) and its streaming standby."""
    primary = make_cluster(f"{name}-primary")
    if setup_sql:
        dbname, sql = setup_sql
        primary.create_database(dbname)
        primary.query(sql, dbname=dbname)
    standby = register_cluster(
        create_standby(primary, data_dir=primary.data_dir.parent / f"{name}-standby-{secrets.token_hex(3)}",
                       port=free_port(), slot=f"{name.replace('-', '_')}_standby")
    )
    standby.start()
    wait_streaming(primary, application_name=standby.name)
    return primary, standby


def drop_cluster(cluster: LocalCluster) -> None:
    cluster.destroy()
    if cluster in _CLUSTERS:
        _CLUSTERS.remove(cluster)


def destroy_all() -> None:
    for cluster in list(_CLUSTERS):
        drop_cluster(cluster)
    shutil.rmtree(SESSION_DIR, ignore_errors=True)
