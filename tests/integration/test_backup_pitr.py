"""Point-in-time recovery: the primary archives its WAL through our archive_command (sealed into the
backup storage, run as the server OS user), a base backup is taken and verified, rows are written, a
moment is noted, more rows are written; restoring to that moment brings back exactly the first rows.
"""

from __future__ import annotations

import shutil
import time
from types import SimpleNamespace

import pytest

from disaster_recovery.backups.restore import ClusterDestination, RestoreRefused, choose_backup, restore_backup
from disaster_recovery.backups.restored import RestoredCluster
from disaster_recovery.backups.runner import take_backup
from disaster_recovery.backups.storage import LocalStorage
from disaster_recovery.backups.verification import verify_backup
from disaster_recovery.backups.wal_archive import (
    archived_files,
    enable_archiving,
    wait_archived,
    write_archive_config,
)
from disaster_recovery.postgres.cluster import free_port
from disaster_recovery.steps.backup_restore import BackupRestoreStep
from disaster_recovery.steps.base import StepContext
from tests.integration.backup_support import (
    catalog_for,
    key_conn_json,
    make_source,
    new_key,
    pg_conn_json,
    source_doc,
    storage_root,
    write_sources_file,
)
from tests.support import drop_cluster, make_cluster

pytestmark = pytest.mark.integration
SOURCE = "pitr_src"


@pytest.fixture(scope="module")
def lab(catalog_cluster_db, session_dir):
    mp = pytest.MonkeyPatch()
    key, b64 = new_key()
    root = storage_root("pitr-store")
    src = make_cluster("pitr-src")
    config = write_archive_config(folder=session_dir / f"{src.data_dir.name}.archive", source=SOURCE,
                                  storage_config={"kind": "local", "path": str(root)}, key=key)
    conn = src.connect()
    try:
        if enable_archiving(conn, config_path=config):
            src.stop()
            src.start()
    finally:
        conn.close()
    cat_cluster, cat_db = catalog_cluster_db
    mp.setenv("AIRFLOW_CONN_DR_BACKUP_KEY", key_conn_json(b64))
    mp.setenv("AIRFLOW_CONN_PITR_SOURCE", pg_conn_json(src))
    mp.setenv("AIRFLOW_CONN_PITR_CATALOG", cat_cluster.uri(cat_db))
    mp.setenv("DR_CATALOG_CONN_ID", "pitr_catalog")
    doc = source_doc(name=SOURCE, conn_id="pitr_source", method="physical", root=root, wal=True)
    mp.setenv("DR_BACKUPS_FILE", str(write_sources_file(root / "backups.yaml", [doc])))
    catalog = catalog_for(catalog_cluster_db)
    yield SimpleNamespace(src=src, key=key, root=root, catalog=catalog, config=config,
                          source=make_source(name=SOURCE, conn_id="pitr_source", method="physical", root=root,
                                             wal=True))
    catalog.dispose()
    mp.undo()
    drop_cluster(src)
    shutil.rmtree(config.parent, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


def test_restore_to_a_point_in_time_brings_back_exactly_the_rows_before_it(lab):
    src = lab.src
    src.query("CREATE TABLE ledger (id int PRIMARY KEY, note text, at timestamptz DEFAULT clock_timestamp())")
    record = take_backup(source=lab.source, catalog=lab.catalog).record
    assert record.metadata["wal_archived_to"].endswith(f"{SOURCE}/wal")
    assert verify_backup(catalog=lab.catalog, backup_id=record.id, key=lab.key).status == "verified"

    conn = src.connect()  # autocommit: every INSERT is its own transaction
    try:
        cur = conn.cursor()
        for i in range(1, 301):
            cur.execute("INSERT INTO ledger (id, note) VALUES (%s, 'before')", (i,))
        cur.execute("SELECT clock_timestamp()")
        moment = cur.fetchone()[0]
        time.sleep(0.05)
        for i in range(301, 501):
            cur.execute("INSERT INTO ledger (id, note) VALUES (%s, 'after')", (i,))
        last = wait_archived(conn, timeout=60)
    finally:
        conn.close()
    archived = archived_files(LocalStorage(lab.root), SOURCE)
    assert last in archived and all(name.startswith("00000001") for name in archived)

    # Before the backup ended: refused, and no older verified backup exists.
    with pytest.raises(RestoreRefused, match="no verified backup that ended before"):
        choose_backup(lab.catalog, source=SOURCE, point_in_time=record.created_at.replace(year=2000))

    target = lab.root / "pitr-restored"
    port = free_port()
    restored = RestoredCluster(data_dir=target, port=port, password="", superuser="postgres")
    try:
        out = BackupRestoreStep().run(
            {"source": SOURCE, "point_in_time": moment.isoformat(),
             "target": {"data_directory": str(target), "port": port}},
            StepContext(plan_name="pitr", step_name="restore"),
        )
        assert out.output["backup_id"] == str(record.id)
        assert out.output["recovered_to"] == moment.isoformat() and out.output["achieved_rpo_seconds"] == 0
        assert "recovery stopping before commit" in out.output["details"]["recovery_stop"]
        assert not restored.in_recovery()
        rows = restored.query("SELECT count(*), min(id), max(id), count(*) FILTER (WHERE note = 'after') FROM ledger")
        assert rows[0] == (300, 1, 300, 0)
        restored.query("INSERT INTO ledger (id, note) VALUES (1000, 'written after the restore')")
        # The restore's fetch config (it holds the key) is gone, and the restored copy does not archive.
        assert not (target.parent / f"{target.name}.restore").exists()
        assert restored.query("SHOW archive_mode")[0][0] == "off"
    finally:
        restored.destroy()
    # The source carries on, untouched.
    assert src.query("SELECT count(*) FROM ledger")[0][0] == 500


def test_point_in_time_needs_a_cluster_and_a_time_after_the_backup(lab):
    record = choose_backup(lab.catalog, source=SOURCE)
    too_early = record.created_at.replace(microsecond=0)
    with pytest.raises(RestoreRefused, match="after the point in time"):
        restore_backup(record=record, key=lab.key, point_in_time=too_early, dry_run=True,
                       destination=ClusterDestination(lab.root / "never", free_port()))
    assert not (lab.root / "never").exists()
