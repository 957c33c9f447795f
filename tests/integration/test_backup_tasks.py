"""The backup DAGs' task functions, end to end: back up twice, verify, expire by policy, freshness."""

from __future__ import annotations

import pytest

from disaster_recovery.backups import tasks
from disaster_recovery.backups.inventory import list_backups
from disaster_recovery.backups.readback import backup_storage
from disaster_recovery.backups.sources import SourceValidationError
from disaster_recovery.catalog.repository import Catalog
from tests.integration.backup_support import (
    KEY_CONN,
    key_conn_json,
    new_key,
    pg_conn_json,
    source_doc,
    storage_root,
    write_sources_file,
)
from tests.support import drop_cluster, make_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(catalog_cluster_db, tmp_path_factory):
    cluster, dbname = catalog_cluster_db
    source = make_cluster("tasks-src")
    source.create_database("app")
    source.query("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)", dbname="app")
    _, b64 = new_key()
    keep_one = source_doc(name="kept", conn_id="tasks_src", method="logical", root=storage_root("tasks"))
    keep_one["retention"] = {"keep_last": 1}
    never = source_doc(name="never", conn_id="tasks_src", method="logical", root=storage_root("never"))
    sources = write_sources_file(tmp_path_factory.mktemp("sources") / "backups.yaml", [keep_one, never])
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_DR_CATALOG", cluster.uri(dbname))
    mp.setenv("AIRFLOW_CONN_TASKS_SRC", pg_conn_json(source, "app"))
    mp.setenv(f"AIRFLOW_CONN_{KEY_CONN.upper()}", key_conn_json(b64))
    mp.setenv("DR_BACKUPS_FILE", str(sources))
    catalog = Catalog.from_dsn(cluster.dsn(dbname))
    yield catalog
    catalog.dispose()
    mp.undo()
    drop_cluster(source)


def test_backup_verify_expire_and_freshness(env):
    first = tasks.backup("kept")["backup_id"]
    second = tasks.backup("kept")["backup_id"]
    verified = tasks.verify(source_names=["kept"])
    assert verified["verified"] == 2
    assert {r.verification_status for r in list_backups(env, data_source="kept")} == {"verified"}
    old = next(r for r in list_backups(env, data_source="kept") if str(r.id) == first)
    storage, relpath = backup_storage(old)
    assert storage.exists(relpath)

    dry = tasks.expire("kept", dry_run=True)
    assert dry["expired"] == [first] and storage.exists(relpath)
    done = tasks.expire("kept")
    assert done["kept"] == [second] and done["expired"] == [first]
    assert not storage.exists(relpath)
    statuses = {str(r.id): r.verification_status for r in list_backups(env, data_source="kept")}
    assert statuses == {first: "expired", second: "verified"}

    alerts = tasks.check_freshness()["alerts"]
    assert len(alerts) == 1 and "never" in alerts[0]


def test_dr_restore_task_restores_the_newest_verified_backup(env, monkeypatch):
    """dr_restore's task: its run parameters become a backup_restore config; a dry run changes nothing."""
    from disaster_recovery.backups.restore_task import restore_from_params
    from disaster_recovery.steps.base import StepFailed

    if not list_backups(env, data_source="kept"):
        tasks.backup("kept")
        tasks.verify(source_names=["kept"])
    target = make_cluster("tasks-restore")
    try:
        target.create_database("restored")
        monkeypatch.setenv("AIRFLOW_CONN_RESTORE_TARGET", pg_conn_json(target, "restored"))
        params = {"source": "kept", "conn_id": "restore_target", "dry_run": True}
        restore_from_params(params)
        assert target.query("SELECT count(*) FROM pg_tables WHERE tablename = 't'", dbname="restored") == [(0,)]
        out = restore_from_params({**params, "dry_run": False})
        assert out["row_counts_match"] is True
        assert target.query("SELECT count(*) FROM t", dbname="restored") == [(1000,)]
        with pytest.raises(StepFailed, match="(?i)not empty|holds|replace"):
            restore_from_params({**params, "dry_run": False})
    finally:
        drop_cluster(target)


def test_a_missing_source_is_named(env):
    with pytest.raises(SourceValidationError, match="source 'nope'.*no valid source of this name"):
        tasks.backup("nope")


def test_backup_to_s3_through_the_s3hook_verified_and_restorable(env, tmp_path_factory, monkeypatch):
    """The whole path to S3: pg_dump -> zstd -> AES-GCM -> S3Hook multipart (moto on loopback) -> verify."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from tests.moto_server import aws_connection_json, moto_server

    with moto_server() as server:
        monkeypatch.setenv("AIRFLOW_CONN_AWS_TEST", aws_connection_json(server.endpoint_url))
        hook = S3Hook(aws_conn_id="aws_test")
        assert hook.conn_config.endpoint_url == server.endpoint_url  # really the local server
        hook.create_bucket(bucket_name="dr-backups")
        doc = source_doc(name="s3src", conn_id="tasks_src", method="logical", root=storage_root("unused"))
        doc["storage"] = {"kind": "s3", "bucket": "dr-backups", "prefix": "lab", "aws_conn_id": "aws_test"}
        doc["storage_class"] = "infrequent_access"
        sources = write_sources_file(tmp_path_factory.mktemp("s3") / "backups.yaml", [doc])
        monkeypatch.setenv("DR_BACKUPS_FILE", str(sources))

        backup_id = tasks.backup("s3src")["backup_id"]
        (record,) = list_backups(env, data_source="s3src")
        assert record.backup_location.startswith("s3://dr-backups/lab/")
        key = record.backup_location.removeprefix("s3://dr-backups/")
        head = hook.get_conn().head_object(Bucket="dr-backups", Key=key)
        assert head["StorageClass"] == "STANDARD_IA"
        assert head["ContentLength"] == record.compressed_size_bytes
        assert tasks.verify(source_names=["s3src"])["verified"] == 1
        (record,) = list_backups(env, data_source="s3src")
        assert str(record.id) == backup_id and record.verification_status == "verified" and record.restore_tested
