"""``catalog migrate``: apply the catalog schema (sql/) to a database, once per file."""

from __future__ import annotations

import argparse
import os
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    catalog = subparsers.add_parser("catalog", help="the DR catalog database")
    commands = catalog.add_subparsers(title="catalog commands", metavar="COMMAND", required=True)
    migrate = commands.add_parser(
        "migrate",
        help="apply the migrations in sql/ not yet applied (recorded in dr_schema_migrations)",
        description="Apply sql/**/*.sql in lexical order to the catalog database, each file once.",
    )
    target = migrate.add_mutually_exclusive_group()
    target.add_argument("--dsn", help="libpq connection string (default: $DR_CATALOG_DSN)")
    target.add_argument("--conn-id", help="an Airflow postgres connection id (e.g. dr_catalog)")
    migrate.set_defaults(handler=migrate_command)


def _dsn_from_connection(conn_id: str) -> str:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=conn_id).get_connection(conn_id)
    parts = {"host": conn.host, "port": conn.port, "dbname": conn.schema, "user": conn.login,
             "password": conn.password}
    return " ".join(f"{k}={v}" for k, v in parts.items() if v not in (None, ""))


def migrate_command(args: argparse.Namespace) -> int:
    from disaster_recovery.catalog.migrations import MigrationError, migrate

    dsn = args.dsn or (os.environ.get("DR_CATALOG_DSN") if not args.conn_id else None)
    if args.conn_id:
        dsn = _dsn_from_connection(args.conn_id)
    if not dsn:
        print("catalog migrate: give --dsn, --conn-id or $DR_CATALOG_DSN", file=sys.stderr)
        return 2
    try:
        report = migrate(dsn)
    except MigrationError as exc:
        print(f"catalog migrate: {exc}", file=sys.stderr)
        return 1
    print(report.sentence())
    return 0
