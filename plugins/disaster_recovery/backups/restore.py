"""Restoring a chosen backup into a target, optionally to a point in time, then validating row counts.

Targets:
- `ClusterDestination` (physical backups): a new cluster folder + port. The tar is extracted (as the
  server user) while it is read back, our settings are written (see ``restored``), and the cluster is
  started and waited for until it takes writes. With ``point_in_time`` it recovers from the source's
  WAL archive (``restore_command`` = our fetch, ``recovery_target_time``, ``recovery_target_action =
  'promote'``); without, it replays the WAL inside the backup to its end point. The cluster keeps
  running (it is the recovered service); ``start=False`` only lays it out.
- `DatabaseDestination` (logical backups): ``pg_restore -j`` into an existing database.

Refusals (`RestoreRefused`, before anything is written): a backup that is not verified (unless
``force_unverified``; a corrupted, expired or never-stored backup is refused even then), a target that
already holds data (unless ``replace_existing``), a point in time before the backup's end or without
WAL archiving, a physical backup into a database or a logical one into a cluster folder. A dry run
checks exactly these (and that the key opens the backup) and changes nothing.

When recovery replays all the archived WAL without reaching the point in time, PostgreSQL stops the
server: `PointInTimeUnreachable` (a `RestoreError`) names the segment missing from the archive, or the last
one archived, and the target folder is removed. The backups and the archive are only read, never changed.

The RPO the restore achieves: the reference time (the point in time asked for, else the time the
restore started, standing for the failure) minus the moment the restored data is exact to: the point
in time when recovery reached it, else the end of the backup.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disaster_recovery.backups.engines import PgEndpoint
from disaster_recovery.backups.inventory import BackupRecord, get_backup, list_backups
from disaster_recovery.backups.keys import EncryptionKey
from disaster_recovery.backups.readback import backup_storage, check_key, read_backup
from disaster_recovery.backups.restored import (
    RestoredCluster,
    RestoreError,
    clean_extracted,
    compare_row_counts,
    configure_restored,
    extract_backup,
    write_settings_block,
)
from disaster_recovery.backups.snapshot import count_rows, list_tables
from disaster_recovery.backups.verification import restore_dump
from disaster_recovery.backups.wal_archive import (
    DEFAULT_SEGMENT_SIZE,
    archived_files,
    first_missing_segment,
    is_segment_name,
    restore_command,
    write_archive_config,
)
from disaster_recovery.catalog.repository import Catalog, NotFound
from disaster_recovery.postgres.cluster import pg_bindir

log = logging.getLogger(__name__)

NEVER_RESTORABLE = ("corrupted", "expired")


class RestoreRefused(RuntimeError):
    """A precondition does not hold; nothing was changed."""


class PointInTimeUnreachable(RestoreError):
    """Recovery replayed all the WAL the archive has and did not reach the point in time; the message
    names the segment missing from the archive, or the last one archived. The target folder is removed."""


# PostgreSQL's words when the WAL ran out before recovery_target_time (it then stops the server).
_TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"
_LAST_COMMIT = "last completed transaction was at log time "


@dataclass(frozen=True)
class ClusterDestination:
    data_directory: Path
    port: int
    start: bool = True

    def describe(self) -> str:
        return f"cluster {self.data_directory} on port {self.port}"


@dataclass(frozen=True)
class DatabaseDestination:
    endpoint: PgEndpoint

    def describe(self) -> str:
        return f"database {self.endpoint.describe()}"


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    backup_name: str
    target: str
    dry_run: bool
    restored_bytes: int | None = None
    duration_seconds: float | None = None
    point_in_time: dt.datetime | None = None
    recovered_to: dt.datetime | None = None
    achieved_rpo_seconds: float | None = None
    row_counts_match: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)
    sentence: str = ""

    def as_dict(self) -> dict[str, Any]:
        def iso(value):
            return value.isoformat() if isinstance(value, dt.datetime) else value

        return {
            "backup_id": self.backup_id, "backup_name": self.backup_name, "target": self.target,
            "dry_run": self.dry_run, "restored_bytes": self.restored_bytes,
            "duration_seconds": self.duration_seconds, "point_in_time": iso(self.point_in_time),
            "recovered_to": iso(self.recovered_to), "achieved_rpo_seconds": self.achieved_rpo_seconds,
            "row_counts_match": self.row_counts_match,
            "details": {k: iso(v) for k, v in self.details.items()},
        }


def _parse_time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def backup_end(record: BackupRecord) -> dt.datetime | None:
    """The moment the backup's data is consistent to (the end of a physical backup, a dump's snapshot)."""
    return _parse_time(record.metadata.get("consistent_at") or record.metadata.get("finished_at"))


def choose_backup(
    catalog: Catalog,
    *,
    source: str,
    backup_id: str | None = None,
    point_in_time: dt.datetime | None = None,
    force_unverified: bool = False,
) -> BackupRecord:
    """The backup to restore: ``backup_id``, else the newest verified one of ``source`` (that ended
    before ``point_in_time``). Raises RestoreRefused."""
    if backup_id:
        try:
            record = get_backup(catalog, backup_id)
        except NotFound as exc:
            raise RestoreRefused(str(exc)) from None
        if record.data_source != source:
            raise RestoreRefused(f"{record.describe()} belongs to source {record.data_source!r}, not {source!r}")
        check_restorable(record, force_unverified=force_unverified)
        return record
    for record in list_backups(catalog, data_source=source, statuses=("verified",)):
        end = backup_end(record)
        if point_in_time is None or (end is not None and end <= point_in_time):
            return record
    when = f" that ended before {point_in_time.isoformat()}" if point_in_time else ""
    raise RestoreRefused(f"source {source!r} has no verified backup{when}")


def check_restorable(record: BackupRecord, *, force_unverified: bool) -> None:
    status = record.verification_status
    if not record.stored:
        raise RestoreRefused(f"{record.describe()} never completed: nothing was stored")
    if status in NEVER_RESTORABLE:
        raise RestoreRefused(f"{record.describe()} is {status}: it cannot be restored")
    if status != "verified" and not force_unverified:
        raise RestoreRefused(
            f"{record.describe()} is not verified (status {status}): verify it first, or force_unverified"
        )


def restore_backup(
    *,
    record: BackupRecord,
    key: EncryptionKey,
    destination: ClusterDestination | DatabaseDestination,
    point_in_time: dt.datetime | None = None,
    replace_existing: bool = False,
    force_unverified: bool = False,
    dry_run: bool = False,
    logger: logging.Logger | None = None,
) -> RestoreResult:
    """Restore ``record`` into ``destination``; see the module docstring."""
    logger = logger or log
    check_restorable(record, force_unverified=force_unverified)
    if isinstance(destination, ClusterDestination):
        job = _ClusterRestore(record=record, key=key, destination=destination, point_in_time=point_in_time,
                              replace_existing=replace_existing, logger=logger)
    else:
        job = _DatabaseRestore(record=record, key=key, destination=destination, point_in_time=point_in_time,
                               replace_existing=replace_existing, logger=logger)
    job.check()
    check_key(record, key)
    if dry_run:
        return RestoreResult(
            backup_id=str(record.id), backup_name=record.backup_name, target=destination.describe(), dry_run=True,
            point_in_time=point_in_time, details=job.details,
            sentence=f"Dry run: would restore {record.describe()} into {destination.describe()}"
            + (f" to {point_in_time.isoformat()}" if point_in_time else "") + "; every precondition holds.",
        )
    reference = point_in_time or dt.datetime.now(dt.UTC)
    started = time.monotonic()
    restored_bytes, recovered_to, counts = job.run()
    duration = round(time.monotonic() - started, 3)
    rpo = max(0.0, (reference - recovered_to).total_seconds()) if recovered_to else None
    match = counts.get("match") if counts else None
    sentence = (
        f"Restored {record.backup_name} ({restored_bytes / 1e6:.1f} MB) into {destination.describe()} in "
        f"{duration:.1f} s; data exact to {recovered_to.isoformat() if recovered_to else 'unknown'}"
        + (f" (achieved RPO {rpo:.1f} s)" if rpo is not None else "")
        + ("" if match is None else "; row counts " + ("match the backup" if match else "differ from the backup"))
        + "."
    )
    logger.info("%s", sentence)
    return RestoreResult(
        backup_id=str(record.id), backup_name=record.backup_name, target=destination.describe(), dry_run=False,
        restored_bytes=restored_bytes, duration_seconds=duration, point_in_time=point_in_time,
        recovered_to=recovered_to, achieved_rpo_seconds=None if rpo is None else round(rpo, 3),
        row_counts_match=match, details={**job.details, "row_counts": counts}, sentence=sentence,
    )


class _Restore:
    def __init__(self, *, record: BackupRecord, key: EncryptionKey, destination, point_in_time,
                 replace_existing: bool, logger) -> None:
        self.record = record
        self.key = key
        self.destination = destination
        self.point_in_time = point_in_time
        self.replace_existing = replace_existing
        self.log = logger
        self.details: dict[str, Any] = {}


class _ClusterRestore(_Restore):
    def check(self) -> None:
        dest: ClusterDestination = self.destination
        if self.record.method != "physical":
            raise RestoreRefused(
                f"{self.record.describe()} is a logical dump: restore it into a database (target conn_id)"
            )
        data = Path(dest.data_directory)
        if data.exists() and any(data.iterdir()):
            if (data / "postmaster.pid").exists():
                raise RestoreRefused(f"{data} holds a cluster that may be running (postmaster.pid): stop it first")
            if not self.replace_existing:
                raise RestoreRefused(f"{data} is not empty: set replace_existing to overwrite it")
            self.details["replaces_existing"] = True
        if _port_in_use(dest.port):
            raise RestoreRefused(f"port {dest.port} is in use on this host")
        if self.point_in_time is not None:
            if not dest.start:
                raise RestoreRefused("point-in-time recovery replays WAL while the cluster starts: set start to true")
            self._check_pitr()

    def _check_pitr(self) -> None:
        end = backup_end(self.record)
        if end is not None and self.point_in_time < end:
            raise RestoreRefused(
                f"{self.record.describe()} ended at {end.isoformat()}, after the point in time "
                f"{self.point_in_time.isoformat()}: choose an older backup"
            )
        if not self.record.metadata.get("wal_archived_to"):
            raise RestoreRefused(f"{self.record.describe()}: its source has no WAL archive, so no point-in-time recovery")
        storage, _ = backup_storage(self.record)
        archived = archived_files(storage, self.record.data_source)
        if not archived:
            raise RestoreRefused(f"no WAL is archived for source {self.record.data_source!r}")
        self.details["archived_wal_files"] = len(archived)

    def run(self) -> tuple[int, dt.datetime | None, dict | None]:
        dest: ClusterDestination = self.destination
        cluster = RestoredCluster(data_dir=Path(dest.data_directory), port=dest.port, password="",
                                  superuser=self.record.metadata.get("bootstrap_superuser") or "postgres")
        if self.details.get("replaces_existing"):
            shutil.rmtree(cluster.data_dir)
        cluster.prepare_folders()
        archive_folder = cluster.data_dir.parent / f"{cluster.data_dir.name}.restore"
        self._started = time.monotonic()
        try:
            return self._run(cluster, archive_folder)
        except BaseException:
            cluster.destroy()
            raise
        finally:
            shutil.rmtree(archive_folder, ignore_errors=True)

    def _run(self, cluster: RestoredCluster, archive_folder: Path):
        result = extract_backup(record=self.record, key=self.key, folder=cluster.data_dir, logger=self.log)
        clean_extracted(cluster.data_dir)
        recovery = None
        if self.point_in_time is not None:
            storage_config = self.record.metadata["storage"]
            config = write_archive_config(folder=archive_folder, source=self.record.data_source,
                                          storage_config=storage_config, key=self.key)
            recovery = {
                "restore_command": restore_command(config),
                "recovery_target_time": self.point_in_time.isoformat(),
                "recovery_target_action": "promote",
            }
        settings = configure_restored(cluster, scratch=False, recovery=recovery)
        self.details.update(data_directory=str(cluster.data_dir), port=cluster.port,
                            socket_directory=str(cluster.socket_dir), tar_bytes=result.content_bytes)
        if not self.destination.start:
            self.details["started"] = False
            return result.content_bytes, None, None
        try:
            cluster.start_checked()
            self.details["recovery_seconds"] = round(cluster.wait_writable(), 3)
        except RestoreError as exc:
            if recovery and _log_line(cluster, _TARGET_NOT_REACHED):
                raise PointInTimeUnreachable(self._unreachable(cluster)) from exc
            raise
        self.details["writable_after_seconds"] = round(time.monotonic() - self._started, 3)
        self.details["started"] = True
        recovered_to = self._recovered_to(cluster)
        if recovery:
            # Recovery is over: the settings that pointed at the (now removed) fetch config go.
            for name in recovery:
                settings.pop(name, None)
            write_settings_block(cluster.data_dir / "postgresql.auto.conf", settings)
        meta = self.record.metadata
        counts = compare_row_counts(
            cluster, database=meta.get("row_counts_database") or meta.get("database") or "postgres",
            expected=meta.get("row_counts"), include_unlogged=False,
        )
        counts["exact"] = bool(meta.get("row_counts_exact"))
        if self.point_in_time is not None:
            counts["compared_with"] = "backup-time counts (a point-in-time restore holds later changes too)"
        return result.content_bytes, recovered_to, counts

    def _unreachable(self, cluster: RestoredCluster) -> str:
        """Why recovery ran out of WAL before the point in time: a gap in the archive, or its end."""
        meta, source = self.record.metadata, self.record.data_source
        where = meta.get("wal_archived_to") or f"{source}/wal"
        last_commit = _log_line(cluster, _LAST_COMMIT)
        replayed = (f"; the last transaction replayed committed at {last_commit.split(_LAST_COMMIT, 1)[1]}"
                    if last_commit else "")
        wanted = f"before the point in time {self.point_in_time.isoformat()}{replayed}"
        try:
            storage, _ = backup_storage(self.record)
            names = archived_files(storage, source)
        except Exception as exc:  # the storage is unreachable now: say what is known
            return (f"recovery from {self.record.describe()} ran out of WAL {wanted}; the archive of source "
                    f"{source!r} ({where}) could not be listed to say why: {type(exc).__name__}: {exc}")
        # The backup holds its own WAL up to its stop segment; from there on recovery reads the archive.
        after = meta.get("stop_wal_file") or meta.get("start_wal_file")
        size = int(meta.get("wal_segment_size") or DEFAULT_SEGMENT_SIZE)
        missing = first_missing_segment(names, after=after, segment_size=size) if after else None
        if missing:
            return (f"WAL segment {missing} is missing from the archive of source {source!r} ({where}): recovery "
                    f"from {self.record.describe()} stopped at the gap, {wanted}. Put the segment back, or restore "
                    "to an earlier point in time")
        segments = [name for name in names if is_segment_name(name)]
        first_timeline = int(after[:8], 16) if after else 1
        for later in sorted({int(name[:8], 16) for name in segments if int(name[:8], 16) > first_timeline}):
            history = f"{later:08X}.history"
            if history not in names:
                return (f"timeline history file {history} is missing from the archive of source {source!r} "
                        f"({where}): recovery from {self.record.describe()} cannot follow the promotion to "
                        f"timeline {later}, whose WAL is archived, and ran out of WAL {wanted}. Put the file back "
                        "(the promoted server archives it at promotion)")
        last = f"segment {segments[-1]}" if segments else "no whole segment"
        return (f"the WAL archive of source {source!r} ends with {last} ({where}), {wanted}: nothing archived "
                "reaches it. Has the source archived its current WAL file yet (pg_switch_wal() closes it)? Else "
                "restore to an earlier point in time")

    def _recovered_to(self, cluster: RestoredCluster) -> dt.datetime | None:
        if self.point_in_time is None:
            return backup_end(self.record)
        rows = cluster.query("SELECT pg_last_xact_replay_timestamp()")
        last = rows[0][0] if rows else None
        self.details["last_replayed_commit_at"] = last
        stopped = _log_line(cluster, "recovery stopping")
        self.details["recovery_stop"] = stopped
        # Recovery promoted at the target (PostgreSQL ends recovery with an error when the archive does not
        # reach it): every transaction committed up to the point in time is there.
        return self.point_in_time if stopped else (last or backup_end(self.record))


def _log_line(cluster: RestoredCluster, needle: str) -> str | None:
    try:
        for line in cluster.log_file.read_text(errors="replace").splitlines():
            if needle in line:
                return line.strip()[-300:]
    except OSError:
        pass
    return None


class _DatabaseRestore(_Restore):
    def check(self) -> None:
        if self.record.method != "logical":
            raise RestoreRefused(
                f"{self.record.describe()} is a physical backup: restore it into a cluster folder (data_directory)"
            )
        if self.point_in_time is not None:
            raise RestoreRefused("a logical dump restores to the moment it was taken: no point in time")
        endpoint: PgEndpoint = self.destination.endpoint
        conn = endpoint.connect()
        try:
            tables = list_tables(conn.cursor(), include_unlogged=True)
        finally:
            conn.close()
        if tables and not self.replace_existing:
            raise RestoreRefused(
                f"{endpoint.describe()} already holds {len(tables)} table(s): set replace_existing to overwrite"
            )
        self.details["replaces_existing"] = bool(tables)

    def run(self) -> tuple[int, dt.datetime | None, dict | None]:
        endpoint: PgEndpoint = self.destination.endpoint
        folder = Path(tempfile.mkdtemp(prefix="dr-restore-"))
        try:
            dump = folder / "backup.dump"
            with open(dump, "wb") as out:
                result = read_backup(record=self.record, key=self.key, write=out.write, logger=self.log)
            dsn = " ".join(f"{k}={v}" for k, v in endpoint.connect_args().items() if k != "password")
            restore_dump(dump=dump, dsn=dsn, bindir=pg_bindir(), jobs=2, clean=self.details["replaces_existing"],
                         env=endpoint.tool_env())
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        conn = endpoint.connect()
        try:
            actual = count_rows(conn.cursor(), list_tables(conn.cursor(), include_unlogged=True))
        finally:
            conn.close()
        expected = self.record.metadata.get("row_counts") or {}
        mismatches = {n: {"expected": expected.get(n), "restored": actual.get(n)}
                      for n in expected if expected.get(n) != actual.get(n)}
        counts = {"match": bool(expected) and not mismatches, "exact": True, "tables": len(actual),
                  "rows": sum(actual.values()), "mismatches": mismatches}
        return result.content_bytes, backup_end(self.record), counts


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


__all__ = [
    "ClusterDestination",
    "DatabaseDestination",
    "PointInTimeUnreachable",
    "RestoreError",
    "RestoreRefused",
    "RestoreResult",
    "choose_backup",
    "restore_backup",
]
