"""Helpers of the test_backup_claims_* modules: archiving sources, a ledger of rows, snapshots of what is stored.

Everything here drives real parts (clusters, the archive command run by the server, storage); nothing is mocked.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterable
from pathlib import Path

from disaster_recovery.backups.inventory import list_backups
from disaster_recovery.backups.keys import EncryptionKey
from disaster_recovery.backups.wal_archive import (
    archived_files,
    enable_archiving,
    is_segment_name,
    wait_archived,
    write_archive_config,
)
from disaster_recovery.catalog.repository import Catalog
from disaster_recovery.postgres.cluster import LocalCluster, give_to_server_user
from tests.support import SESSION_DIR

LEDGER_SQL = "CREATE TABLE IF NOT EXISTS ledger (id int PRIMARY KEY, note text NOT NULL)"


def archive_into(cluster: LocalCluster, *, source: str, storage_config: dict, key: EncryptionKey,
                 environment: dict[str, str] | None = None) -> Path:
    """Have ``cluster`` archive its WAL for ``source`` into that storage (restarting it once); the config file."""
    config = write_archive_config(folder=SESSION_DIR / f"{cluster.data_dir.name}.archive", source=source,
                                  storage_config=storage_config, key=key, environment=environment)
    with contextlib.closing(cluster.connect()) as conn:
        restart = enable_archiving(conn, config_path=config)
    if restart:
        cluster.stop()
        cluster.start()
    return config


def server_airflow_home(name: str) -> Path:
    """An AIRFLOW_HOME for the archive command of an S3 source (Airflow writes its logs folder there when the
    command imports the S3 hook as the server's OS user: without one it would land in that user's home)."""
    home = SESSION_DIR / f"{name}-airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    give_to_server_user(home)
    return home


def insert(cluster: LocalCluster, ids: Iterable[int], *, note: str) -> None:
    """One transaction per row (autocommit), so a point in time can fall between any two of them."""
    with contextlib.closing(cluster.connect()) as conn:
        cur = conn.cursor()
        cur.execute(LEDGER_SQL)
        for i in ids:
            cur.execute("INSERT INTO ledger (id, note) VALUES (%s, %s)", (i, note))


def moment(cluster: LocalCluster) -> dt.datetime:
    """The server's clock now, a little after the last commit (so the commits before it are strictly older)."""
    now = cluster.query("SELECT clock_timestamp()")[0][0]
    time.sleep(0.02)
    return now


def switch_and_wait(cluster: LocalCluster) -> str:
    """Close the current WAL file and wait until the server archived it; its name."""
    with contextlib.closing(cluster.connect()) as conn:
        return wait_archived(conn, timeout=60)


def ledger(cluster: LocalCluster) -> tuple:
    """(rows, min id, max id) of the ledger."""
    return cluster.query("SELECT count(*), min(id), max(id) FROM ledger")[0]


def archived(storage, source: str) -> list[str]:
    return archived_files(storage, source)


def segments(names: Iterable[str]) -> list[str]:
    """The whole WAL segments among archived file names (no .history, .backup or .partial files)."""
    return sorted(n for n in names if is_segment_name(n))


def backups_state(catalog: Catalog, source: str, storage) -> list[tuple]:
    """Every backup row of ``source`` as (id, status, checksum, location, stored object size or None)."""
    rows = []
    for record in list_backups(catalog, data_source=source):
        relpath = record.metadata.get("object_path")
        size = storage.size(relpath) if relpath and storage.exists(relpath) else None
        rows.append((str(record.id), record.verification_status, record.backup_checksum, record.backup_location,
                     size))
    return sorted(rows)


def storage_state(storage, prefix: str) -> dict[str, int]:
    """Every object under ``prefix`` with its size."""
    return {rel: storage.size(rel) for rel in storage.list(prefix)}


def processes_using(path: Path) -> dict[int, str]:
    """Running processes that name ``path`` on their command line (a postmaster's ``-D``) or work in a folder
    under it (every PostgreSQL process works in its data directory, even once that was deleted)."""
    needle = str(path)
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if state != "Z" and (needle in cmdline or cwd == needle or cwd.startswith(needle + "/")):
            found[int(entry)] = cmdline.strip()
    return found


def verified_backup(env):
    """A new backup of the env's main source, verified by a real restore test; its catalog record."""
    from disaster_recovery.backups.inventory import get_backup
    from disaster_recovery.backups.runner import take_backup
    from disaster_recovery.backups.verification import verify_backup

    record = take_backup(source=env.sources["main"], catalog=env.catalog).record
    assert verify_backup(catalog=env.catalog, backup_id=record.id, key=env.key).status == "verified"
    return get_backup(env.catalog, record.id)
