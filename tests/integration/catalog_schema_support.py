"""Helpers of the catalog schema tests: the spec's SQL, applying SQL with psql, schema snapshots.

The spec's "Database Schema" section has three SQL blocks (tables, enums, indexes). A verbatim copy of
them is committed at tests/data/spec_schema.sql, one block after a ``-- spec block: <heading>`` line, so
the tests run where the spec is not reachable; a test checks the copy against the spec when it is.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SPEC_FILE = REPO.parent / "shared" / "spec" / "WS-263-disaster-recovery-spec.md"
SPEC_COPY = REPO / "tests" / "data" / "spec_schema.sql"
SQL_DIR = REPO / "sql"
BLOCK_MARKER = "-- spec block: "
# The spec's user references (Supabase auth.users) hold the Airflow user name here.
AUTH_USERS_REF = "UUID REFERENCES auth.users(id)"


def spec_markdown_blocks(markdown: str) -> dict[str, str]:
    """The ```sql blocks of the spec's "## Database Schema" section, keyed by their ### heading."""
    section = markdown.split("\n## Database Schema\n", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, str] = {}
    for match in re.finditer(r"^### (.+?)\n+```sql\n(.*?)^```", section, re.S | re.M):
        blocks[match.group(1).strip()] = match.group(2).strip() + "\n"
    return blocks


def spec_copy_blocks(text: str = "") -> dict[str, str]:
    """The blocks of tests/data/spec_schema.sql, keyed by heading (text before the first marker is a header)."""
    text = text or SPEC_COPY.read_text()
    blocks: dict[str, str] = {}
    for chunk in text.split(BLOCK_MARKER)[1:]:
        heading, _, body = chunk.partition("\n")
        blocks[heading.strip()] = body.strip() + "\n"
    return blocks


def render_spec_copy(blocks: dict[str, str]) -> str:
    return "".join(f"{BLOCK_MARKER}{heading}\n{body}\n" for heading, body in blocks.items())


def spec_sql() -> tuple[str, str, str]:
    """(enums, tables, indexes) SQL of the spec, in the order they can be applied."""
    blocks = spec_copy_blocks()
    enums = next(b for h, b in blocks.items() if "Enum" in h)
    tables = next(b for h, b in blocks.items() if "Tables" in h)
    indexes = next(b for h, b in blocks.items() if "Index" in h)
    return enums, tables, indexes


def spec_sql_for_postgres() -> str:
    """The spec's schema as applicable SQL: enums, tables (auth.users refs -> TEXT), indexes."""
    enums, tables, indexes = spec_sql()
    assert tables.count("auth.users") == tables.count(AUTH_USERS_REF) > 0
    return "\n".join([enums, tables.replace(AUTH_USERS_REF, "TEXT"), indexes])


def expected_enums() -> dict[str, list[str]]:
    enums, _, _ = spec_sql()
    return {
        name: re.findall(r"'([^']*)'", values)
        for name, values in re.findall(r"CREATE TYPE (\w+) AS ENUM \(([^)]*)\)", enums)
    }


def expected_tables() -> list[str]:
    _, tables, _ = spec_sql()
    return re.findall(r"CREATE TABLE (\w+)", tables)


def expected_indexes() -> dict[str, tuple[str, list[str], str | None]]:
    """name -> (table, ["col", "col DESC"], predicate or None)."""
    _, _, indexes = spec_sql()
    found = {}
    for name, table, cols, where in re.findall(r"CREATE INDEX (\w+) ON (\w+)\(([^)]*)\)(?: WHERE ([^;]+))?;", indexes):
        found[name] = (table, [c.strip() for c in cols.split(",")], where or None)
    return found


def psql_apply(cluster, dbname: str, files: list[Path]) -> subprocess.CompletedProcess:
    """Apply SQL files with psql -v ON_ERROR_STOP=1, in the order given (raises on failure)."""
    from disaster_recovery.postgres.cluster import pg_bindir

    argv = [str(pg_bindir() / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", cluster.uri(dbname)]
    for path in files:
        argv += ["-f", str(path)]
    env = dict(os.environ, PGPASSWORD=cluster.password, PGCONNECT_TIMEOUT="10")
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, f"psql failed ({proc.returncode}): {proc.stderr}"
    return proc


def sql_files() -> list[Path]:
    """Every sql/**/*.sql in lexical path order."""
    return sorted(SQL_DIR.rglob("*.sql"), key=lambda p: p.relative_to(SQL_DIR).as_posix())


EXCLUDED_TABLES = ("dr_schema_migrations",)


def snapshot(cluster, dbname: str) -> dict[str, object]:
    """What the schema is made of, as comparable data: tables, columns, enums, constraints, indexes."""
    exclude = EXCLUDED_TABLES

    def q(sql: str) -> list[tuple]:
        return cluster.query(sql, (list(exclude),), dbname=dbname)

    return {
        "tables": q(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_name <> ALL(%s) ORDER BY 1"
        ),
        "columns": q(
            "SELECT table_name, ordinal_position, column_name, data_type, udt_name, character_maximum_length, "
            "numeric_precision, numeric_scale, datetime_precision, interval_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> ALL(%s) "
            "ORDER BY table_name, ordinal_position"
        ),
        "enums": q(
            "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t "
            "JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE n.nspname = 'public' AND t.typname <> ALL(%s) GROUP BY t.typname ORDER BY 1"
        ),
        "constraints": q(
            "SELECT c.conrelid::regclass::text, c.conname, c.contype, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
            "WHERE n.nspname = 'public' AND c.conrelid::regclass::text <> ALL(%s) ORDER BY 1, 2"
        ),
        "indexes": q(
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename <> ALL(%s) ORDER BY 1, 2"
        ),
    }
