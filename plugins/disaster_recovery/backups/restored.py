"""Bringing a physical backup up as a running cluster (scratch clusters for verification, restore targets).

- `extract_backup` / `TarExtractor`: ``tar -x`` (``--zstd``) run as the server OS user, fed through its
  stdin, so the files are the server's from the start (no chown pass) and decompression and extraction
  run in their own processes beside our reading and decrypting.
- `configure_restored`: our settings appended to ``postgresql.auto.conf`` (read last, so they win over
  the source's postgresql.conf and its includes): port, socket folder, ``archive_mode = off`` (a restored
  copy must never push WAL into the source's archive), no synchronous standbys, no primary_conninfo,
  and for point-in-time recovery ``restore_command`` + ``recovery_target_time`` + ``recovery.signal``.
  Access: a private socket folder (0700, server user) with ``local ... trust`` for the bootstrap
  superuser — replaced entirely for scratch clusters, prepended for restore targets.
- `RestoredCluster`: a `LocalCluster` reached through that socket (no password needed).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from psycopg2 import sql

from disaster_recovery.backups.inventory import BackupRecord
from disaster_recovery.backups.keys import EncryptionKey
from disaster_recovery.backups.processes import StderrTail, enlarge_pipe, server_user_kwargs, stop_process
from disaster_recovery.backups.readback import BackupIntegrityError, ReadbackResult, is_compressed, read_backup
from disaster_recovery.backups.snapshot import count_rows, list_tables
from disaster_recovery.postgres.cluster import (
    ClusterError,
    LocalCluster,
    give_to_server_user,
    pid_alive,
    run_server_command,
)

BLOCK_START = "# --- disaster_recovery restore settings (begin) ---"
BLOCK_END = "# --- disaster_recovery restore settings (end) ---"
REMOVE_AFTER_EXTRACT = ("postmaster.pid", "postmaster.opts", "standby.signal", "recovery.signal")


class RestoreError(RuntimeError):
    """Bringing the restored data up failed; the message carries the server log's last lines."""


class TarExtractor:
    """``tar -x`` into ``folder`` (as the server OS user); ``write`` feeds it, ``close`` checks its exit and
    returns the tar's size. With ``zstd`` it decompresses too (``tar --zstd`` runs ``zstd -d``): our process
    then only decrypts, and decompression, extraction and the file writes run beside it."""

    def __init__(self, folder: Path, *, zstd: bool = False) -> None:
        user_kwargs, _ = server_user_kwargs()
        self.folder = folder
        self.bytes = 0
        argv = ["tar", "-x", "-f", "-", "-C", str(folder), "--no-same-owner", "--totals"]
        if zstd:
            argv.append("--zstd")
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            bufsize=0,
            cwd="/",
            **user_kwargs,
        )
        enlarge_pipe(self._proc.stdin.fileno())
        self._stderr = StderrTail(self._proc.stderr)

    def write(self, data) -> None:
        view = memoryview(data)
        try:
            while view:
                written = self._proc.stdin.write(view)
                view = view[written:]
        except BrokenPipeError:
            self._proc.wait(30)
            raise RestoreError(f"tar stopped reading ({self._proc.returncode}): {self._stderr.last()}") from None
        self.bytes += len(data)

    def close(self) -> int:
        """Wait for tar; the number of tar bytes it read (after decompression)."""
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        code = self._proc.wait(3600)
        text = self._stderr.text()
        if code != 0:
            raise RestoreError(f"tar -x exited {code}: {self._stderr.last() or 'no error output'}")
        match = _TOTALS_RE.search(text)
        return int(match.group(1)) if match else self.bytes

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        stop_process(self._proc)


_TOTALS_RE = re.compile(r"Total bytes read: (\d+)")
_ENVIRONMENT_FAILURES = ("No space left", "Permission denied", "Read-only file system", "Disk quota")


class BackgroundFlush:
    """Flushes the file system of ``folder`` (``syncfs``) every ``interval`` seconds while files are being
    extracted into it, so that the server's fsync of its data directory at start-up finds little left to
    write: the disk works while the CPUs extract."""

    def __init__(self, folder: Path, *, interval: float = 0.25) -> None:
        self._folder = folder
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="syncfs")

    def __enter__(self) -> BackgroundFlush:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
        except (OSError, AttributeError):
            return
        try:
            while not self._stop.wait(self._interval):
                libc.syncfs(fd)
        finally:
            os.close(fd)


def extract_backup(
    *, record: BackupRecord, key: EncryptionKey, folder: Path, logger, durable: bool = True
) -> ReadbackResult:
    """Read a physical backup back into ``folder`` (the data directory), end to end; with ``durable``
    the files are flushed to disk as they come (see `BackgroundFlush`).

    A tar that does not extract is an integrity failure (``BackupIntegrityError``), unless tar says the
    environment is at fault (disk full, permissions): then ``RestoreError``.
    """
    offload = is_compressed(record) and shutil.which("zstd") is not None
    extractor = TarExtractor(folder, zstd=offload)
    flush = BackgroundFlush(folder) if durable else contextlib.nullcontext()
    try:
        with flush:
            try:
                result = read_backup(record=record, key=key, write=extractor.write, decompress=not offload,
                                     logger=logger)
            except BaseException:
                extractor.abort()
                raise
            tar_bytes = extractor.close()
    except RestoreError as exc:
        if any(text in str(exc) for text in _ENVIRONMENT_FAILURES):
            raise
        raise BackupIntegrityError(f"the backup's tar does not extract: {exc}", check="archive") from exc
    return dataclasses.replace(result, content_bytes=tar_bytes) if offload else result


@dataclass
class RestoredCluster(LocalCluster):
    """A cluster made from a backup, reached through its private socket folder as ``superuser``."""

    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        return f"host={self.socket_dir} port={self.port} dbname={dbname} user={user or self.superuser} connect_timeout=5"

    def prepare_folders(self) -> None:
        """The empty data folder (0700) and the private socket folder, both the server user's."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.data_dir.chmod(0o700)
        self.socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket_dir.chmod(0o700)
        give_to_server_user(self.data_dir)
        give_to_server_user(self.socket_dir)

    def log_tail(self, lines: int = 12) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start_checked(self, *, timeout: float = 600) -> None:
        """Start the server and wait until it accepts connections (polled every 20 ms: ``pg_ctl -w`` polls
        every 100 ms); RestoreError with the server log when it stops or does not come up."""
        self.socket_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        give_to_server_user(self.socket_dir)
        self.log_file.touch()
        give_to_server_user(self.log_file)
        try:
            run_server_command([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                                "start"], timeout=60)
        except (ClusterError, subprocess.TimeoutExpired) as exc:
            raise RestoreError(f"the restored cluster did not start: {exc}; server log: {self.log_tail()}") from exc
        started = time.monotonic()
        last: Exception | None = None
        while time.monotonic() - started < timeout:
            try:
                self.query("SELECT 1")
                return
            except Exception as exc:  # not up yet (or shut down: checked below)
                last = exc
            pid = self.postmaster_pid()
            if (pid is None and time.monotonic() - started > 5) or (pid is not None and not pid_alive(pid)):
                raise RestoreError(f"the restored cluster stopped while starting: {self.log_tail()}")
            time.sleep(0.02)
        raise RestoreError(f"the restored cluster did not accept connections in {timeout:.0f} s ({last}): "
                           f"{self.log_tail()}")

    def wait_writable(self, *, timeout: float = 600) -> float:
        """Wait until recovery is over (promoted, read-write); seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if not self.in_recovery():
                    return time.monotonic() - started
            except Exception as exc:  # starting up, or it stopped: check below
                last = exc
            if not self.is_running():
                raise RestoreError(f"the restored cluster stopped during recovery: {self.log_tail()}")
            time.sleep(0.05)
        raise RestoreError(f"the restored cluster is still in recovery after {timeout:.0f} s ({last}): {self.log_tail()}")


def clean_extracted(data_dir: Path) -> None:
    """Remove what a restored data folder must not start with (run as root or the server user)."""
    for name in REMOVE_AFTER_EXTRACT:
        run_server_command(["rm", "-f", str(data_dir / name)], check=False)


def restore_settings(
    cluster: RestoredCluster,
    *,
    scratch: bool,
    listen_addresses: str | None,
    recovery: dict[str, str] | None = None,
) -> dict[str, str]:
    settings = {
        "port": str(cluster.port),
        "unix_socket_directories": f"'{cluster.socket_dir}'",
        "hba_file": f"'{cluster.data_dir / 'pg_hba.conf'}'",
        "ident_file": f"'{cluster.data_dir / 'pg_ident.conf'}'",
        "archive_mode": "off",
        "synchronous_standby_names": "''",
        "primary_conninfo": "''",
        "primary_slot_name": "''",
        "logging_collector": "off",
        "cluster_name": f"'{cluster.name}'",
    }
    if listen_addresses is not None:
        settings["listen_addresses"] = f"'{listen_addresses}'"
    if scratch:
        settings.update({"fsync": "off", "synchronous_commit": "off", "shared_buffers": "'128MB'", "ssl": "off"})
    for name, value in (recovery or {}).items():
        settings[name] = "'" + value.replace("'", "''") + "'"
    return settings


def configure_restored(
    cluster: RestoredCluster,
    *,
    scratch: bool,
    listen_addresses: str | None = None,
    recovery: dict[str, str] | None = None,
) -> dict[str, str]:
    """Write the restore settings and access rules; ``recovery`` settings also create recovery.signal."""
    data = cluster.data_dir
    for name in ("postgresql.conf", "pg_ident.conf"):
        if not (data / name).exists():  # configuration kept outside the data folder (e.g. /etc)
            (data / name).write_text("")
    settings = restore_settings(cluster, scratch=scratch, listen_addresses=listen_addresses, recovery=recovery)
    write_settings_block(data / "postgresql.auto.conf", settings)
    local = f"local all {_hba_name(cluster.superuser)} trust"
    hba = data / "pg_hba.conf"
    if scratch:
        hba.write_text(f"# scratch restore: private socket only\n{local}\n")
    else:
        existing = hba.read_text() if hba.exists() else ""
        hba.write_text(f"# restore: the bootstrap superuser on the private socket folder only\n{local}\n{existing}")
    if recovery:
        (data / "recovery.signal").write_text("")
    for name in ("postgresql.conf", "pg_ident.conf", "postgresql.auto.conf", "pg_hba.conf", "recovery.signal"):
        if (data / name).exists():
            give_to_server_user(data / name)
            (data / name).chmod(0o600)
    return settings


def _hba_name(user: str) -> str:
    return user if user.replace("_", "").isalnum() and user.islower() else '"' + user.replace('"', '""') + '"'


def write_settings_block(path: Path, settings: dict[str, str]) -> None:
    """Replace our block at the end of ``path`` (postgresql.auto.conf) with ``settings``."""
    text = path.read_text() if path.exists() else ""
    if BLOCK_START in text:
        head, _, rest = text.partition(BLOCK_START)
        _, _, tail = rest.partition(BLOCK_END)
        text = head.rstrip("\n") + "\n" + tail.lstrip("\n")
    lines = [BLOCK_START, *(f"{key} = {value}" for key, value in settings.items()), BLOCK_END]
    path.write_text(text.rstrip("\n") + ("\n" if text.strip() else "") + "\n".join(lines) + "\n")


def compare_row_counts(cluster: RestoredCluster, *, database: str, expected: dict[str, int] | None,
                       include_unlogged: bool) -> dict:
    """Counts in the restored database against those recorded at backup time."""
    conn = cluster.connect(database)
    try:
        cur = conn.cursor()
        tables = list_tables(cur, include_unlogged=include_unlogged)
        actual = count_rows(cur, tables)
    finally:
        conn.close()
    expected = expected or {}
    mismatches = {
        name: {"expected": expected.get(name), "restored": actual.get(name)}
        for name in sorted(set(expected) | set(actual))
        if expected.get(name) != actual.get(name)
    }
    return {
        "match": bool(expected) and not mismatches,
        "tables": len(actual),
        "rows": sum(actual.values()),
        "mismatches": dict(list(mismatches.items())[:50]),
        "row_counts": actual,
    }


def run_amcheck(cluster: RestoredCluster, *, jobs: int = 2, timeout: float = 3600) -> dict:
    """pg_amcheck of every database (installing amcheck where missing); non-zero exit = failed."""
    started = time.monotonic()
    argv = [
        str(cluster.bindir / "pg_amcheck"), "-h", str(cluster.socket_dir), "-p", str(cluster.port),
        "-U", cluster.superuser, "--all", "--install-missing", "-j", str(jobs), "--no-password",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    output = (proc.stdout + proc.stderr).strip()
    return {
        "ok": proc.returncode == 0,
        "exit_code": proc.returncode,
        "duration_seconds": round(time.monotonic() - started, 3),
        "output": output[-2000:],
    }


def create_database(cluster: RestoredCluster, name: str) -> None:
    conn = cluster.connect("postgres")
    try:
        conn.cursor().execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()
