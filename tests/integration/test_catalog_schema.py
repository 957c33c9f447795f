"""The catalog schema in sql/ against the spec: tables, enums, indexes, columns; and the migration runner.

Everything runs on a real PostgreSQL 15 cluster (the session's control cluster): sql/ is applied with
psql -v ON_ERROR_STOP=1 to one empty database, the spec's own SQL (auth.users refs -> TEXT) to another,
and the two are compared through information_schema and pg_catalog.
"""

from __future__ import annotations

import re
import secrets
import shutil

import pytest

from disaster_recovery.catalog.migrations import MigrationError, migrate, migration_files
from tests.integration.catalog_schema_support import (
    SPEC_FILE,
    SQL_DIR,
    expected_enums,
    expected_indexes,
    expected_tables,
    psql_apply,
    snapshot,
    spec_copy_blocks,
    spec_markdown_blocks,
    spec_sql,
    spec_sql_for_postgres,
    sql_files,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def new_database(control_cluster):
    """A factory of empty databases on the control cluster, dropped when the module ends."""
    created: list[str] = []

    def make(prefix: str) -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        control_cluster.create_database(name)
        created.append(name)
        return name

    yield make
    for name in created:
        control_cluster.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def psql_db(control_cluster, new_database) -> str:
    """An empty database with every sql/**/*.sql applied by psql in lexical path order."""
    name = new_database("psql")
    psql_apply(control_cluster, name, sql_files())
    return name


@pytest.fixture(scope="module")
def spec_db(control_cluster, new_database, tmp_path_factory) -> str:
    """An empty database with the spec's SQL applied (enums, tables, indexes)."""
    name = new_database("spec")
    path = tmp_path_factory.mktemp("spec") / "spec.sql"
    path.write_text(spec_sql_for_postgres())
    psql_apply(control_cluster, name, [path])
    return name


# -- the committed copy of the spec's SQL ----------------------------------------------------------------
def test_spec_copy_has_the_three_schema_blocks():
    blocks = spec_copy_blocks()
    assert list(blocks) == ["Core Tables", "Enums and Custom Types", "Indexes for Performance"]
    assert len(expected_tables()) == 9
    assert len(expected_enums()) == 18
    assert len(expected_indexes()) == 26


def test_spec_copy_equals_the_spec():
    if not SPEC_FILE.is_file():
        pytest.skip(f"spec not reachable at {SPEC_FILE}")
    assert spec_copy_blocks() == spec_markdown_blocks(SPEC_FILE.read_text())


# -- sql/ applied by psql ------------------------------------------------------------------------------
def test_sql_files_are_the_migration_runners_files():
    assert sql_files() == migration_files(SQL_DIR)
    assert [p.name for p in sql_files()][:3] == ["001_enums.sql", "002_tables.sql", "003_indexes.sql"]


def test_exactly_the_nine_tables(control_cluster, psql_db):
    rows = control_cluster.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        dbname=psql_db,
    )
    assert sorted(r[0] for r in rows) == sorted(expected_tables())
    assert len(rows) == 9


def test_exactly_the_eighteen_enums_in_spec_order(control_cluster, psql_db):
    rows = control_cluster.query(
        "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t "
        "JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = 'public' GROUP BY t.typname",
        dbname=psql_db,
    )
    assert dict(rows) == expected_enums()
    assert len(rows) == 18


def test_exactly_the_twenty_six_indexes_with_their_columns(control_cluster, psql_db):
    rows = control_cluster.query(
        """
        SELECT i.relname, t.relname,
               array(SELECT pg_get_indexdef(x.indexrelid, k, true)
                            || CASE WHEN x.indoption[k - 1] & 1 = 1 THEN ' DESC' ELSE '' END
                     FROM generate_series(1, x.indnkeyatts) k ORDER BY k),
               pg_get_expr(x.indpred, x.indrelid)
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid
        JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = t.relnamespace
        WHERE n.nspname = 'public'
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        """,
        dbname=psql_db,
    )
    actual = {name: (table, cols, pred.strip("()") if pred else None) for name, table, cols, pred in rows}
    assert actual == expected_indexes()
    assert len(actual) == 26


def test_every_table_matches_the_spec_sql(control_cluster, psql_db, spec_db):
    ours, spec = snapshot(control_cluster, psql_db), snapshot(control_cluster, spec_db)
    assert len(ours["columns"]) > 150
    for key in ("tables", "enums", "columns", "constraints", "indexes"):
        assert ours[key] == spec[key], key


def test_user_references_are_text(control_cluster, psql_db):
    """The spec's auth.users(id) references hold the Airflow user name: TEXT, without a foreign key."""
    _, tables, _ = spec_sql()
    refs = set()
    for table, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", tables, re.S):
        refs |= {(table, column) for column in re.findall(r"(\w+) UUID REFERENCES auth\.users", body)}
    assert len(refs) == 6
    rows = control_cluster.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'public' AND data_type = 'text' AND column_name <> ALL(%s)",
        (["failover_reason", "error_message"],),
        dbname=psql_db,
    )
    assert {(t, c) for t, c, _ in rows} == refs


# -- the migration runner ------------------------------------------------------------------------------
def test_migrate_applies_all_then_nothing(control_cluster, new_database, psql_db):
    name = new_database("migrated")
    first = migrate(control_cluster.dsn(name))
    assert first.applied == tuple(p.relative_to(SQL_DIR).as_posix() for p in sql_files())
    assert first.skipped == ()
    assert snapshot(control_cluster, name) == snapshot(control_cluster, psql_db)

    second = migrate(control_cluster.dsn(name))
    assert second.applied == ()
    assert second.skipped == first.applied
    assert "up to date" in second.sentence()


def test_migrate_refuses_a_changed_applied_file(control_cluster, new_database, tmp_path):
    sql_dir = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql_dir)
    name = new_database("changed")
    migrate(control_cluster.dsn(name), sql_dir=sql_dir)

    (sql_dir / "004_more.sql").write_text("CREATE TABLE dr_extra (id INTEGER);\n")
    assert migrate(control_cluster.dsn(name), sql_dir=sql_dir).applied == ("004_more.sql",)

    changed = sql_dir / "002_tables.sql"
    changed.write_text(changed.read_text() + "\n-- edited after it was applied\n")
    with pytest.raises(MigrationError, match="002_tables.sql"):
        migrate(control_cluster.dsn(name), sql_dir=sql_dir)
    assert control_cluster.query("SELECT count(*) FROM dr_schema_migrations", dbname=name) == [(4,)]
