"""The SQLAlchemy metadata (disaster_recovery.catalog.tables) agrees with the catalog sql/ creates.

Both directions: reflecting a database migrated from sql/ gives the same tables, columns, types,
nullability, keys, indexes and enums as the metadata; and `metadata.create_all` on a database that holds
only the enum types (sql/001_enums.sql) creates exactly the schema sql/ creates (defaults included).
"""

from __future__ import annotations

import dataclasses
import secrets

import pytest
from sqlalchemy import MetaData, create_engine
from sqlalchemy.dialects import postgresql

from disaster_recovery.catalog import records, tables
from tests.integration.catalog_schema_support import (
    EXCLUDED_TABLES,
    SQL_DIR,
    expected_enums,
    expected_indexes,
    psql_apply,
    snapshot,
)

pytestmark = pytest.mark.integration
DIALECT = postgresql.dialect()


@pytest.fixture(scope="module")
def reflected(catalog_cluster_db) -> MetaData:
    cluster, dbname = catalog_cluster_db
    engine = create_engine(cluster.uri(dbname))
    try:
        md = MetaData()
        md.reflect(engine)
    finally:
        engine.dispose()
    for name in EXCLUDED_TABLES:
        md.remove(md.tables[name])
    return md


def _index_shape(index) -> tuple:
    where = index.dialect_options["postgresql"]["where"]
    return (
        index.table.name,
        tuple(str(e) for e in index.expressions),
        index.unique,
        str(where).strip("()") if where is not None else None,
    )


def test_same_tables(reflected):
    assert set(reflected.tables) == set(tables.metadata.tables)
    assert len(tables.TABLES) == 9


@pytest.mark.parametrize("table_name", sorted(tables.TABLES))
def test_same_columns(reflected, table_name):
    ours, theirs = tables.TABLES[table_name], reflected.tables[table_name]
    assert [c.name for c in ours.columns] == [c.name for c in theirs.columns]
    for mine in ours.columns:
        db = theirs.c[mine.name]
        where = f"{table_name}.{mine.name}"
        assert mine.type.compile(dialect=DIALECT) == db.type.compile(dialect=DIALECT), where
        assert mine.type._type_affinity is db.type._type_affinity, where
        assert mine.nullable == db.nullable, where
        assert mine.primary_key == db.primary_key, where
        assert (mine.server_default is None) == (db.server_default is None), where
        if isinstance(mine.type, postgresql.ENUM):
            assert (mine.type.name, list(mine.type.enums)) == (db.type.name, list(db.type.enums)), where
        if isinstance(mine.type, postgresql.ARRAY):
            assert mine.type.item_type._type_affinity is db.type.item_type._type_affinity, where


@pytest.mark.parametrize("table_name", sorted(tables.TABLES))
def test_same_keys_and_constraints(reflected, table_name):
    ours, theirs = tables.TABLES[table_name], reflected.tables[table_name]
    assert ours.primary_key.name == theirs.primary_key.name == f"{table_name}_pkey"

    def fks(t):
        return sorted(
            (fk.name, tuple(fk.column_keys), tuple(e.target_fullname for e in fk.elements), fk.ondelete)
            for fk in t.foreign_key_constraints
        )

    def uniques(t):
        return sorted(
            (c.name, tuple(col.name for col in c.columns))
            for c in t.constraints
            if type(c).__name__ == "UniqueConstraint"
        )

    assert fks(ours) == fks(theirs)
    assert uniques(ours) == uniques(theirs)


def test_foreign_keys_as_in_the_spec():
    assert tables.recovery_step_executions.c.execution_id.foreign_keys.pop().ondelete == "CASCADE"
    assert tables.recovery_executions.c.plan_id.foreign_keys.pop().ondelete is None


def test_same_indexes(reflected):
    mine = {ix.name: _index_shape(ix) for t in tables.TABLES.values() for ix in t.indexes}
    theirs = {ix.name: _index_shape(ix) for t in reflected.tables.values() for ix in t.indexes}
    assert mine == theirs
    assert len(mine) == len(tables.INDEXES) == 26
    # and against the spec's index list
    spec = {
        name: (table, tuple(f"{table}.{c}" for c in cols), False, where)
        for name, (table, cols, where) in expected_indexes().items()
    }
    assert mine == spec


def test_enum_constants_follow_the_spec(catalog_cluster_db):
    cluster, dbname = catalog_cluster_db
    spec = expected_enums()
    assert {name: list(e.enums) for name, e in tables.ENUMS.items()} == spec
    assert list(tables.ENUMS) == list(spec)
    rows = cluster.query(
        "SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_type t "
        "JOIN pg_enum e ON e.enumtypid = t.oid GROUP BY t.typname",
        dbname=dbname,
    )
    assert dict(rows) == spec
    constants = {
        "recovery_type_enum": tables.RECOVERY_TYPE,
        "priority_level_enum": tables.PRIORITY_LEVEL,
        "disaster_scenario_enum": tables.DISASTER_SCENARIO,
        "approval_status_enum": tables.APPROVAL_STATUS,
        "trigger_type_enum": tables.TRIGGER_TYPE,
        "execution_mode_enum": tables.EXECUTION_MODE,
        "execution_status": tables.EXECUTION_STATUS,
        "step_type_enum": tables.STEP_TYPE,
        "step_status": tables.STEP_STATUS,
        "backup_type_enum": tables.BACKUP_TYPE,
        "backup_format_enum": tables.BACKUP_FORMAT,
        "verification_status_enum": tables.VERIFICATION_STATUS,
        "storage_class_enum": tables.STORAGE_CLASS,
        "access_frequency_enum": tables.ACCESS_FREQUENCY,
        "health_status_enum": tables.HEALTH_STATUS,
        "failover_trigger_type": tables.FAILOVER_TRIGGER_TYPE,
        "failover_status": tables.FAILOVER_STATUS,
        "test_type_enum": tables.TEST_TYPE,
    }
    assert {k: list(v) for k, v in constants.items()} == spec
    assert all(isinstance(v, tuple) for v in constants.values())


def test_create_all_builds_the_same_schema_as_sql(control_cluster, catalog_cluster_db):
    """Defaults, constraints and index definitions too: create_all output == sql/ output."""
    cluster, dbname = catalog_cluster_db
    other = f"create_all_{secrets.token_hex(4)}"
    control_cluster.create_database(other)
    try:
        psql_apply(control_cluster, other, [SQL_DIR / "001_enums.sql"])
        engine = create_engine(control_cluster.uri(other))
        try:
            tables.metadata.create_all(engine)
        finally:
            engine.dispose()
        ours, sql = snapshot(control_cluster, other), snapshot(cluster, dbname)
        for key in ("tables", "enums", "columns", "constraints", "indexes"):
            assert ours[key] == sql[key], key
    finally:
        control_cluster.query(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


@pytest.mark.parametrize(
    ("record", "table"),
    [
        (records.PlanRecord, tables.disaster_recovery_plans),
        (records.ExecutionRecord, tables.recovery_executions),
        (records.StepRecord, tables.recovery_step_executions),
        (records.FailoverEventRecord, tables.failover_events),
    ],
)
def test_records_have_one_field_per_column(record, table):
    assert [f.name for f in dataclasses.fields(record)] == [c.name for c in table.columns]
