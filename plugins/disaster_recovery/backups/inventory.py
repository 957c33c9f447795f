"""The backup inventory: ``backup_inventories`` rows, read as frozen `BackupRecord`s.

Every backup gets one row, written when its pipeline ends: ``pending`` (stored, waiting for
verification) or ``failed`` (nothing stored; ``backup_metadata.error`` says why). Verification moves
it to ``verified``, ``failed`` or ``corrupted``; retention to ``expired``. Never a key in a row: only
``backup_metadata.key_id``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from disaster_recovery.catalog.records import _Record
from disaster_recovery.catalog.repository import Catalog, NotFound
from disaster_recovery.catalog.tables import backup_inventories
from disaster_recovery.plans.language.durations import parse_duration

TABLE = "backup_inventories"


@dataclass(frozen=True)
class BackupRecord(_Record):
    id: uuid.UUID
    backup_name: str
    backup_type: str
    data_source: str
    backup_location: str
    backup_format: str
    compression_type: str | None
    encryption_enabled: bool | None
    backup_size_bytes: int | None
    compressed_size_bytes: int | None
    backup_checksum: str | None
    backup_metadata: Any
    retention_policy: Any
    created_at: dt.datetime
    expires_at: dt.datetime | None
    verified_at: dt.datetime | None
    verification_status: str | None
    restore_tested: bool | None
    restore_test_date: dt.datetime | None
    storage_class: str | None
    access_frequency: str | None

    @property
    def metadata(self) -> dict:
        return dict(self.backup_metadata or {})

    @property
    def method(self) -> str:
        return "physical" if self.backup_format == "binary" else "logical"

    @property
    def stored(self) -> bool:
        """True when the pipeline committed an object (a failed backup has none)."""
        return self.metadata.get("phase") != "backup_failed"

    def describe(self) -> str:
        return f"backup {self.backup_name} ({self.id}, {self.verification_status})"


def expires_at_for(policy: dict, created_at: dt.datetime) -> dt.datetime | None:
    """When the policy lets this backup go, if that follows from the policy alone.

    Count rules (keep_last, keep_daily, ...) depend on the backups taken later: no date. A policy with only
    ``recovery_window`` keeps a backup at least until ``created_at + window`` (longer if it is the one
    backup older than the window, or the newest verified one): that date is recorded.
    """
    window = policy.get("recovery_window")
    if window is None or any(policy.get(rule) for rule in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")):
        return None
    seconds = window if isinstance(window, int | float) else _duration_seconds(window)
    return None if seconds is None else created_at + dt.timedelta(seconds=seconds)


def _duration_seconds(text: Any) -> float | None:
    if isinstance(text, dt.timedelta):
        return text.total_seconds()
    try:
        return parse_duration(str(text)).total_seconds()
    except ValueError:
        return None


def record_backup(catalog: Catalog, **values: Any) -> BackupRecord:
    """Insert one backup_inventories row (column=value) and return it."""
    return BackupRecord.from_row(catalog.insert(TABLE, **values))


def get_backup(catalog: Catalog, backup_id: uuid.UUID | str) -> BackupRecord:
    t = backup_inventories
    try:
        wanted = backup_id if isinstance(backup_id, uuid.UUID) else uuid.UUID(str(backup_id))
    except ValueError:
        raise NotFound(f"{backup_id!r} is not a backup id (a UUID)") from None
    with catalog.engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.id == wanted)).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no backup with id {backup_id}")
    return BackupRecord.from_row(row)


def list_backups(
    catalog: Catalog, *, data_source: str | None = None, statuses: tuple[str, ...] | None = None
) -> list[BackupRecord]:
    """Backups, newest first (of one source and/or with these verification statuses)."""
    t = backup_inventories
    query = select(t)
    if data_source is not None:
        query = query.where(t.c.data_source == data_source)
    if statuses is not None:
        query = query.where(t.c.verification_status.in_(statuses))
    with catalog.engine.connect() as conn:
        rows = conn.execute(query.order_by(t.c.created_at.desc(), t.c.id)).mappings().all()
    return [BackupRecord.from_row(r) for r in rows]


def newest_verified(catalog: Catalog, data_source: str) -> BackupRecord | None:
    found = list_backups(catalog, data_source=data_source, statuses=("verified",))
    return found[0] if found else None


def update_backup(
    catalog: Catalog, backup_id: uuid.UUID | str, *, metadata: dict | None = None, **values: Any
) -> BackupRecord:
    """Update columns of a backup row; ``metadata`` is merged into backup_metadata (top-level keys)."""
    if metadata:
        current = get_backup(catalog, backup_id).metadata
        current.update(metadata)
        values["backup_metadata"] = current
    return BackupRecord.from_row(catalog.update_row(TABLE, backup_id, **values))


def record_verification(
    catalog: Catalog,
    backup_id: uuid.UUID | str,
    *,
    status: str,
    metadata: dict,
    restore_tested: bool,
    at: dt.datetime,
    backup_size_bytes: int | None = None,
) -> BackupRecord:
    """Record a verification outcome: status, verified_at, restore_tested/_date, metadata merged."""
    values: dict[str, Any] = {"verification_status": status, "verified_at": at, "restore_tested": restore_tested}
    if restore_tested:
        values["restore_test_date"] = at
    if backup_size_bytes is not None:
        values["backup_size_bytes"] = backup_size_bytes
    return update_backup(catalog, backup_id, metadata=metadata, **values)
