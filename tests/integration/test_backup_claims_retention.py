"""README: "Retention (keep_last, daily, weekly, monthly, or a recovery window) never expires a source's
newest verified backup" — with WAL archiving on, so the task also deletes WAL, end to end.

Two verified backups of an archiving source under ``keep_last: 1``: `apply_retention`'s task (tasks.expire)
expires the older backup (object deleted, row ``expired``), deletes exactly the archived WAL older than the
kept backup's start segment, keeps every file from there on, and a point-in-time restore from the kept
backup through that WAL still works. A second run changes and reports nothing.
"""

from __future__ import annotations

import shutil

import pytest

from disaster_recovery.backups import tasks
from disaster_recovery.backups.inventory import get_backup
from disaster_recovery.backups.restore import ClusterDestination, choose_backup, restore_backup
from disaster_recovery.backups.restored import RestoredCluster
from disaster_recovery.backups.retention import wal_segment_of
from disaster_recovery.backups.storage import LocalStorage
from disaster_recovery.backups.wal_archive import first_missing_segment
from disaster_recovery.postgres.cluster import free_port
from tests.integration.backup_support import backup_env, source_doc
from tests.integration.claims_support import (
    archive_into,
    archived,
    insert,
    ledger,
    moment,
    switch_and_wait,
    verified_backup,
)

pytestmark = pytest.mark.integration
SOURCE = "claims_ret"


@pytest.fixture(scope="module")
def env(catalog_cluster_db):
    def docs(root, conn_id):
        doc = source_doc(name=SOURCE, conn_id=conn_id, method="physical", root=root, wal=True)
        doc["retention"] = {"keep_last": 1}
        return {"main": doc}

    with backup_env("claims_ret", catalog_cluster_db, docs) as env:
        env.config = archive_into(env.src, source=SOURCE, storage_config={"kind": "local", "path": str(env.root)},
                                  key=env.key)
        env.storage = LocalStorage(env.root)
        yield env
        shutil.rmtree(env.config.parent, ignore_errors=True)


def test_retention_deletes_the_wal_no_kept_backup_needs_and_keeps_the_rest_restorable(env):
    old = verified_backup(env)
    for start in (1, 101):  # two more segments of WAL that only the old backup needs
        insert(env.src, range(start, start + 100), note="for the old backup")
        switch_and_wait(env.src)
    kept = verified_backup(env)
    insert(env.src, range(201, 301), note="after the kept backup")
    expected, point = ledger(env.src), moment(env.src)
    insert(env.src, range(301, 401), note="after the point in time")
    switch_and_wait(env.src)

    start = kept.metadata["start_wal_file"]
    assert old.metadata["start_wal_file"] < start
    names = archived(env.storage, SOURCE)
    older = sorted(n for n in names if wal_segment_of(n) < start)
    assert f"{old.metadata['start_wal_file']}" in older and any(n.endswith(".backup") for n in older)
    assert len(older) >= 3
    old_object = old.metadata["object_path"]

    dry = tasks.expire(SOURCE, dry_run=True)
    assert (dry["kept"], dry["expired"], dry["wal_deleted"]) == ([str(kept.id)], [str(old.id)], len(older))
    assert archived(env.storage, SOURCE) == names and env.storage.exists(old_object)

    done = tasks.expire(SOURCE)
    assert (done["kept"], done["expired"], done["wal_deleted"]) == ([str(kept.id)], [str(old.id)], len(older))
    assert f"expired 1 backup(s), {len(older)} WAL file(s) no kept backup needs" in done["sentence"]
    remaining = archived(env.storage, SOURCE)
    assert remaining == sorted(set(names) - set(older))
    assert all(wal_segment_of(n) >= start for n in remaining)
    assert first_missing_segment(remaining, after=start) is None  # everything the kept backup needs is there
    assert not env.storage.exists(old_object) and env.storage.exists(kept.metadata["object_path"])
    assert get_backup(env.catalog, old.id).verification_status == "expired"
    assert get_backup(env.catalog, kept.id).verification_status == "verified"

    again = tasks.expire(SOURCE)
    assert (again["expired"], again["wal_deleted"]) == ([], 0)
    assert "expired 0 backup(s), 0 WAL file(s)" in again["sentence"]
    assert archived(env.storage, SOURCE) == remaining

    chosen = choose_backup(env.catalog, source=SOURCE, point_in_time=point)
    assert chosen.id == kept.id
    restored = RestoredCluster(data_dir=env.root / "after-retention", port=free_port(), password="",
                               superuser="postgres")
    try:
        restore_backup(record=chosen, key=env.key, point_in_time=point,
                       destination=ClusterDestination(restored.data_dir, restored.port))
        assert ledger(restored) == expected == (300, 1, 300)
    finally:
        restored.destroy()
