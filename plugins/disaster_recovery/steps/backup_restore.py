"""``backup_restore``: restore a backup of a data source into a target, optionally to a point in time.

The source (``include/backups.yaml``, or ``$DR_BACKUPS_FILE``) says where its backups are stored and
which connection holds the key; the catalog (``$DR_CATALOG_CONN_ID``, default ``dr_catalog``) says which
backups exist. The backup is ``backup_id``, else the newest verified one (that ended before
``point_in_time``). Output: backup id, restored bytes, duration, the moment the data is exact to
(``recovered_to``) and the achieved RPO. A dry run checks the preconditions only (backup restorable,
key opens it, target empty or replace_existing, port free, WAL archived for a point in time).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from disaster_recovery.backups.crypto import SealError
from disaster_recovery.backups.engines import PgEndpoint
from disaster_recovery.backups.keys import KeyConfigError, key_from_connection
from disaster_recovery.backups.readback import BackupIntegrityError
from disaster_recovery.backups.restore import (
    ClusterDestination,
    DatabaseDestination,
    RestoreError,
    RestoreRefused,
    choose_backup,
    restore_backup,
)
from disaster_recovery.backups.sources import DEFAULT_SOURCES_FILE, SourceValidationError, load_sources
from disaster_recovery.plans.language.step_configs import BackupRestoreConfig, ClusterTarget
from disaster_recovery.steps.base import StepContext, StepFailed, StepResult


def sources_file() -> Path:
    return Path(os.environ.get("DR_BACKUPS_FILE") or DEFAULT_SOURCES_FILE)


def _catalog():
    from disaster_recovery.catalog.repository import catalog_from_connection

    return catalog_from_connection(os.environ.get("DR_CATALOG_CONN_ID", "dr_catalog"))


class BackupRestoreStep:
    type_name: ClassVar[str] = "backup_restore"

    def run(self, config: BackupRestoreConfig | dict, ctx: StepContext) -> StepResult:
        cfg = config if isinstance(config, BackupRestoreConfig) else BackupRestoreConfig.model_validate(config)
        try:
            source = load_sources(sources_file()).require(cfg.source)
            key = key_from_connection(source.encryption.key_conn_id)
        except (SourceValidationError, KeyConfigError) as exc:
            raise StepFailed(f"Cannot restore source {cfg.source!r}: {exc}") from exc
        if isinstance(cfg.target, ClusterTarget):
            destination = ClusterDestination(
                data_directory=Path(cfg.target.data_directory), port=cfg.target.port, start=cfg.target.start
            )
        else:
            endpoint = PgEndpoint.from_connection(cfg.target.conn_id)
            if cfg.target.database:
                endpoint = endpoint.with_dbname(cfg.target.database)
            destination = DatabaseDestination(endpoint=endpoint)
        catalog = _catalog()
        try:
            record = choose_backup(
                catalog, source=cfg.source, backup_id=cfg.backup_id, point_in_time=cfg.point_in_time,
                force_unverified=cfg.force_unverified,
            )
            result = restore_backup(
                record=record, key=key, destination=destination, point_in_time=cfg.point_in_time,
                replace_existing=cfg.replace_existing, force_unverified=cfg.force_unverified,
                dry_run=ctx.dry_run, logger=ctx.log,
            )
        except RestoreRefused as exc:
            raise StepFailed(("Dry run: " if ctx.dry_run else "") + f"Restore refused: {exc}") from exc
        except (SealError, BackupIntegrityError, RestoreError) as exc:
            raise StepFailed(f"Restore of {cfg.source!r} failed: {exc}") from exc
        finally:
            catalog.dispose()
        counts = result.details.get("row_counts") or {}
        if result.row_counts_match is False and cfg.point_in_time is None and counts.get("exact"):
            raise StepFailed(f"{result.sentence} Row counts differ from the backup: {counts.get('mismatches')}")
        return StepResult(output=result.as_dict(), sentence=result.sentence)
