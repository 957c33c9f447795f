"""What a backup records about its source: server facts and exact per-table row counts.

Row counts are ``count(*)`` of every user table, in one REPEATABLE READ snapshot opened just before the
producer starts (counted on a thread while the backup streams). For a logical backup pg_dump runs in
that very snapshot (``pg_export_snapshot`` + ``pg_dump --snapshot``), so the counts are exact. For a
physical backup they are exact only if no transaction completed between the snapshot and the end of
the backup: the snapshot's xmax is compared with the server's after the backup (``counts_exact``).
Unlogged tables are left out of physical counts (pg_basebackup does not copy their data).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from psycopg2 import sql

from disaster_recovery.backups.engines import PgEndpoint

_TABLES_SQL = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND (%s OR c.relpersistence = 'p')
ORDER BY 1, 2
"""


def list_tables(cur, *, include_unlogged: bool) -> list[tuple[str, str]]:
    cur.execute(_TABLES_SQL, (include_unlogged,))
    return [(row[0], row[1]) for row in cur.fetchall()]


def count_rows(cur, tables: list[tuple[str, str]]) -> dict[str, int]:
    """``{"schema.table": count}``. Inside a transaction each count runs under a savepoint: a table that
    cannot be read (a damaged page, say) is left out and does not abort the transaction (which may be
    holding the snapshot pg_dump imports)."""
    counts: dict[str, int] = {}
    in_transaction = not cur.connection.autocommit
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        if not in_transaction:
            cur.execute(query)
            counts[f"{schema}.{table}"] = int(cur.fetchone()[0])
            continue
        cur.execute("SAVEPOINT row_count")
        try:
            cur.execute(query)
            counts[f"{schema}.{table}"] = int(cur.fetchone()[0])
        except Exception:
            cur.execute("ROLLBACK TO SAVEPOINT row_count")
            continue
        cur.execute("RELEASE SAVEPOINT row_count")
    return counts


def _one(cur, query: str):
    """The first value of ``query``; None when it fails (a fact we may not read: privileges, standby)."""
    in_transaction = not cur.connection.autocommit
    try:
        if in_transaction:
            cur.execute("SAVEPOINT fact")
        cur.execute(query)
        value = cur.fetchone()[0]
        if in_transaction:
            cur.execute("RELEASE SAVEPOINT fact")
        return value
    except Exception:
        if in_transaction:
            cur.execute("ROLLBACK TO SAVEPOINT fact")
        return None


def server_facts(cur) -> dict:
    """Version, identity, timeline, WAL position, segment size, bootstrap superuser, sizes."""
    facts = {
        "server_version": _one(cur, "SHOW server_version"),
        "server_version_num": int(_one(cur, "SHOW server_version_num")),
        "system_identifier": _one(cur, "SELECT system_identifier::text FROM pg_control_system()"),
        "timeline": _one(cur, "SELECT timeline_id FROM pg_control_checkpoint()"),
        "in_recovery": _one(cur, "SELECT pg_is_in_recovery()"),
        "wal_segment_size": int(_one(cur, "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'") or 0)
        or 16 * 1024 * 1024,
        "bootstrap_superuser": _one(cur, "SELECT rolname FROM pg_roles WHERE oid = 10"),
        "database": _one(cur, "SELECT current_database()"),
        "database_size_bytes": _one(cur, "SELECT pg_database_size(current_database())"),
        "cluster_size_bytes": _one(cur, "SELECT sum(pg_database_size(oid))::bigint FROM pg_database"),
        "server_time": _one(cur, "SELECT clock_timestamp()"),
        "archive_mode": _one(cur, "SELECT setting FROM pg_settings WHERE name = 'archive_mode'"),
    }
    if facts["in_recovery"]:
        facts["wal_lsn"] = _one(cur, "SELECT pg_last_wal_replay_lsn()::text")
    else:
        facts["wal_lsn"] = _one(cur, "SELECT pg_current_wal_lsn()::text")
    return facts


def next_xid_mark(cur) -> str | None:
    """The xmax of a fresh snapshot: it moves whenever a transaction (with an xid) completes."""
    return _one(cur, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text")


@dataclass
class SourceSnapshot:
    """A REPEATABLE READ transaction on the source, held open for the length of one backup."""

    endpoint: PgEndpoint
    include_unlogged: bool
    facts: dict = field(default_factory=dict)
    tables: list[tuple[str, str]] = field(default_factory=list)
    exported_snapshot: str | None = None
    xmax_before: str | None = None
    row_counts: dict[str, int] | None = None
    count_error: str | None = None

    def __post_init__(self) -> None:
        self._conn = None
        self._thread: threading.Thread | None = None

    def open(self, *, export: bool) -> SourceSnapshot:
        self._conn = self.endpoint.connect(autocommit=False)
        self._conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur = self._conn.cursor()
        # The first statement fixes the snapshot.
        self.tables = list_tables(cur, include_unlogged=self.include_unlogged)
        if export:
            cur.execute("SELECT pg_export_snapshot()")
            self.exported_snapshot = cur.fetchone()[0]
        self.facts = server_facts(cur)
        self.xmax_before = next_xid_mark(cur)
        return self

    def start_counting(self) -> None:
        """Count the rows on a thread (psycopg2 releases the GIL while the server works)."""
        self._thread = threading.Thread(target=self._count, daemon=True, name="row-counts")
        self._thread.start()

    def _count(self) -> None:
        try:
            self.row_counts = count_rows(self._conn.cursor(), self.tables)
            missing = [f"{s}.{t}" for s, t in self.tables if f"{s}.{t}" not in self.row_counts]
            if missing:
                self.count_error = f"could not count {', '.join(missing[:20])}"
        except Exception as exc:  # reported in the metadata; the backup itself does not depend on it
            self.count_error = f"{type(exc).__name__}: {exc}".strip()

    def finish_counting(self, *, timeout: float = 3600) -> dict[str, int] | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.row_counts

    def counts_exact(self) -> bool:
        """True when no transaction completed on the server since the snapshot (physical backups)."""
        if self.xmax_before is None:
            return False
        conn = self.endpoint.connect(autocommit=True)
        try:
            return next_xid_mark(conn.cursor()) == self.xmax_before
        finally:
            conn.close()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(60)
        if self._conn is not None:
            try:
                self._conn.rollback()
            finally:
                self._conn.close()
                self._conn = None
