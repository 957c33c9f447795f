"""Full backups taken, verified by restoring them, and restored: physical (pg_basebackup, server-side and
client-side zstd) and logical (pg_dump), against a real source cluster, through the real pipeline
(AES-256-GCM, SHA-256, local storage) and the real catalog. Also the backup_restore step and its refusals.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import pytest

from disaster_recovery.backups.engines import PgEndpoint
from disaster_recovery.backups.inventory import get_backup, list_backups
from disaster_recovery.backups.restore import (
    DatabaseDestination,
    RestoreRefused,
    choose_backup,
    restore_backup,
)
from disaster_recovery.backups.restored import RestoredCluster
from disaster_recovery.backups.runner import take_backup
from disaster_recovery.backups.snapshot import count_rows, list_tables
from disaster_recovery.backups.verification import verify_backup
from disaster_recovery.postgres.cluster import free_port
from disaster_recovery.steps.backup_restore import BackupRestoreStep
from disaster_recovery.steps.base import StepContext, StepFailed
from tests.integration.backup_support import (
    KEY_ID,
    SEED_COUNTS,
    backup_env,
    source_doc,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab(catalog_cluster_db):
    def docs(root, conn_id):
        return {
            "physical": source_doc(name="bk_physical", conn_id=conn_id, method="physical", root=root),
            "client": source_doc(name="bk_client", conn_id=conn_id, method="physical", root=root, where="client"),
            "logical": source_doc(name="bk_logical", conn_id=conn_id, method="logical", root=root),
        }

    with backup_env("bk", catalog_cluster_db, docs) as env:
        yield env


def _ctx(dry_run: bool = False) -> StepContext:
    return StepContext(plan_name="restore-test", step_name="restore", dry_run=dry_run)


def _counts(cluster, dbname="postgres", *, unlogged=False) -> dict[str, int]:
    conn = cluster.connect(dbname)
    try:
        return count_rows(conn.cursor(), list_tables(conn.cursor(), include_unlogged=unlogged))
    finally:
        conn.close()


def _check_inventory_row(record, *, root: Path, method: str) -> None:
    assert record.verification_status == "pending"
    assert record.backup_type == "full"
    assert record.backup_format == ("binary" if method == "physical" else "sql_dump")
    assert record.encryption_enabled is True
    assert record.compression_type.startswith("zstd:3 ")
    assert record.backup_size_bytes > record.compressed_size_bytes > 0
    assert record.storage_class == "standard" and record.access_frequency == "frequent"
    assert record.retention_policy == {"keep_last": 7, "recovery_window": "14d"}
    assert record.expires_at is None  # keep_last depends on later backups
    stored = Path(record.backup_location.removeprefix("file://"))
    assert stored.is_file() and str(stored).startswith(str(root))
    assert stored.stat().st_size == record.compressed_size_bytes
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == record.backup_checksum
    meta = record.metadata
    for name in ("start_lsn", "stop_lsn", "timeline", "server_version", "key_id", "duration_seconds",
                 "throughput_mb_s", "engine_args", "consistent_at", "row_counts"):
        assert meta.get(name) is not None, name
    assert meta["key_id"] == KEY_ID
    assert meta["server_version"].startswith("15")
    for table, count in SEED_COUNTS.items():
        assert meta["row_counts"][table] == count
    assert ("public.cache_u" in meta["row_counts"]) == (method == "logical")  # pg_basebackup skips unlogged data
    assert meta["row_counts_exact"] is True


def test_physical_backup_is_verified_and_restored_by_the_step(lab):
    source = lab.sources["physical"]
    outcome = take_backup(source=source, catalog=lab.catalog)
    record = outcome.record
    _check_inventory_row(record, root=lab.root, method="physical")
    assert record.compression_type == "zstd:3 server"
    assert record.metadata["has_manifest"] is False
    assert record.metadata["start_wal_file"].startswith("00000001")
    assert lab.key.key.hex() not in json.dumps(record.as_json())

    result = verify_backup(catalog=lab.catalog, backup_id=record.id, key=lab.key)
    assert result.status == "verified", result.error
    verified = get_backup(lab.catalog, record.id)
    assert verified.verification_status == "verified" and verified.restore_tested
    assert verified.verified_at is not None and verified.restore_test_date is not None
    test = verified.metadata["restore_test"]
    assert test["amcheck"]["ok"] and test["row_counts_match"] and test["duration_seconds"] > 0
    assert verified.backup_size_bytes == verified.metadata["tar_bytes"]  # exact tar size after verification

    target = lab.root / "restored-physical"
    port = free_port()
    step = BackupRestoreStep()
    config = {"source": source.name, "target": {"data_directory": str(target), "port": port}}
    dry = step.run(config, _ctx(dry_run=True))
    assert dry.output["dry_run"] is True and not target.exists()
    restored = RestoredCluster(data_dir=target, port=port, password="", superuser="postgres")
    try:
        out = step.run(config, _ctx())
        assert out.output["backup_id"] == str(record.id)
        assert out.output["restored_bytes"] == verified.metadata["tar_bytes"]
        assert out.output["row_counts_match"] is True
        assert out.output["achieved_rpo_seconds"] >= 0 and out.output["recovered_to"]
        assert not restored.in_recovery()
        assert _counts(restored) == _counts(lab.src)
        restored.query("INSERT INTO public.empty_one VALUES (1)")  # read-write
        # A second restore into the same folder is refused (not empty, and it runs).
        with pytest.raises(StepFailed, match="running|not empty|in use"):
            step.run(config, _ctx())
    finally:
        restored.destroy()
        shutil.rmtree(target.parent / f"{target.name}.restore", ignore_errors=True)


def test_client_compressed_backup_keeps_manifest_for_pg_verifybackup(lab):
    record = take_backup(source=lab.sources["client"], catalog=lab.catalog).record
    assert record.compression_type == "zstd:3 client" and record.metadata["has_manifest"] is True
    result = verify_backup(catalog=lab.catalog, backup_id=record.id, key=lab.key)
    assert result.status == "verified", result.error
    assert result.checks["pg_verifybackup"] == "ok"


def test_logical_backup_is_verified_and_restored_into_a_database(lab):
    record = take_backup(source=lab.sources["logical"], catalog=lab.catalog).record
    _check_inventory_row(record, root=lab.root, method="logical")
    assert record.compression_type == "zstd:3 pipeline"
    assert "uncompressed" in record.metadata["backup_size_basis"]
    result = verify_backup(catalog=lab.catalog, backup_id=record.id, key=lab.key)
    assert result.status == "verified", result.error
    assert result.restore_test["row_counts_match"] and result.restore_test["amcheck"]["ok"]

    lab.src.query("CREATE DATABASE restored_logical")
    destination = DatabaseDestination(PgEndpoint.from_connection("bk_source").with_dbname("restored_logical"))
    chosen = choose_backup(lab.catalog, source="bk_logical")
    assert chosen.id == record.id
    out = restore_backup(record=chosen, key=lab.key, destination=destination)
    assert out.row_counts_match is True
    assert _counts(lab.src, "restored_logical", unlogged=True) == _counts(lab.src, unlogged=True)
    # Now it holds data: refused, unless replace_existing.
    with pytest.raises(RestoreRefused, match="already holds"):
        restore_backup(record=chosen, key=lab.key, destination=destination)
    again = restore_backup(record=chosen, key=lab.key, destination=destination, replace_existing=True)
    assert again.row_counts_match is True
    lab.src.query("DROP DATABASE restored_logical WITH (FORCE)")


def test_restore_refuses_unverified_backups_and_mismatched_targets(lab):
    pending = take_backup(source=lab.sources["physical"], catalog=lab.catalog).record
    with pytest.raises(RestoreRefused, match="not verified"):
        choose_backup(lab.catalog, source="bk_physical", backup_id=str(pending.id))
    with pytest.raises(RestoreRefused, match="no backup with id"):
        choose_backup(lab.catalog, source="bk_physical", backup_id=str(uuid.uuid4()))
    with pytest.raises(RestoreRefused, match="belongs to source"):
        choose_backup(lab.catalog, source="bk_logical", backup_id=str(pending.id))
    # Forced: the checks still run — a physical backup cannot go into a database.
    destination = DatabaseDestination(PgEndpoint.from_connection("bk_source"))
    with pytest.raises(RestoreRefused, match="physical backup"):
        restore_backup(record=pending, key=lab.key, destination=destination, force_unverified=True, dry_run=True)
    step = BackupRestoreStep()
    with pytest.raises(StepFailed, match="not verified"):
        step.run({"source": "bk_physical", "backup_id": str(pending.id),
                  "target": {"data_directory": str(lab.root / "never"), "port": free_port()}}, _ctx(dry_run=True))
    forced = step.run({"source": "bk_physical", "backup_id": str(pending.id), "force_unverified": True,
                       "target": {"data_directory": str(lab.root / "never"), "port": free_port()}},
                      _ctx(dry_run=True))
    assert forced.output["dry_run"] and not (lab.root / "never").exists()
    assert [r.id for r in list_backups(lab.catalog, data_source="bk_physical")][0] == pending.id
