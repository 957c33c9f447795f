"""The native backup engines: PostgreSQL's own tools, each a producer writing one stream to stdout.

- physical ``full``: ``pg_basebackup -D - -Ft -X fetch`` (one tar holding the data directory and the WAL
  needed to make it consistent). zstd is done by PostgreSQL: ``--compress=server-zstd:level=N,workers=W``
  (fastest; the client cannot inject the backup manifest into a compressed stream, so ``--no-manifest``)
  or ``client-zstd`` (pg_basebackup compresses; the manifest is kept, for pg_verifybackup).
- logical ``full``: ``pg_dump -Fc`` (custom format) to stdout. pg_dump can compress with zstd only from
  PostgreSQL 16 (``-Z zstd:N``); before that it writes ``-Z0`` and the pipeline compresses with zstandard.
- ``incremental``/``differential``: ``pg_basebackup --incremental`` needs PostgreSQL 17 (server and
  tools); older servers get a refusal naming the version.

Passwords go to the tools through ``PGPASSWORD`` in their environment, never on the command line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from disaster_recovery.postgres.cluster import pg_bindir

INCREMENTAL_MIN_VERSION = 170000
PG_DUMP_ZSTD_MIN_VERSION = 160000


class UnsupportedBackup(ValueError):
    """This kind of backup cannot be taken of this server; the message says why, naming the version."""


class EngineError(RuntimeError):
    """A producer failed; the message carries the tool, its exit code and the end of its stderr."""


@dataclass(frozen=True)
class PgEndpoint:
    """Where a PostgreSQL server is reached. ``repr`` never shows the password."""

    host: str
    port: int
    user: str
    dbname: str = "postgres"
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_connection(cls, conn_id: str) -> PgEndpoint:
        """From an Airflow postgres connection (host, port, login, password, schema = database)."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        conn = PostgresHook(postgres_conn_id=conn_id).connection
        return cls(
            host=conn.host or "localhost",
            port=int(conn.port or 5432),
            user=conn.login or "postgres",
            dbname=conn.schema or "postgres",
            password=conn.password or None,
        )

    def with_dbname(self, dbname: str) -> PgEndpoint:
        return PgEndpoint(host=self.host, port=self.port, user=self.user, dbname=dbname, password=self.password)

    def connect_args(self) -> dict:
        """Keyword arguments of psycopg2.connect (password included)."""
        args = {"host": self.host, "port": self.port, "user": self.user, "dbname": self.dbname, "connect_timeout": 10}
        if self.password:
            args["password"] = self.password
        return args

    def connect(self, *, autocommit: bool = True):
        import psycopg2

        conn = psycopg2.connect(**self.connect_args())
        conn.autocommit = autocommit
        return conn

    def tool_args(self) -> list[str]:
        """``-h -p -U`` for the client tools (no password: see ``tool_env``)."""
        return ["-h", self.host, "-p", str(self.port), "-U", self.user, "--no-password"]

    def tool_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PGPASSWORD", None)
        if self.password:
            env["PGPASSWORD"] = self.password
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return env

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"


@dataclass(frozen=True)
class CompressionSpec:
    """How the stored bytes are compressed: zstd (level, threads) by the server, the client tool, or
    our pipeline; or not at all."""

    algorithm: str = "zstd"
    level: int = 3
    workers: int = 2
    where: str = "server"

    @classmethod
    def from_source(cls, source) -> CompressionSpec:
        """From a ``sources.Source`` (its ``compression`` and effective ``compression_where``)."""
        comp = source.compression
        return cls(
            algorithm=str(comp.algorithm.value if hasattr(comp.algorithm, "value") else comp.algorithm),
            level=int(comp.level),
            workers=int(comp.workers),
            where=str(getattr(source.compression_where, "value", source.compression_where)),
        )

    @property
    def enabled(self) -> bool:
        return self.algorithm != "none"

    @property
    def label(self) -> str | None:
        """The catalog's compression_type, e.g. ``zstd:3 server``; None when uncompressed."""
        return f"{self.algorithm}:{self.level} {self.where}" if self.enabled else None

    def moved_to(self, where: str) -> CompressionSpec:
        return CompressionSpec(algorithm=self.algorithm, level=self.level, workers=self.workers, where=where)


@dataclass(frozen=True)
class ProducerSpec:
    """One producer process: its argv/env, what it writes, and who compresses it."""

    engine: str  # pg_basebackup | pg_dump
    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)
    backup_format: str  # binary | sql_dump (the catalog's backup_format_enum)
    content: str  # tar | pg_dump_custom
    compression: CompressionSpec
    has_manifest: bool = False
    notes: tuple[str, ...] = ()

    @property
    def pipeline_compresses(self) -> bool:
        return self.compression.enabled and self.compression.where == "pipeline"

    def args_for_metadata(self) -> list[str]:
        """argv without the binary's folder (and without secrets: there are none on the command line)."""
        return [Path(self.argv[0]).name, *self.argv[1:]]


def version_text(version_num: int) -> str:
    """``150004`` → ``15.4`` (server_version_num of PostgreSQL 10 and later)."""
    major, minor = divmod(version_num, 10000)
    return f"{major}.{minor}"


def check_supported(*, method: str, backup_type: str, server_version_num: int, logical_format: str = "custom") -> None:
    """Raise UnsupportedBackup when ``method``/``backup_type`` cannot be taken of this server."""
    if backup_type in ("incremental", "differential"):
        if method != "physical":
            raise UnsupportedBackup(f"{backup_type} backups are physical only (pg_dump takes full backups)")
        if server_version_num < INCREMENTAL_MIN_VERSION:
            raise UnsupportedBackup(
                f"{backup_type} backups need PostgreSQL 17 (pg_basebackup --incremental); this server runs "
                f"PostgreSQL {version_text(server_version_num)}: take full backups plus WAL archiving instead"
            )
        raise UnsupportedBackup(
            f"{backup_type} backups with pg_basebackup --incremental are not implemented yet "
            f"(server PostgreSQL {version_text(server_version_num)}); take full backups plus WAL archiving"
        )
    if backup_type != "full":
        raise UnsupportedBackup(f"backup type {backup_type!r} is not taken by a backup run (WAL is archived continuously)")
    if method == "logical" and logical_format != "custom":
        raise UnsupportedBackup(
            f"pg_dump format {logical_format!r} writes a folder, not a stream: the streaming pipeline takes "
            "the custom format (-Fc; pg_restore -j still restores it in parallel)"
        )


def physical_full(*, endpoint: PgEndpoint, compression: CompressionSpec, bindir: Path | None = None) -> ProducerSpec:
    """``pg_basebackup`` to stdout: tar, WAL fetched at the end, fast checkpoint, zstd by PostgreSQL."""
    bindir = bindir or pg_bindir()
    argv = [str(bindir / "pg_basebackup"), *endpoint.tool_args(), "-D", "-", "-Ft", "-X", "fetch", "-c", "fast",
            "--verbose"]
    notes: list[str] = []
    has_manifest = True
    if compression.enabled and compression.where == "pipeline":
        notes.append("zstd by the pipeline (pg_basebackup writes plain tar)")
    elif compression.enabled:
        opts = f"level={compression.level}" + (f",workers={compression.workers}" if compression.workers > 1 else "")
        argv.append(f"--compress={compression.where}-{compression.algorithm}:{opts}")
        if compression.where == "server":
            # The client cannot inject backup_manifest into a stream the server compressed.
            argv.append("--no-manifest")
            has_manifest = False
            notes.append("no backup manifest (server compression); verification restores and runs amcheck")
    return ProducerSpec(
        engine="pg_basebackup",
        argv=tuple(argv),
        env=endpoint.tool_env(),
        backup_format="binary",
        content="tar",
        compression=compression,
        has_manifest=has_manifest,
        notes=tuple(notes),
    )


def logical_full(
    *,
    endpoint: PgEndpoint,
    compression: CompressionSpec,
    server_version_num: int,
    snapshot: str | None = None,
    bindir: Path | None = None,
) -> ProducerSpec:
    """``pg_dump -Fc`` of ``endpoint.dbname`` to stdout (in ``snapshot`` when given)."""
    bindir = bindir or pg_bindir()
    argv = [str(bindir / "pg_dump"), *endpoint.tool_args(), "-d", endpoint.dbname, "-Fc"]
    notes: list[str] = []
    if compression.enabled and compression.where == "server":
        raise UnsupportedBackup("pg_dump cannot compress on the server; use compression 'client' or 'pipeline'")
    if compression.enabled and compression.where == "client" and server_version_num < PG_DUMP_ZSTD_MIN_VERSION:
        notes.append(
            f"pg_dump of PostgreSQL {version_text(server_version_num)} has no zstd (16+): zstd by the pipeline"
        )
        compression = compression.moved_to("pipeline")
    if compression.enabled and compression.where == "client":
        argv.append(f"--compress=zstd:{compression.level}")
    else:
        argv.append("--compress=0")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return ProducerSpec(
        engine="pg_dump",
        argv=tuple(argv),
        env=endpoint.tool_env(),
        backup_format="sql_dump",
        content="pg_dump_custom",
        compression=compression,
        notes=tuple(notes),
    )


# --- pg_basebackup --verbose and WAL names -------------------------------------------------------------

_START_RE = re.compile(r"write-ahead log start point: ([0-9A-F]+/[0-9A-F]+) on timeline (\d+)")
_END_RE = re.compile(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)")


def parse_basebackup_log(text: str) -> dict:
    """start_lsn, stop_lsn and timeline from ``pg_basebackup --verbose`` stderr (None where missing)."""
    start = _START_RE.search(text)
    end = _END_RE.search(text)
    return {
        "start_lsn": start.group(1) if start else None,
        "timeline": int(start.group(2)) if start else None,
        "stop_lsn": end.group(1) if end else None,
    }


def lsn_to_int(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def wal_file_name(*, timeline: int, lsn: str, segment_size: int) -> str:
    """The WAL segment file holding ``lsn`` (e.g. ``000000010000000000000032``)."""
    segno = lsn_to_int(lsn) // segment_size
    per_xlogid = 0x100000000 // segment_size
    return f"{timeline:08X}{segno // per_xlogid:08X}{segno % per_xlogid:08X}"
