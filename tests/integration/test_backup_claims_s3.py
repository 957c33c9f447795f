"""README: storage "a local folder or S3", WAL archiving into the backup storage, point-in-time recovery and
retention — all on S3, through the amazon provider's S3Hook against a real moto server on loopback.

The primary's archive_command (run by the server as its OS user, with the client settings resolved from
the AWS connection in its config: no Airflow import) pushes sealed WAL into the bucket; the physical
backups go there too. Retention expires the older backup in S3 and deletes the S3 WAL no kept backup
needs, and the point is restored from the kept backup through what is left of the S3 archive.
"""

from __future__ import annotations

import json
import shutil

import pytest

from disaster_recovery.backups import tasks
from disaster_recovery.backups.inventory import get_backup
from disaster_recovery.backups.readback import backup_storage
from disaster_recovery.backups.restore import ClusterDestination, restore_backup
from disaster_recovery.backups.restored import RestoredCluster
from disaster_recovery.backups.retention import wal_segment_of
from disaster_recovery.backups.runner import storage_config_for, take_backup
from disaster_recovery.backups.storage import S3Storage, storage_from_config
from disaster_recovery.backups.verification import verify_backup
from disaster_recovery.postgres.cluster import free_port
from tests.integration.backup_support import backup_env, source_doc
from tests.integration.claims_support import (
    archive_into,
    archived,
    insert,
    ledger,
    moment,
    segments,
    server_airflow_home,
    switch_and_wait,
)
from tests.moto_server import aws_connection_json, moto_server

pytestmark = pytest.mark.integration
SOURCE = "claims_s3"
AWS_CONN = "aws_claims"
BUCKET = "dr-claims"


@pytest.fixture(scope="module")
def env(catalog_cluster_db):
    with moto_server() as server:
        aws = aws_connection_json(server.endpoint_url)
        mp = pytest.MonkeyPatch()
        mp.setenv(f"AIRFLOW_CONN_{AWS_CONN.upper()}", aws)
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        S3Hook(aws_conn_id=AWS_CONN).create_bucket(bucket_name=BUCKET)

        def docs(root, conn_id):
            doc = source_doc(name=SOURCE, conn_id=conn_id, method="physical", root=root, wal=True)
            doc["storage"] = {"kind": "s3", "bucket": BUCKET, "prefix": "dr", "aws_conn_id": AWS_CONN}
            doc["retention"] = {"keep_last": 1}
            return {"main": doc}

        try:
            with backup_env("claims_s3", catalog_cluster_db, docs) as env:
                env.endpoint = server.endpoint_url
                env.storage = storage_from_config(storage_config_for(env.sources["main"]))
                assert isinstance(env.storage, S3Storage)
                # The archive command runs outside Airflow, for every segment: the config carries the client
                # settings resolved from the connection. An AIRFLOW_HOME for it stays empty if it never
                # imports Airflow (which would make its logs folder there).
                env.airflow_home = server_airflow_home("claims-s3")
                env.config = archive_into(env.src, source=SOURCE, key=env.key,
                                          storage_config=storage_config_for(env.sources["main"]),
                                          environment={"AIRFLOW_HOME": str(env.airflow_home)})
                yield env
                shutil.rmtree(env.config.parent, ignore_errors=True)
        finally:
            mp.undo()
            shutil.rmtree(server_airflow_home("claims-s3"), ignore_errors=True)


def restore_point(env, record, point, name: str) -> tuple:
    restored = RestoredCluster(data_dir=env.root / name, port=free_port(), password="", superuser="postgres")
    try:
        result = restore_backup(record=record, key=env.key, point_in_time=point,
                                destination=ClusterDestination(restored.data_dir, restored.port))
        assert result.recovered_to == point
        return ledger(restored)
    finally:
        restored.destroy()


def test_the_archive_command_reaches_s3_without_airflow(env):
    client = json.loads(env.config.read_text())["storage"]["client"]
    assert client == {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
                      "region_name": "us-east-1", "endpoint_url": env.endpoint}
    assert env.config.stat().st_mode & 0o077 == 0  # it holds the secret key: the server user's only
    last = switch_and_wait(env.src)
    assert last in archived(env.storage, SOURCE)
    assert list(env.airflow_home.iterdir()) == []


def test_wal_archived_to_s3_restores_a_point_in_time_and_expiry_cleans_s3(env):
    old = take_backup(source=env.sources["main"], catalog=env.catalog).record
    insert(env.src, range(1, 101), note="for the old backup")
    kept = take_backup(source=env.sources["main"], catalog=env.catalog).record
    assert verify_backup(catalog=env.catalog, backup_id=kept.id, key=env.key).status == "verified"
    kept = get_backup(env.catalog, kept.id)
    insert(env.src, range(101, 201), note="after the kept backup")
    expected, point = ledger(env.src), moment(env.src)
    insert(env.src, range(201, 251), note="after the point in time")
    last = switch_and_wait(env.src)

    # Everything is in the bucket, sealed: the backups and the WAL, nothing on the local disk.
    assert kept.backup_location.startswith(f"s3://{BUCKET}/dr/{SOURCE}/base/")
    assert kept.metadata["wal_archived_to"] == f"s3://{BUCKET}/dr/{SOURCE}/wal"
    names = archived(env.storage, SOURCE)
    assert last in names and kept.metadata["start_wal_file"] in names
    assert env.storage.stored_storage_class(f"{SOURCE}/wal/00000001/{last}.zst.drbk") == "STANDARD"
    assert not (env.root / SOURCE).exists()


    start = kept.metadata["start_wal_file"]
    older = [n for n in names if wal_segment_of(n) < start]
    assert older and old.metadata["start_wal_file"] in older
    old_storage, old_relpath = backup_storage(old)
    assert isinstance(old_storage, S3Storage) and old_storage.exists(old_relpath)
    done = tasks.expire(SOURCE)
    assert (done["kept"], done["expired"], done["wal_deleted"]) == ([str(kept.id)], [str(old.id)], len(older))
    assert not old_storage.exists(old_relpath)
    assert get_backup(env.catalog, old.id).verification_status == "expired"
    remaining = archived(env.storage, SOURCE)
    assert remaining == sorted(set(names) - set(older))
    assert segments(remaining)[0] == start and last in remaining

    assert restore_point(env, kept, point, "from-s3-after-expiry") == expected == (200, 1, 200)
    assert list(env.airflow_home.iterdir()) == []
