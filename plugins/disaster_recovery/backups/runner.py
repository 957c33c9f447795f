"""Take one backup of a source: engine → streaming pipeline → storage, and its inventory row.

``take_backup`` is what a ``dr_backup__<source>`` task calls. It opens a REPEATABLE READ snapshot on the
source (facts and row counts), builds the producer, streams it sealed into storage and records a
``pending`` row; on any failure it records a ``failed`` row (the pipeline already left no object) and
raises `BackupFailed`. Older backups are never touched.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from disaster_recovery.backups.engines import (
    CompressionSpec,
    PgEndpoint,
    UnsupportedBackup,
    check_supported,
    logical_full,
    parse_basebackup_log,
    physical_full,
    wal_file_name,
)
from disaster_recovery.backups.inventory import BackupRecord, expires_at_for, record_backup
from disaster_recovery.backups.keys import EncryptionKey, key_from_connection
from disaster_recovery.backups.pipeline import StreamResult, stream_backup
from disaster_recovery.backups.snapshot import SourceSnapshot
from disaster_recovery.backups.storage import storage_from_config
from disaster_recovery.catalog.repository import Catalog

log = logging.getLogger(__name__)

OBJECT_SUFFIX = {"tar": "tar", "pg_dump_custom": "dump"}


class BackupFailed(RuntimeError):
    """The backup did not complete; ``record`` is its ``failed`` inventory row (None if none was written)."""

    def __init__(self, message: str, record: BackupRecord | None = None) -> None:
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class BackupOutcome:
    record: BackupRecord
    sentence: str


def storage_config_for(source) -> dict[str, Any]:
    """The storage config of a ``sources.Source`` (absolute local path; S3 with its storage class)."""
    storage = source.storage
    if storage.kind == "local":
        return {"kind": "local", "path": str(storage.resolve())}
    return {
        "kind": "s3",
        "bucket": storage.bucket,
        "prefix": storage.prefix,
        "aws_conn_id": storage.aws_conn_id,
        "storage_class": str(source.storage_class.value),
    }


def wal_prefix(source_name: str) -> str:
    return f"{source_name}/wal"


def object_path(*, source_name: str, backup_name: str, content: str, compressed: bool, when: dt.datetime) -> str:
    suffix = OBJECT_SUFFIX[content] + (".zst" if compressed else "") + ".drbk"
    return f"{source_name}/base/{when:%Y/%m/%d}/{backup_name}.{suffix}"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def source_endpoint(source) -> PgEndpoint:
    """The server to back up now: the source's connection, or its cluster's primary at this moment."""
    if source.cluster is None:
        return PgEndpoint.from_connection(source.conn_id)
    from disaster_recovery.clusters.access import ClusterAccessError, require_cluster, resolve_role

    try:
        cluster = require_cluster(source.cluster)
        endpoint = PgEndpoint.from_connection(resolve_role(source.cluster, "primary"))
    except ClusterAccessError as exc:
        raise RuntimeError(f"source {source.name!r}: no primary to back up in cluster {source.cluster!r}: {exc}") from exc
    return endpoint.with_dbname(cluster.database) if cluster.database else endpoint


def take_backup(
    *,
    source,
    catalog: Catalog,
    endpoint: PgEndpoint | None = None,
    key: EncryptionKey | None = None,
    logger: logging.Logger | None = None,
) -> BackupOutcome:
    """Back up ``source`` (a ``sources.Source``) once; see the module docstring."""
    logger = logger or log
    endpoint = endpoint or source_endpoint(source)
    key = key or key_from_connection(source.encryption.key_conn_id)
    storage_config = storage_config_for(source)
    storage = storage_from_config(storage_config)
    method = str(source.method.value)
    compression = CompressionSpec.from_source(source)
    started_at = _utcnow()
    backup_name = f"{source.name}-{method}-{source.backup_type.value}-{started_at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
    meta: dict[str, Any] = {"key_id": key.key_id, "storage": storage_config, "started_at": started_at}
    row = {
        "backup_name": backup_name,
        "backup_type": str(source.backup_type.value),
        "data_source": source.name,
        "backup_format": str(source.backup_format.value),
        "encryption_enabled": True,
        "retention_policy": source.retention.document(),
        "created_at": started_at,
        "expires_at": expires_at_for(source.retention.document(), started_at),
        "storage_class": str(source.storage_class.value),
        "access_frequency": str(source.access_frequency.value),
    }
    snap = SourceSnapshot(endpoint=endpoint, include_unlogged=method == "logical")
    relpath = None
    try:
        snap.open(export=method == "logical")
        facts = snap.facts
        check_supported(
            method=method,
            backup_type=str(source.backup_type.value),
            server_version_num=facts["server_version_num"],
            logical_format=str(source.logical_options.format.value) if method == "logical" else "custom",
        )
        if method == "physical":
            producer = physical_full(endpoint=endpoint, compression=compression)
        else:
            producer = logical_full(
                endpoint=endpoint,
                compression=compression,
                server_version_num=facts["server_version_num"],
                snapshot=snap.exported_snapshot,
            )
        relpath = object_path(source_name=source.name, backup_name=backup_name, content=producer.content,
                              compressed=producer.compression.enabled, when=started_at)
        row["compression_type"] = producer.compression.label
        meta.update(_facts_metadata(facts, endpoint=endpoint, producer=producer, relpath=relpath))
        if source.wal_archiving.enabled:
            meta["wal_archived_to"] = storage.location(wal_prefix(source.name))
            if facts.get("archive_mode") == "off":
                note = ("WAL archiving is enabled for this source, but archive_mode is off on the server: no "
                        "point-in-time recovery past this backup until archiving is set up (wal_archive.enable_archiving)")
                meta["wal_archiving_warning"] = note
                logger.warning("backup %s: %s", backup_name, note)
        logger.info("backup %s of %s: %s", backup_name, endpoint.describe(), " ".join(producer.args_for_metadata()))
        for note in producer.notes:
            logger.info("backup %s: %s", backup_name, note)
        snap.start_counting()
        result = stream_backup(producer=producer, writer=storage.open_writer(relpath), key=key, logger=logger)
        finished_at = _utcnow()
        counts = snap.finish_counting()
        exact = method == "logical" or snap.counts_exact()
    except UnsupportedBackup:
        snap.close()
        raise
    except BaseException as exc:
        snap.close()
        message = f"{type(exc).__name__}: {exc}"
        logger.error("backup %s failed: %s", backup_name, message)
        meta.update({"phase": "backup_failed", "error": message[:4000], "failed_at": _utcnow()})
        failed = record_backup(
            catalog,
            **row,
            backup_location=storage.location(relpath or f"{source.name}/base"),
            verification_status="failed",
            backup_metadata=meta,
        )
        raise BackupFailed(f"backup {backup_name} of {source.name} failed: {message}", failed) from exc
    snap.close()
    meta.update(_result_metadata(result, method=method, facts=facts, finished_at=finished_at))
    meta.update(row_counts=counts, row_counts_exact=exact, row_count_error=snap.count_error,
                row_counts_database=facts.get("database"))
    producer_compressed = producer.compression.enabled and not producer.pipeline_compresses
    size, basis = _plain_size(result, method=method, facts=facts, producer_compressed=producer_compressed)
    meta["backup_size_basis"] = basis
    meta["throughput_mb_s"] = round(size / 1e6 / result.duration_seconds, 1) if result.duration_seconds else None
    try:
        record = record_backup(
            catalog,
            **row,
            backup_location=result.stored.location,
            backup_size_bytes=size,
            compressed_size_bytes=result.stored.size_bytes,
            backup_checksum=result.sha256,
            verification_status="pending",
            backup_metadata=meta,
        )
    except BaseException:
        # Not in the inventory, so nothing would ever verify, restore or expire it: do not keep it.
        storage.delete(relpath)
        raise
    sentence = (
        f"Backed up {source.name} ({method}, {size / 1e6:.1f} MB {basis}) into {result.stored.location}: "
        f"{result.stored.size_bytes / 1e6:.1f} MB stored in {result.duration_seconds:.1f} s "
        f"({meta['throughput_mb_s']} MB/s), sha256 {result.sha256[:12]}…, pending verification."
    )
    logger.info("%s", sentence)
    return BackupOutcome(record=record, sentence=sentence)


def _facts_metadata(facts: dict, *, endpoint: PgEndpoint, producer, relpath: str) -> dict:
    return {
        "engine": producer.engine,
        "engine_args": producer.args_for_metadata(),
        "content": producer.content,
        "has_manifest": producer.has_manifest,
        "engine_notes": list(producer.notes),
        "object_path": relpath,
        "source_endpoint": endpoint.describe(),
        "server_version": facts.get("server_version"),
        "server_version_num": facts.get("server_version_num"),
        "system_identifier": facts.get("system_identifier"),
        "bootstrap_superuser": facts.get("bootstrap_superuser"),
        "wal_segment_size": facts.get("wal_segment_size"),
        "database": facts.get("database"),
        "source_wal_lsn_at_start": facts.get("wal_lsn"),
    }


def _result_metadata(result: StreamResult, *, method: str, facts: dict, finished_at: dt.datetime) -> dict:
    meta: dict[str, Any] = {
        "finished_at": finished_at,
        "duration_seconds": round(result.duration_seconds, 3),
        "stored_mb_s": round(result.stored_mb_s, 1),
        "produced_bytes": result.produced_bytes,
        "sealed_bytes": result.sealed_bytes,
        "producer_log": result.producer_log[-2000:],
    }
    if method == "physical":
        wal = parse_basebackup_log(result.producer_log)
        meta.update(wal)
        if wal["start_lsn"] and wal["timeline"]:
            meta["start_wal_file"] = wal_file_name(
                timeline=wal["timeline"], lsn=wal["start_lsn"], segment_size=facts["wal_segment_size"]
            )
            meta["stop_wal_file"] = wal_file_name(
                timeline=wal["timeline"], lsn=wal["stop_lsn"], segment_size=facts["wal_segment_size"]
            )
        # The restored cluster holds every transaction committed before the end-of-backup point.
        meta["consistent_at"] = finished_at
    else:
        meta.update(timeline=facts.get("timeline"), start_lsn=facts.get("wal_lsn"), stop_lsn=facts.get("wal_lsn"))
        # pg_dump ran in the snapshot taken at the start: the dump is the database as of then.
        meta["consistent_at"] = facts.get("server_time")
    return meta


def _plain_size(result: StreamResult, *, method: str, facts: dict, producer_compressed: bool) -> tuple[int, str]:
    """backup_size_bytes and what it measures."""
    if not producer_compressed:
        return result.produced_bytes, "uncompressed stream bytes (exact)"
    if method == "logical":
        return result.produced_bytes, "pg_dump output bytes (compressed by pg_dump)"
    return int(facts.get("cluster_size_bytes") or 0), (
        "sum of pg_database_size at backup start (the exact tar size is recorded at verification)"
    )
