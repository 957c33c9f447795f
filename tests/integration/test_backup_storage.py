"""Backup object storage: a local folder, and S3 through the amazon provider's S3Hook against a real moto
server process on loopback. Commit is atomic; abort (or an exception) leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import re
import uuid

import pytest
from botocore.exceptions import ClientError

from disaster_recovery.backups.crypto import BackupCorrupted, SealedReader, SealingWriter, open_sealed
from disaster_recovery.backups.keys import EncryptionKey, generate_key, key_from_base64
from disaster_recovery.backups.storage import (
    S3_STORAGE_CLASSES,
    LocalStorage,
    ObjectExists,
    ObjectNotFound,
    Progress,
    ProgressSink,
    S3Storage,
    StoredObject,
    storage_for_location,
    storage_from_config,
)
from tests.moto_server import aws_connection_json, moto_server

pytestmark = pytest.mark.integration

KEY = EncryptionKey(key_id="storage-test", key=bytes(range(32)))
MiB = 1024 * 1024


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ---------------------------------------------------------------- local


def test_local_commit_is_atomic_and_durable(tmp_path):
    storage = LocalStorage(tmp_path / "repo")
    writer = storage.open_writer("wedsync/2026/11/base.drbk")
    writer.write(b"abc")
    writer.write(memoryview(b"def"))
    # Before commit only a hidden temp file exists, and nothing is listed.
    assert storage.list() == [] and not storage.exists("wedsync/2026/11/base.drbk")
    hidden = [p.name for p in (tmp_path / "repo/wedsync/2026/11").iterdir()]
    assert len(hidden) == 1 and hidden[0].startswith(".base.drbk.")
    stored = writer.commit()
    target = tmp_path / "repo/wedsync/2026/11/base.drbk"
    assert stored == StoredObject(location=target.as_uri(), size_bytes=6)
    assert stored.location.startswith("file:///")
    assert target.read_bytes() == b"abcdef"
    assert [p.name for p in target.parent.iterdir()] == ["base.drbk"]
    assert storage.list() == ["wedsync/2026/11/base.drbk"] and storage.list("wedsync/2026/") == storage.list()
    assert storage.list("other") == [] and storage.size("wedsync/2026/11/base.drbk") == 6
    with storage.open_reader("wedsync/2026/11/base.drbk") as reader:
        assert reader.read() == b"abcdef"


def test_local_abort_and_exception_leave_nothing_behind(tmp_path):
    root = tmp_path / "repo"
    storage = LocalStorage(root)
    writer = storage.open_writer("a/b/c/one.drbk")
    writer.write(os.urandom(1000))
    writer.abort()
    writer.abort()  # idempotent
    assert _files(root) == []
    with pytest.raises(RuntimeError, match="producer died"), storage.open_writer("a/b/two.drbk") as writer:
        writer.write(os.urandom(1000))
        raise RuntimeError("producer died")
    assert _files(root) == []
    # A writer left without commit is aborted too.
    with storage.open_writer("a/three.drbk") as writer:
        writer.write(b"x")
    assert _files(root) == []
    # An older object in the same folder is never touched by a failed write.
    with storage.open_writer("a/old.drbk") as writer:
        writer.write(b"old")
        writer.commit()
    with pytest.raises(RuntimeError), storage.open_writer("a/new.drbk") as writer:
        writer.write(b"new")
        raise RuntimeError
    assert _files(root) == ["a", "a/old.drbk"]


def test_local_commit_never_replaces_unless_asked(tmp_path):
    storage = LocalStorage(tmp_path)
    with storage.open_writer("x.drbk") as writer:
        writer.write(b"first")
        writer.commit()
    writer = storage.open_writer("x.drbk")
    writer.write(b"second")
    with pytest.raises(ObjectExists, match="x.drbk"):
        writer.commit()
    assert (tmp_path / "x.drbk").read_bytes() == b"first" and _files(tmp_path) == ["x.drbk"]
    with storage.open_writer("x.drbk", overwrite=True) as writer:
        writer.write(b"third")
        writer.commit()
    assert (tmp_path / "x.drbk").read_bytes() == b"third"


def test_local_delete_prunes_empty_folders_and_bad_paths_are_refused(tmp_path):
    storage = LocalStorage(tmp_path)
    for name in ("s/2026/a.drbk", "s/2026/b.drbk", "s/wal/000000010000000000000001"):
        with storage.open_writer(name) as writer:
            writer.write(name.encode())
            writer.commit()
    storage.delete("s/2026/a.drbk")
    storage.delete("s/2026/a.drbk")  # already gone: no error
    assert storage.list("s/") == ["s/2026/b.drbk", "s/wal/000000010000000000000001"]
    storage.delete("s/2026/b.drbk")
    assert not (tmp_path / "s/2026").exists() and (tmp_path / "s/wal").is_dir()
    with pytest.raises(ObjectNotFound):
        storage.open_reader("s/2026/b.drbk")
    for bad in ("", "/abs", "../up", "a/../b", "a//b", ".hidden", "a/.tmp"):
        with pytest.raises(ValueError, match=rf"^object path .*{re.escape(repr(bad))}"):
            storage.open_writer(bad)
    assert _files(tmp_path) == ["s", "s/wal", "s/wal/000000010000000000000001"]


def test_sealed_backup_through_local_storage(tmp_path):
    storage = storage_from_config({"kind": "local", "path": str(tmp_path / "repo")})
    data = random.Random(3).randbytes(9 * MiB + 123)
    with storage.open_writer("src/full.drbk") as obj:
        sealer = SealingWriter(obj, key=KEY)
        sealer.write(data)
        sealer.close()
        stored = obj.commit()
    assert stored.size_bytes == sealer.ciphertext_bytes == (tmp_path / "repo/src/full.drbk").stat().st_size
    same, relpath = storage_for_location(stored.location)
    with same.open_reader(relpath) as raw:
        assert hashlib.sha256(raw.read()).hexdigest() == sealer.sha256_hex
    with storage.open_reader("src/full.drbk") as raw:
        assert SealedReader(raw, key=KEY, expected_sha256=sealer.sha256_hex).read() == data
    # one flipped byte on disk: caught
    path = tmp_path / "repo/src/full.drbk"
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    path.write_bytes(bytes(blob))
    with storage.open_reader("src/full.drbk") as raw, pytest.raises(BackupCorrupted, match="chunk 1 at byte offset"):
        for _ in open_sealed(raw, key=KEY):
            pass


def test_storage_from_config_and_locations(tmp_path):
    s3 = storage_from_config(
        {"kind": "s3", "bucket": "dr-bucket", "prefix": "/backups/", "aws_conn_id": "aws_x", "storage_class": "archive"}
    )
    assert isinstance(s3, S3Storage) and s3.s3_storage_class == "GLACIER_IR" and s3.aws_conn_id == "aws_x"
    assert s3.location("src/a.drbk") == "s3://dr-bucket/backups/src/a.drbk"
    back, relpath = storage_for_location("s3://dr-bucket/backups/src/a.drbk")
    assert back.location(relpath) == "s3://dr-bucket/backups/src/a.drbk"
    local = storage_from_config({"kind": "local", "path": str(tmp_path / "with space")})
    assert local.location("a b.drbk") == (tmp_path / "with space" / "a b.drbk").as_uri()
    back, relpath = storage_for_location(local.location("a b.drbk"))
    assert back.root / relpath == tmp_path / "with space" / "a b.drbk"
    assert S3_STORAGE_CLASSES == {
        "standard": "STANDARD",
        "infrequent_access": "STANDARD_IA",
        "archive": "GLACIER_IR",
        "deep_archive": "DEEP_ARCHIVE",
    }
    from disaster_recovery.catalog.tables import STORAGE_CLASS

    assert set(S3_STORAGE_CLASSES) == set(STORAGE_CLASS)
    for bad, reason in (
        ({"kind": "ftp"}, "unknown storage kind 'ftp'"),
        ({"kind": "local"}, "local storage needs a 'path'"),
        ({"kind": "s3"}, "s3 storage needs a 'bucket'"),
        ({"kind": "s3", "bucket": "b", "storage_class": "x"}, "unknown storage class 'x'"),
    ):
        with pytest.raises(ValueError, match=re.escape(reason)):
            storage_from_config(bad)


def test_progress_logs_bytes_and_rate(caplog):
    now = [100.0]
    progress = Progress("backup wedsync", interval=5.0, clock=lambda: now[0])
    sink = ProgressSink(io.BytesIO(), progress)
    with caplog.at_level(logging.INFO, logger="disaster_recovery.backups.storage"):
        sink.write(b"x" * MiB)
        now[0] += 2.0
        sink.write(b"x" * MiB)
        assert caplog.messages == []
        now[0] += 3.0
        sink.write(b"x" * 3 * MiB)
        assert caplog.messages == ["backup wedsync: 5.0 MiB in 5.0 s, 1.0 MB/s"]
        assert progress.finish() == "backup wedsync: 5.0 MiB in 5.0 s, 1.0 MB/s"
    assert progress.bytes == 5 * MiB


# ---------------------------------------------------------------- S3 through S3Hook and a moto server process


@pytest.fixture(scope="module")
def aws_test_conn():
    """A moto server process for this module and the Airflow connection ``aws_test`` pointing at it."""
    with moto_server() as server:
        previous = os.environ.get("AIRFLOW_CONN_AWS_TEST")
        os.environ["AIRFLOW_CONN_AWS_TEST"] = aws_connection_json(server.endpoint_url)
        try:
            yield server
        finally:
            if previous is None:
                os.environ.pop("AIRFLOW_CONN_AWS_TEST", None)
            else:
                os.environ["AIRFLOW_CONN_AWS_TEST"] = previous


@pytest.fixture
def bucket(aws_test_conn) -> str:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    name = f"dr-test-{uuid.uuid4().hex[:12]}"
    hook = S3Hook(aws_conn_id="aws_test")
    assert hook.conn_config.endpoint_url == aws_test_conn.endpoint_url  # really the local server
    hook.create_bucket(bucket_name=name)
    return name


def test_s3_multipart_sealed_round_trip_with_storage_class(bucket):
    storage = storage_from_config(
        {
            "kind": "s3",
            "bucket": bucket,
            "prefix": "backups",
            "aws_conn_id": "aws_test",
            "storage_class": "infrequent_access",
        }
    )
    data = random.Random(9).randbytes(40 * MiB + 12345)
    with storage.open_writer("wedsync/full.drbk") as obj:
        sealer = SealingWriter(obj, key=KEY)
        view = memoryview(data)
        for pos in range(0, len(data), 3 * MiB):
            sealer.write(view[pos : pos + 3 * MiB])
        sealer.close()
        assert obj.upload_id is not None  # went multipart
        assert storage.pending_uploads() == ["wedsync/full.drbk"]
        assert not storage.exists("wedsync/full.drbk")  # invisible until commit
        stored = obj.commit()
    assert stored == StoredObject(
        location=f"s3://{bucket}/backups/wedsync/full.drbk", size_bytes=sealer.ciphertext_bytes
    )
    assert obj.size_bytes == sealer.ciphertext_bytes > 40 * MiB

    client = storage.client
    head = client.head_object(Bucket=bucket, Key="backups/wedsync/full.drbk")
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ContentLength"] == stored.size_bytes
    assert head["ETag"].strip('"').endswith("-3")  # three parts of >= 16 MiB
    assert storage.pending_uploads() == []
    assert storage.list() == ["wedsync/full.drbk"] and storage.list("wedsync/") == ["wedsync/full.drbk"]
    assert storage.size("wedsync/full.drbk") == stored.size_bytes

    reader = SealedReader(storage.open_reader("wedsync/full.drbk"), key=KEY, expected_sha256=sealer.sha256_hex)
    assert reader.read() == data
    assert reader.sha256_hex == sealer.sha256_hex

    # A second write to the same name is refused and leaves the object and no upload behind.
    again = storage.open_writer("wedsync/full.drbk")
    again.write(os.urandom(17 * MiB))
    with pytest.raises(ObjectExists):
        again.commit()
    assert storage.pending_uploads() == [] and storage.size("wedsync/full.drbk") == stored.size_bytes

    storage.delete("wedsync/full.drbk")
    assert storage.list() == [] and not storage.exists("wedsync/full.drbk")


@pytest.mark.parametrize("storage_class", ["standard", "archive"])
def test_s3_small_object_is_a_single_put_with_storage_class(bucket, storage_class):
    storage = S3Storage(bucket=bucket, prefix="", aws_conn_id="aws_test", storage_class=storage_class)
    key = key_from_base64(generate_key())
    with storage.open_writer("wal/000000010000000000000001") as obj:
        with SealingWriter(obj, key=key) as sealer:
            sealer.write(b"wal segment" * 1000)
        stored = obj.commit()
        assert obj.upload_id is None
    assert stored.location == f"s3://{bucket}/wal/000000010000000000000001"
    assert storage.stored_storage_class("wal/000000010000000000000001") == S3_STORAGE_CLASSES[storage_class]
    other, relpath = storage_for_location(stored.location, aws_conn_id="aws_test")
    with other.open_reader(relpath) as raw:
        assert b"".join(open_sealed(raw, key=key)) == b"wal segment" * 1000


def test_s3_abort_leaves_no_object_and_no_pending_upload(bucket):
    storage = S3Storage(bucket=bucket, prefix="p", aws_conn_id="aws_test", storage_class="deep_archive")
    obj = storage.open_writer("src/failed.drbk")
    obj.write(os.urandom(20 * MiB))
    assert obj.upload_id is not None and storage.pending_uploads() == ["src/failed.drbk"]
    obj.abort()
    obj.abort()
    assert storage.pending_uploads() == [] and storage.list() == []

    with pytest.raises(RuntimeError, match="pg_basebackup died"), storage.open_writer("src/failed2.drbk") as obj:
        sealer = SealingWriter(obj, key=KEY)
        sealer.write(os.urandom(35 * MiB))
        raise RuntimeError("pg_basebackup died")
    assert storage.pending_uploads() == [] and storage.list() == []
    assert not storage.exists("src/failed2.drbk")
    with pytest.raises(ObjectNotFound):
        storage.open_reader("src/failed2.drbk")

    # small object aborted before any upload: nothing was ever sent
    with pytest.raises(RuntimeError), storage.open_writer("src/small.drbk") as obj:
        obj.write(b"abc")
        raise RuntimeError
    assert storage.list() == [] and storage.pending_uploads() == []


def test_s3_failure_to_start_an_upload_is_raised_and_leaves_nothing(bucket):
    missing = S3Storage(bucket=f"{bucket}-missing", aws_conn_id="aws_test")
    with pytest.raises(ClientError, match="NoSuchBucket"), missing.open_writer("src/x.drbk") as obj:
        obj.write(os.urandom(17 * MiB))
    storage = S3Storage(bucket=bucket, aws_conn_id="aws_test")
    assert storage.list() == [] and storage.pending_uploads() == []
