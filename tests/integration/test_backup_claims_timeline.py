"""README: "WAL archiving follows [the primary] too (a member inherits the primary's archive_command)" and
point-in-time recovery — across a failover's timeline switch.

A base backup taken on timeline 1, the primary lost, its standby promoted (timeline 2, archiving into the
same storage): a point in time on timeline 2 is restored from the timeline-1 backup, following the
promotion through the archived history file. Without that history file the restore fails and names it.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shutil
import time

import pytest

from disaster_recovery.backups.inventory import get_backup
from disaster_recovery.backups.restore import ClusterDestination, PointInTimeUnreachable, restore_backup
from disaster_recovery.backups.restored import RestoredCluster
from disaster_recovery.backups.runner import take_backup
from disaster_recovery.backups.storage import LocalStorage
from disaster_recovery.backups.verification import verify_backup
from disaster_recovery.backups.wal_archive import wal_relpath
from disaster_recovery.postgres.cluster import create_standby, free_port, wait_streaming
from disaster_recovery.postgres.failover import promote
from tests.integration.backup_support import backup_env, source_doc
from tests.integration.claims_support import (
    archive_into,
    archived,
    backups_state,
    insert,
    ledger,
    moment,
    processes_using,
    segments,
    storage_state,
    switch_and_wait,
)
from tests.support import drop_cluster, register_cluster

pytestmark = pytest.mark.integration
SOURCE = "claims_tl"


@pytest.fixture(scope="module")
def env(catalog_cluster_db):
    def docs(root, conn_id):
        return {"main": source_doc(name=SOURCE, conn_id=conn_id, method="physical", root=root, wal=True)}

    with backup_env("claims_tl", catalog_cluster_db, docs) as env:
        env.config = archive_into(env.src, source=SOURCE, storage_config={"kind": "local", "path": str(env.root)},
                                  key=env.key)
        env.storage = LocalStorage(env.root)
        # Cloned after archiving was set up: the standby inherits archive_mode and archive_command.
        env.standby = register_cluster(create_standby(
            env.src, data_dir=env.src.data_dir.parent / f"claims-tl-standby-{secrets.token_hex(3)}",
            port=free_port(), slot="claims_tl_standby"))
        env.standby.start()
        wait_streaming(env.src, application_name=env.standby.name)
        yield env
        drop_cluster(env.standby)
        shutil.rmtree(env.config.parent, ignore_errors=True)


def wait_replayed(standby, rows: int, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (ledger(standby)[0] if standby.query("SELECT to_regclass('ledger')")[0][0] else 0) != rows:
        assert time.monotonic() < deadline, f"the standby did not replay {rows} ledger rows in {timeout} s"
        time.sleep(0.05)


def timeline(cluster) -> int:
    return cluster.query("SELECT timeline_id FROM pg_control_checkpoint()")[0][0]


def test_a_point_on_the_promoted_timeline_restores_from_a_backup_of_the_old_one(env):
    primary, standby = env.src, env.standby
    record = take_backup(source=env.sources["main"], catalog=env.catalog).record
    assert verify_backup(catalog=env.catalog, backup_id=record.id, key=env.key).status == "verified"
    env.record = record = get_backup(env.catalog, record.id)
    assert record.metadata["timeline"] == 1
    insert(primary, range(1, 101), note="timeline 1")
    wait_replayed(standby, 100)

    primary.stop()  # the primary is lost; its standby is promoted
    with contextlib.closing(standby.connect()) as conn:
        promote(conn, wait_seconds=30)
    assert standby.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0].startswith("00000002")
    insert(standby, range(101, 201), note="timeline 2")
    env.expected, env.point = ledger(standby), moment(standby)
    insert(standby, range(201, 251), note="timeline 2, after the point in time")
    switch_and_wait(standby)
    names = archived(env.storage, SOURCE)
    assert "00000002.history" in names
    assert {name[:8] for name in segments(names)} == {"00000001", "00000002"}

    restored = RestoredCluster(data_dir=env.root / "across-the-switch", port=free_port(), password="",
                               superuser="postgres")
    try:
        result = restore_backup(record=record, key=env.key, point_in_time=env.point,
                                destination=ClusterDestination(restored.data_dir, restored.port))
        assert result.recovered_to == env.point
        assert ledger(restored) == env.expected == (200, 1, 200)
        log = restored.log_file.read_text()
        assert 'restored log file "00000002.history" from archive' in log
        assert timeline(restored) == 3  # promoted at the point in time: a timeline of its own
    finally:
        restored.destroy()


def test_without_the_history_file_the_restore_names_it_and_changes_nothing(env):
    env.storage.delete(wal_relpath(SOURCE, "00000002.history"))
    before = (backups_state(env.catalog, SOURCE, env.storage), storage_state(env.storage, f"{SOURCE}/"))
    target = env.root / "no-history"
    with pytest.raises(PointInTimeUnreachable, match=(
        rf"timeline history file 00000002.history is missing from the archive of source '{SOURCE}'.*"
        r"before the point in time " + re.escape(env.point.isoformat())
    )):
        restore_backup(record=env.record, key=env.key, point_in_time=env.point,
                       destination=ClusterDestination(target, free_port()))
    assert not target.exists() and processes_using(target) == {}
    assert (backups_state(env.catalog, SOURCE, env.storage), storage_state(env.storage, f"{SOURCE}/")) == before
