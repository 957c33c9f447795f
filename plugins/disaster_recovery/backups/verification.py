"""Verifying a backup by restoring it.

1. Integrity, in one pass over the stored object: SHA-256 against the inventory, AES-GCM authentication
   of every chunk, zstd decoding, tar extraction (physical) or the dump file (logical). Any failure
   → ``corrupted``.
2. Physical backups with a manifest: ``pg_verifybackup`` of the extracted folder (before anything
   starts in it). Failure → ``corrupted``.
3. The restore test, in a scratch folder and on a free port, socket only: a physical backup starts as a
   cluster (crash recovery replays the WAL fetched into the backup up to consistency); a logical one is
   pg_restore'd (-j) into a fresh scratch cluster. Then ``pg_amcheck`` (non-zero exit → failed) and the
   per-table row counts against those recorded at backup time. The scratch cluster and folder are
   removed whatever happens.

A wrong key raises ``WrongKey`` and leaves the backup's status alone: the backup is not at fault.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disaster_recovery.backups.crypto import WrongKey
from disaster_recovery.backups.inventory import BackupRecord, get_backup, record_verification
from disaster_recovery.backups.keys import EncryptionKey
from disaster_recovery.backups.readback import BackupIntegrityError, read_backup
from disaster_recovery.backups.restored import (
    RestoredCluster,
    RestoreError,
    clean_extracted,
    compare_row_counts,
    configure_restored,
    create_database,
    extract_backup,
    run_amcheck,
)
from disaster_recovery.catalog.repository import Catalog
from disaster_recovery.postgres.cluster import free_port, give_to_server_user, run_server_command

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerificationResult:
    backup_id: str
    backup_name: str
    status: str  # verified | failed | corrupted
    checks: dict[str, Any]
    restore_test: dict[str, Any] | None
    error: str | None
    duration_seconds: float
    record: BackupRecord | None = field(default=None, repr=False)

    @property
    def sentence(self) -> str:
        if self.status == "verified":
            extra = ""
            if self.restore_test:
                extra = (
                    f"; restore test {self.restore_test.get('duration_seconds')} s, amcheck "
                    f"{'ok' if (self.restore_test.get('amcheck') or {}).get('ok') else 'skipped'}, row counts "
                    f"{'match' if self.restore_test.get('row_counts_match') else 'differ (approximate counts)'}"
                )
            return f"Backup {self.backup_name} verified in {self.duration_seconds:.1f} s{extra}."
        return f"Backup {self.backup_name} is {self.status}: {self.error}"


SCRATCH_ENV = "DR_SCRATCH_DIR"
SHM = Path("/dev/shm")


def scratch_base(needed_bytes: int) -> Path:
    """Where scratch restores go: ``$DR_SCRATCH_DIR``; else the RAM file system (/dev/shm) when it has room
    for ``needed_bytes`` with 1 GiB to spare (a scratch cluster is thrown away, and in RAM it extracts
    about twice as fast); else the temp folder."""
    if os.environ.get(SCRATCH_ENV):
        return Path(os.environ[SCRATCH_ENV])
    try:
        stats = os.statvfs(SHM)
        if stats.f_bavail * stats.f_frsize > needed_bytes + 2**30 and os.access(SHM, os.W_OK):
            return SHM
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def make_scratch_folder(root: Path | None = None, *, needed_bytes: int = 0) -> Path:
    """A private folder for one scratch restore, owned by the server user (it must reach its data)."""
    base = Path(root) if root else scratch_base(needed_bytes)
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="dr-verify-", dir=base))
    give_to_server_user(folder)
    return folder


def verify_backup(
    *,
    catalog: Catalog,
    backup_id: str,
    key: EncryptionKey,
    restore_test: bool = True,
    amcheck: bool = True,
    scratch_root: Path | None = None,
    logger: logging.Logger | None = None,
) -> VerificationResult:
    """Verify one backup and record the outcome in its inventory row; see the module docstring."""
    logger = logger or log
    record = get_backup(catalog, backup_id)
    started = time.monotonic()
    if not record.stored:
        return VerificationResult(str(record.id), record.backup_name, "failed", {}, None,
                                  "the backup itself failed: nothing was stored", 0.0, record)
    run = _Verification(record=record, key=key, logger=logger, restore_test=restore_test, amcheck=amcheck)
    # Room for the data (a logical dump also needs the dump file and the restored cluster).
    needed = (record.backup_size_bytes or 0) * (2 if record.method == "physical" else 4)
    folder = make_scratch_folder(scratch_root, needed_bytes=needed)
    try:
        run.run(folder)
    finally:
        run.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    duration = time.monotonic() - started
    metadata = {
        "verification": {**run.checks, "duration_seconds": round(duration, 3), "status": run.status,
                         "error": run.error},
        "restore_test": run.restore,
    }
    if run.content_bytes is not None and record.method == "physical":
        metadata["tar_bytes"] = run.content_bytes
        metadata["backup_size_basis"] = "tar bytes, measured at verification (exact)"
    updated = record_verification(
        catalog,
        record.id,
        status=run.status,
        metadata=metadata,
        restore_tested=run.restore is not None,
        at=dt.datetime.now(dt.UTC),
        backup_size_bytes=run.content_bytes if record.method == "physical" and run.content_bytes else None,
    )
    result = VerificationResult(str(record.id), record.backup_name, run.status, run.checks, run.restore,
                                run.error, duration, updated)
    (logger.info if run.status == "verified" else logger.error)("%s", result.sentence)
    return result


class _Verification:
    def __init__(self, *, record: BackupRecord, key: EncryptionKey, logger, restore_test: bool, amcheck: bool) -> None:
        self.record = record
        self.key = key
        self.log = logger
        self.restore_test = restore_test
        self.amcheck = amcheck
        self.status = "verified"
        self.error: str | None = None
        self.checks: dict[str, Any] = {}
        self.restore: dict[str, Any] | None = None
        self.content_bytes: int | None = None
        self.cluster: RestoredCluster | None = None

    def run(self, folder: Path) -> None:
        meta = self.record.metadata
        self.cluster = RestoredCluster(
            data_dir=folder / "data", port=free_port(), password="",
            superuser=meta.get("bootstrap_superuser") or "postgres",
        )
        try:
            if self.record.method == "physical":
                self._physical(folder)
            else:
                self._logical(folder)
        except WrongKey:
            raise
        except BackupIntegrityError as exc:
            self.status, self.error = "corrupted", str(exc)
            self.checks["failed_check"] = exc.check
        except (RestoreError, subprocess.SubprocessError, OSError, RuntimeError) as exc:
            self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # psycopg2 errors from the restored cluster, and the unforeseen
            self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"

    def cleanup(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()

    # -- physical ---------------------------------------------------------------------------------
    def _physical(self, folder: Path) -> None:
        cluster = self.cluster
        cluster.prepare_folders()
        result = extract_backup(record=self.record, key=self.key, folder=cluster.data_dir, logger=self.log,
                                durable=False)
        self._integrity_ok(result)
        if (cluster.data_dir / "backup_manifest").exists():
            self._verifybackup(cluster)
        else:
            self.checks["pg_verifybackup"] = "skipped: no manifest (server-side compression)"
        if not self.restore_test:
            return
        started = self._restore_started = time.monotonic()
        clean_extracted(cluster.data_dir)
        configure_restored(cluster, scratch=True, listen_addresses="")
        cluster.start_checked()
        cluster.wait_writable()
        self.restore = {"duration_seconds": round(time.monotonic() - started + result.duration_seconds, 3),
                        "startup_seconds": round(time.monotonic() - started, 3)}
        self._checks_on(cluster, include_unlogged=False)

    def _verifybackup(self, cluster: RestoredCluster) -> None:
        proc = run_server_command([str(cluster.bindir / "pg_verifybackup"), str(cluster.data_dir)], check=False,
                                  timeout=3600)
        output = (proc.stdout + proc.stderr).strip()
        self.checks["pg_verifybackup"] = "ok" if proc.returncode == 0 else output[-2000:]
        if proc.returncode != 0:
            raise BackupIntegrityError(f"pg_verifybackup failed: {output[-500:]}", check="manifest")

    # -- logical ----------------------------------------------------------------------------------
    def _logical(self, folder: Path) -> None:
        dump = folder / "backup.dump"
        with open(dump, "wb") as out:
            result = read_backup(record=self.record, key=self.key, write=out.write, logger=self.log)
        self._integrity_ok(result)
        proc = subprocess.run(
            [str(self.cluster.bindir / "pg_restore"), "--list", str(dump)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise BackupIntegrityError(f"pg_restore cannot read the dump: {proc.stderr.strip()[-500:]}",
                                       check="archive")
        self.checks["pg_restore_list"] = f"ok ({len(proc.stdout.splitlines())} TOC lines)"
        if not self.restore_test:
            return
        started = self._restore_started = time.monotonic()
        cluster = ScratchCluster(data_dir=self.cluster.data_dir, port=self.cluster.port, password=secrets.token_hex(8),
                                 superuser="postgres")
        self.cluster = cluster
        cluster.socket_dir.mkdir(mode=0o700, exist_ok=True)
        give_to_server_user(cluster.socket_dir)
        cluster.initdb()
        cluster.start_checked()
        database = self.record.metadata.get("database") or "postgres"
        if database != "postgres":
            create_database(cluster, database)
        restore_dump(dump=dump, dsn=cluster.dsn(database), bindir=cluster.bindir, jobs=2, clean=False)
        self.restore = {"duration_seconds": round(time.monotonic() - started + result.duration_seconds, 3),
                        "pg_restore_seconds": round(time.monotonic() - started, 3)}
        self._checks_on(cluster, include_unlogged=True)

    # -- shared -----------------------------------------------------------------------------------
    def _integrity_ok(self, result) -> None:
        self.content_bytes = result.content_bytes
        self._readback_seconds = result.duration_seconds
        self.checks.update(
            sha256="ok", decrypt="ok", decompress="ok" if self.record.compression_type else "n/a",
            stored_bytes=result.stored_bytes, content_bytes=result.content_bytes,
            readback_seconds=round(result.duration_seconds, 3),
        )

    def _checks_on(self, cluster: RestoredCluster, *, include_unlogged: bool) -> None:
        meta = self.record.metadata
        # amcheck and the row counts read the same tables: run them side by side.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="amcheck") as pool:
            amcheck = pool.submit(run_amcheck, cluster, jobs=2) if self.amcheck else None
            counts = compare_row_counts(cluster, database=meta.get("row_counts_database") or meta.get("database")
                                        or "postgres", expected=meta.get("row_counts"),
                                        include_unlogged=include_unlogged)
            if amcheck is not None:
                self.restore["amcheck"] = amcheck.result()
        exact = bool(meta.get("row_counts_exact"))
        self.restore.update(
            row_counts_match=counts["match"], row_counts_exact=exact, row_count_mismatches=counts["mismatches"],
            tables=counts["tables"], rows=counts["rows"],
        )
        self.restore["total_seconds"] = round(time.monotonic() - self._restore_started + self._readback_seconds, 3)
        if self.amcheck and not self.restore["amcheck"]["ok"]:
            raise RestoreError(f"pg_amcheck found problems: {self.restore['amcheck']['output'][-500:]}")
        if not counts["match"] and (exact or not meta.get("row_counts")):
            raise RestoreError(f"row counts differ from those recorded at backup time: {counts['mismatches']}")
        if not counts["match"]:
            self.log.warning("row counts differ, but the source was written to during the backup (approximate "
                             "counts): %s", counts["mismatches"])


class ScratchCluster(RestoredCluster):
    """A new empty cluster (initdb) for a logical restore test: socket only, no fsync."""

    def base_settings(self) -> dict[str, str]:
        return {
            "port": str(self.port),
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "'128MB'",
            "max_wal_size": "'2GB'",
            "logging_collector": "off",
        }

    def allow_replication(self) -> None:
        return None


def restore_dump(*, dump: Path, dsn: str, bindir: Path, jobs: int, clean: bool, env: dict | None = None) -> None:
    """pg_restore -j of a custom-format dump into the database of ``dsn`` (owners and grants not restored)."""
    argv = [str(bindir / "pg_restore"), "-d", dsn, "-j", str(jobs), "--no-owner", "--no-privileges",
            "--exit-on-error"]
    if clean:
        argv += ["--clean", "--if-exists"]
    proc = subprocess.run([*argv, str(dump)], capture_output=True, text=True, check=False, env=env, timeout=24 * 3600)
    if proc.returncode != 0:
        raise RestoreError(f"pg_restore exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
