"""What the backup DAGs' tasks do: back up, verify, expire, check freshness. Each returns a sentence.

The decisions are pure (`retention`, `freshness`); the work is `runner`, `verification`, `storage`.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from disaster_recovery.backups.freshness import SourceFreshness, freshness_alerts
from disaster_recovery.backups.inventory import list_backups, newest_verified, update_backup
from disaster_recovery.backups.keys import key_from_connection
from disaster_recovery.backups.readback import backup_storage
from disaster_recovery.backups.retention import BackupInfo, decide_retention, wal_files_to_delete
from disaster_recovery.backups.runner import storage_config_for, take_backup, wal_prefix
from disaster_recovery.backups.sources import DEFAULT_SOURCES_FILE, Source, load_sources
from disaster_recovery.backups.storage import storage_from_config
from disaster_recovery.backups.verification import verify_backup
from disaster_recovery.catalog.repository import Catalog, catalog_from_connection

log = logging.getLogger("disaster_recovery.backups")


def sources_file() -> Path:
    return Path(os.environ.get("DR_BACKUPS_FILE") or DEFAULT_SOURCES_FILE)


def source(name: str) -> Source:
    return load_sources(sources_file()).require(name)


def catalog() -> Catalog:
    return catalog_from_connection(os.environ.get("DR_CATALOG_CONN_ID", "dr_catalog"))


def backup(source_name: str) -> dict:
    """Take one backup; the failed row is recorded by the runner and the task fails."""
    src = source(source_name)
    cat = catalog()
    try:
        outcome = take_backup(source=src, catalog=cat, logger=log)
        return {"backup_id": str(outcome.record.id), "sentence": outcome.sentence}
    finally:
        cat.dispose()


def verify(*, source_names: list[str] | None = None, include_verified: bool = False, limit: int = 10) -> dict:
    """Verify pending backups (newest first); with include_verified, re-verify each source's newest one.

    A backup that is corrupted or fails its restore test fails the task, after every other backup was
    verified, so the run is red and says which.
    """
    cat = catalog()
    sources = load_sources(sources_file()).sources
    names = source_names or sorted(sources)
    results, bad = [], []
    try:
        for name in names:
            src = sources[name]
            todo = list_backups(cat, data_source=name, statuses=("pending",))[:limit]
            if include_verified and (newest := newest_verified(cat, name)) is not None:
                todo.append(newest)
            for record in todo:
                result = verify_backup(
                    catalog=cat, backup_id=str(record.id), key=key_from_connection(src.encryption.key_conn_id),
                    restore_test=src.verify.restore_test, amcheck=src.verify.amcheck, logger=log,
                )
                log.info("%s", result.sentence)
                results.append({"backup_id": result.backup_id, "status": result.status, "sentence": result.sentence})
                if result.status != "verified":
                    bad.append(result.sentence)
    finally:
        cat.dispose()
    if bad:
        raise RuntimeError(f"{len(bad)} backup(s) did not verify: " + " | ".join(bad))
    return {"verified": len(results), "results": results}


def expire(source_name: str, *, dry_run: bool = False) -> dict:
    """Apply the source's retention policy: delete expired backups and the WAL no kept backup needs."""
    src = source(source_name)
    cat = catalog()
    try:
        records = list_backups(cat, data_source=source_name)
        infos = [
            BackupInfo(backup_id=str(r.id), created_at=r.created_at, status=r.verification_status, source=r.data_source)
            for r in records
        ]
        decision = decide_retention(infos, policy=src.retention, now=datetime.now(UTC))
        by_id = {str(r.id): r for r in records}
        deleted: list[str] = []  # what this run expired (a row expired by an earlier run is not counted again)
        for backup_id in decision.expire:
            record = by_id[backup_id]
            storage, relpath = backup_storage(record) if record.stored else (None, None)
            leftover = storage is not None and storage.exists(relpath)  # a failed backup stored nothing
            if record.verification_status == "expired" and not leftover:
                continue
            deleted.append(backup_id)
            if dry_run:
                continue
            if leftover:
                storage.delete(relpath)
            if record.verification_status != "expired":
                update_backup(cat, backup_id, metadata={"expired_reason": decision.reasons.get(backup_id)},
                              verification_status="expired")
        starts = [
            (by_id[i].backup_metadata or {}).get("start_wal_file")
            for i in decision.keep
            if by_id[i].backup_format == "binary"
        ]
        wal_deleted: tuple[str, ...] = ()
        if src.wal_archiving.enabled and starts and all(starts):
            storage = storage_from_config(storage_config_for(src))
            prefix = wal_prefix(src.name)
            listing = storage.list(prefix)
            wal_deleted = wal_files_to_delete(listing, starts)
            if not dry_run:
                for relpath in wal_deleted:
                    storage.delete(relpath)
        sentence = (
            f"{'Dry run: ' if dry_run else ''}{source_name}: kept {len(decision.keep)}, "
            f"expired {len(deleted)} backup(s), {len(wal_deleted)} WAL file(s) no kept backup needs. "
            f"{decision.sentence}"
        )
        log.info("%s", sentence)
        return {"kept": list(decision.keep), "expired": deleted,
                "wal_deleted": len(wal_deleted), "sentence": sentence}
    finally:
        cat.dispose()


def check_freshness(source_names: list[str] | None = None) -> dict:
    """Alert (log + the source's notification channels) when the newest verified backup is too old."""
    from disaster_recovery import notify

    sources = load_sources(sources_file()).sources
    names = source_names or sorted(sources)
    cat = catalog()
    try:
        states = []
        for name in names:
            newest = newest_verified(cat, name)
            states.append(SourceFreshness(source=name, newest_verified_at=newest.verified_at if newest else None,
                                          max_age=sources[name].freshness.max_age))
    finally:
        cat.dispose()
    alerts = freshness_alerts(states, datetime.now(UTC))
    for alert in alerts:
        log.warning("%s", alert.sentence)
        channels = sources[alert.source].notifications.channels
        if channels:
            try:
                notify.send_notice(channels, context={"plan_name": f"backups of {alert.source}",
                                                      "event": "backup_stale", "status": "stale"},
                                   message=alert.sentence)
            except Exception as exc:  # the alert is logged whatever happens to the notice
                log.error("could not send the freshness alert for %s: %s", alert.source, exc)
    return {"alerts": [a.sentence for a in alerts]}
