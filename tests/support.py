"""Session-wide test support shared by conftest.py and test modules: the session's folders and clusters.

Import it as ``tests.support`` (never import conftest.py from a test: pytest has it loaded already).

Everything a session makes lives in folders it owns and the sweeper (tests/sweeper.py) removes, even after
a killed run: ``SESSION_DIR`` (clusters, storage roots, Airflow's home, pytest's tmp_path, and the temp folder
of this process and its children: ``TMPDIR``), and ``SCRATCH_DIR`` on /dev/shm where the product puts its
scratch restores (``DR_SCRATCH_DIR``). Every LocalCluster made in this process (restored and scratch ones
too) is registered the moment it is made; ``make_cluster``/``make_pair`` clusters, ``register_cluster``
for any other, and ``hold`` for those a session-scoped fixture keeps until the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from disaster_recovery.postgres.cluster import LocalCluster, create_standby, free_port, wait_streaming
from disaster_recovery.postgres.hooks import on_cluster_created, on_cluster_started
from tests.sweeper import Sweeper

REPO = Path(__file__).resolve().parents[1]
# The process that makes the session folder owns the session; a subprocess that imports this module inherits
# the folder through the environment and only uses it.
OWNER = "DR_TEST_SESSION_DIR" not in os.environ
SESSION_DIR = Path(os.environ.get("DR_TEST_SESSION_DIR") or tempfile.mkdtemp(prefix="dr-tests-"))
os.environ["DR_TEST_SESSION_DIR"] = str(SESSION_DIR)
# A staged copy of the WAL commands' runtime (see backups.wal_archive.stage_runtime) goes with the session.
os.environ["DR_WAL_RUNTIME_DIR"] = str(SESSION_DIR)
# The clusters run as the unprivileged postgres OS user when we are root: it must reach their folders.
SESSION_DIR.chmod(0o755)


def _scratch_dir() -> Path:
    """Scratch restores in RAM as in production (/dev/shm, when it has room), in a folder of this session."""
    if not OWNER:
        return Path(os.environ.get("DR_SCRATCH_DIR") or SESSION_DIR / "scratch")
    try:
        shm = os.statvfs("/dev/shm")
        if shm.f_bavail * shm.f_frsize > 4 * 2**30 and os.access("/dev/shm", os.W_OK):
            return Path(tempfile.mkdtemp(prefix=f"dr-tests-{SESSION_DIR.name.removeprefix('dr-tests-')}-",
                                         dir="/dev/shm"))
    except OSError:
        pass
    return SESSION_DIR / "scratch"


SCRATCH_DIR = _scratch_dir()
SCRATCH_DIR.mkdir(exist_ok=True)
SCRATCH_DIR.chmod(0o755)
os.environ["DR_SCRATCH_DIR"] = str(SCRATCH_DIR)
TEMP_DIR = SESSION_DIR / "tmp"
TEMP_DIR.mkdir(exist_ok=True)
TEMP_DIR.chmod(0o1777)  # like /tmp: the server user's commands write temp files too
os.environ["TMPDIR"] = str(TEMP_DIR)
tempfile.tempdir = str(TEMP_DIR)

SWEEPER = Sweeper([SESSION_DIR, SCRATCH_DIR]) if OWNER else None
_CLUSTERS: dict[Path, LocalCluster] = {}  # data directory -> the cluster to destroy at the latest at the end
HELD: set[Path] = set()  # data directories of clusters a session-scoped fixture keeps until the end


def _adopt(cluster: LocalCluster) -> None:
    if SWEEPER is not None:
        SWEEPER.add_cluster(cluster)
        if SWEEPER.owns(cluster.data_dir):
            _CLUSTERS[cluster.data_dir] = cluster


def _started(cluster: LocalCluster) -> None:
    if SWEEPER is not None:
        SWEEPER.add_server_memory(cluster)


on_cluster_created(_adopt)
on_cluster_started(_started)


def register_cluster(cluster: LocalCluster) -> LocalCluster:
    """Have the session destroy this cluster at the latest when it ends (clusters made in this process are
    registered already; this also takes one made elsewhere, e.g. by a subprocess, given its folder)."""
    _CLUSTERS[cluster.data_dir] = cluster
    if SWEEPER is not None:
        SWEEPER.add_cluster(cluster)
    return cluster


def hold(cluster: LocalCluster) -> LocalCluster:
    """A cluster that lives until the session ends (the end-of-session check expects it still running)."""
    HELD.add(cluster.data_dir)
    return register_cluster(cluster)


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
    _CLUSTERS.pop(cluster.data_dir, None)
    HELD.discard(cluster.data_dir)


def destroy_all() -> None:
    """Destroy every cluster still registered (the session's teardown; ``end_session`` sweeps the rest)."""
    for cluster in list(_CLUSTERS.values()):
        drop_cluster(cluster)


def end_session() -> list[str]:
    """Clear whatever the session still has (processes, shared memory, its folders); what had to be done."""
    if SWEEPER is None:
        return []
    done = SWEEPER.finish()
    shutil.rmtree(SESSION_DIR, ignore_errors=True)
    shutil.rmtree(SCRATCH_DIR, ignore_errors=True)
    return done
