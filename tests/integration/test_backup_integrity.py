"""What must fail loudly: a tampered byte in a stored backup, a wrong key, a producer that fails midway
(left with no object, a failed row, and older backups untouched), and incremental backups on PostgreSQL 15.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from disaster_recovery.backups.crypto import WrongKey
from disaster_recovery.backups.engines import UnsupportedBackup
from disaster_recovery.backups.inventory import get_backup
from disaster_recovery.backups.keys import EncryptionKey
from disaster_recovery.backups.restore import ClusterDestination, RestoreRefused, choose_backup, restore_backup
from disaster_recovery.backups.runner import BackupFailed, take_backup
from disaster_recovery.backups.verification import verify_backup
from disaster_recovery.postgres.cluster import free_port
from disaster_recovery.steps.backup_restore import BackupRestoreStep
from disaster_recovery.steps.base import StepContext, StepFailed
from tests.integration.backup_support import (
    all_files,
    backup_env,
    key_conn_json,
    make_source,
    new_key,
    source_doc,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab(catalog_cluster_db):
    def docs(root, conn_id):
        return {
            "physical": source_doc(name="int_physical", conn_id=conn_id, method="physical", root=root),
            "logical": source_doc(name="int_logical", conn_id=conn_id, method="logical", root=root),
        }

    with backup_env("bk_int", catalog_cluster_db, docs) as env:
        env.physical, env.logical = env.sources["physical"], env.sources["logical"]
        yield env


def _path(record) -> Path:
    return Path(record.backup_location.removeprefix("file://"))


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def test_a_flipped_byte_anywhere_is_corrupted_and_restore_refuses(lab, rng):
    record = take_backup(source=lab.physical, catalog=lab.catalog).record
    path = _path(record)
    size = path.stat().st_size
    # First byte, inside the header, the last byte, and one random offset: each caught without a restore.
    for offset in (0, 20, size - 1, random.Random(4).randrange(size)):
        _flip(path, offset)
        result = verify_backup(catalog=lab.catalog, backup_id=record.id, key=lab.key, restore_test=False)
        assert result.status == "corrupted", (offset, result)
        assert "corrupt" in result.error or "checksum" in result.error
        _flip(path, offset)  # put it back
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record.backup_checksum

    # The full verification (restore test included) of a backup tampered at a random offset (seeded: a
    # failure prints DR_TEST_SEED, which replays it).
    offset = rng.randrange(size)
    _flip(path, offset)
    result = verify_backup(catalog=lab.catalog, backup_id=record.id, key=lab.key)
    assert result.status == "corrupted", f"offset {offset}: {result}"
    row = get_backup(lab.catalog, record.id)
    assert row.verification_status == "corrupted" and row.verified_at is not None
    assert row.metadata["verification"]["status"] == "corrupted"
    with pytest.raises(RestoreRefused, match="corrupted"):
        choose_backup(lab.catalog, source="int_physical", backup_id=str(record.id))
    target = lab.root / "never-restored"
    with pytest.raises(RestoreRefused, match="corrupted"):
        restore_backup(record=row, key=lab.key, destination=ClusterDestination(target, free_port()),
                       force_unverified=True)
    with pytest.raises(StepFailed, match="corrupted"):
        BackupRestoreStep().run({"source": "int_physical", "backup_id": str(record.id), "force_unverified": True,
                                 "target": {"data_directory": str(target), "port": free_port()}},
                                StepContext(plan_name="p", step_name="s"))
    assert not target.exists()


def test_a_wrong_key_is_a_clear_error_and_changes_nothing(lab):
    record = take_backup(source=lab.logical, catalog=lab.catalog).record
    other_material = EncryptionKey(key_id=lab.key.key_id, key=bytes(32))
    with pytest.raises(WrongKey, match="not the same key material"):
        verify_backup(catalog=lab.catalog, backup_id=record.id, key=other_material)
    other_id, _ = new_key("another-key")
    with pytest.raises(WrongKey, match="sealed with key 'test-key-1', but key 'another-key' was given"):
        verify_backup(catalog=lab.catalog, backup_id=record.id, key=other_id)
    assert get_backup(lab.catalog, record.id).verification_status == "pending"
    assert verify_backup(catalog=lab.catalog, backup_id=record.id, key=lab.key).status == "verified"
    # The step resolves the key from the Airflow connection: point that at another key.
    _, wrong_b64 = new_key()
    lab.mp.setenv("AIRFLOW_CONN_DR_BACKUP_KEY", key_conn_json(wrong_b64))
    try:
        with pytest.raises(StepFailed, match="wrong key"):
            BackupRestoreStep().run(
                {"source": "int_logical", "replace_existing": True,
                 "target": {"conn_id": "bk_int_source", "database": "postgres"}},
                StepContext(plan_name="p", step_name="s", dry_run=True),
            )
    finally:
        lab.mp.setenv("AIRFLOW_CONN_DR_BACKUP_KEY", key_conn_json(lab.b64))


def _corrupt_a_table(src) -> None:
    """A table whose block 50 fails its checksum: pg_basebackup and pg_dump stream the data before it, then fail."""
    src.query("CREATE TABLE doomed AS SELECT g AS id, repeat('x', 200) AS filler FROM generate_series(1, 20000) g")
    src.query("CHECKPOINT")
    relpath = src.query("SELECT pg_relation_filepath('doomed')")[0][0]
    src.stop()
    with open(src.data_dir / relpath, "r+b") as f:
        f.seek(8192 * 50 + 4000)
        f.write(b"\xff" * 16)
    src.start()


def test_a_producer_failing_midway_leaves_no_object_and_older_backups_intact(lab):
    earlier = {m: take_backup(source=s, catalog=lab.catalog).record for m, s in
               (("physical", lab.physical), ("logical", lab.logical))}
    before = all_files(lab.root)
    digests = {m: hashlib.sha256(_path(r).read_bytes()).hexdigest() for m, r in earlier.items()}
    _corrupt_a_table(lab.src)
    try:
        for method, source, message in (("physical", lab.physical, "checksum error"),
                                        ("logical", lab.logical, "invalid page")):
            with pytest.raises(BackupFailed, match=message) as failure:
                take_backup(source=source, catalog=lab.catalog)
            failed = failure.value.record
            assert failed.verification_status == "failed" and failed.backup_checksum is None
            assert failed.metadata["phase"] == "backup_failed" and message in failed.metadata["error"]
            assert not Path(failed.backup_location.removeprefix("file://")).exists()
            assert all_files(lab.root) == before  # no object, no temp file
            again = get_backup(lab.catalog, earlier[method].id)
            assert again.verification_status == "pending" and again.backup_checksum == earlier[method].backup_checksum
            assert hashlib.sha256(_path(again).read_bytes()).hexdigest() == digests[method]
            assert verify_backup(catalog=lab.catalog, backup_id=failed.id, key=lab.key).status == "failed"
            with pytest.raises(RestoreRefused, match="never completed"):
                choose_backup(lab.catalog, source=source.name, backup_id=str(failed.id), force_unverified=True)
    finally:
        lab.src.query("DROP TABLE doomed")
    assert take_backup(source=lab.physical, catalog=lab.catalog).record.verification_status == "pending"


def test_incremental_backups_are_refused_naming_the_server_version(lab):
    for kind in ("incremental", "differential"):
        source = make_source(name="int_incr", conn_id="bk_int_source", method="physical", root=lab.root,
                             backup_type=kind)
        with pytest.raises(UnsupportedBackup, match=r"need PostgreSQL 17 .* this server runs PostgreSQL 15\.\d+"):
            take_backup(source=source, catalog=lab.catalog)
    assert not (lab.root / "int_incr").exists()
