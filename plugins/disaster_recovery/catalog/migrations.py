"""Apply the catalog schema in `sql/` once: a migration runner of a few lines.

Contract of `sql/`: plain `.sql` files; applying every `sql/**/*.sql` in lexical path order to an empty
database creates the catalog (psql -v ON_ERROR_STOP=1 does the same). This runner records each applied
file with its SHA-256 in `dr_schema_migrations`, so a second run applies nothing, and refuses to go on
when a file that was applied has changed since (a migration is never edited, a new one is added).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg2

SQL_DIR = Path(__file__).resolve().parents[3] / "sql"
LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS dr_schema_migrations (
    filename TEXT PRIMARY KEY,
    sha256 CHAR(64) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
)
"""


class MigrationError(RuntimeError):
    """A migration failed or an applied migration file was changed."""


@dataclass(frozen=True)
class MigrationReport:
    applied: tuple[str, ...]
    skipped: tuple[str, ...]

    def sentence(self) -> str:
        if not self.applied:
            return f"catalog schema up to date ({len(self.skipped)} migrations already applied)"
        return f"applied {len(self.applied)} migration(s): {', '.join(self.applied)}"


def migration_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """Every `.sql` file under sql_dir, in lexical order of the path relative to it."""
    return sorted(sql_dir.rglob("*.sql"), key=lambda p: p.relative_to(sql_dir).as_posix())


def migrate(dsn: str, *, sql_dir: Path = SQL_DIR) -> MigrationReport:
    """Apply the migrations not yet applied to the database at ``dsn``, each in its own transaction."""
    applied: list[str] = []
    skipped: list[str] = []
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            # One runner at a time per database: two `make run`s racing must not apply a file twice.
            cur.execute("SELECT pg_advisory_lock(hashtext('dr_schema_migrations'))")
            cur.execute(LEDGER_DDL)
            cur.execute("SELECT filename, sha256 FROM dr_schema_migrations")
            done = dict(cur.fetchall())
        for path in migration_files(sql_dir):
            name = path.relative_to(sql_dir).as_posix()
            text = path.read_text()
            digest = hashlib.sha256(text.encode()).hexdigest()
            if name in done:
                if done[name] != digest:
                    raise MigrationError(
                        f"{path}: changed since it was applied (sha256 {done[name][:12]}… now {digest[:12]}…); "
                        "add a new migration instead of editing an applied one"
                    )
                skipped.append(name)
                continue
            try:
                with conn, conn.cursor() as cur:
                    cur.execute(text)
                    cur.execute(
                        "INSERT INTO dr_schema_migrations (filename, sha256) VALUES (%s, %s)", (name, digest)
                    )
            except psycopg2.Error as exc:
                raise MigrationError(f"{path}: {exc.pgerror or exc}".strip()) from exc
            applied.append(name)
    finally:
        conn.close()
    return MigrationReport(applied=tuple(applied), skipped=tuple(skipped))
