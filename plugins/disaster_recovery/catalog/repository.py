"""The catalog repository: SQLAlchemy Core reads and writes of the nine tables, returning frozen records.

Conventions: every method runs in its own transaction; JSONB arguments take plain Python values (dicts,
lists; datetimes, UUIDs, Decimals and timedeltas inside them are made JSON-safe); timestamps must be
timezone-aware and come back as aware UTC; INTERVAL columns take and give `timedelta`.

Concurrency: `open_execution` locks the plan row (``SELECT ... FOR NO KEY UPDATE``) before it looks for a
running execution of the plan, so of two callers racing for the same plan exactly one opens and the other
gets `ConflictingExecution`. `upsert_plan` serialises writers of one plan name with a transaction-level
advisory lock (the spec has no unique constraint on ``plan_name``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Engine, Table, create_engine, func, insert, or_, select, update
from sqlalchemy.engine import URL, make_url

from disaster_recovery.catalog.base import (
    CatalogError,
    ConflictingExecution,
    NotFound,
    _lock_key,
    _prepare,
    _url_from_libpq_dsn,
    _uuid,
)
from disaster_recovery.catalog.executions import ExecutionRows
from disaster_recovery.catalog.monitoring import MonitoringRows
from disaster_recovery.catalog.records import (
    PlanRecord,
    StepSpec,
    normalize,
)
from disaster_recovery.catalog.tables import (
    TABLES,
    disaster_recovery_plans,
)


class Catalog(ExecutionRows, MonitoringRows):
    """Reads and writes of the catalog through one SQLAlchemy Engine (thread-safe, pooled)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_dsn(cls, url: str | URL, **engine_kwargs: Any) -> Catalog:
        """A catalog on a SQLAlchemy URL (``postgresql+psycopg2://...``) or a libpq ``key=value`` DSN."""
        engine_kwargs.setdefault("pool_pre_ping", True)
        if isinstance(url, str) and "://" not in url:
            url = _url_from_libpq_dsn(url)
        return cls(create_engine(make_url(url), **engine_kwargs))

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    # -- plans ----------------------------------------------------------------------------------------
    def upsert_plan(
        self,
        *,
        plan_name: str,
        disaster_scenario: str,
        plan_version: str,
        plan_document: dict,
        recovery_procedures: Any,
        resource_requirements: Any,
        dependencies: Any,
        estimated_rto: dt.timedelta,
        estimated_rpo: dt.timedelta,
        approval_status: str,
        approved_by: str | None,
        approved_at: dt.datetime | None,
        effective_date: dt.date | None,
        review_frequency: dt.timedelta,
        next_review_date: dt.date | None,
        created_by: str | None = None,
    ) -> PlanRecord:
        """Insert the plan, or update the newest row of that name; ``updated_at`` moves only on a change.

        ``created_by`` is written on insert only.
        """
        t = disaster_recovery_plans
        values = _prepare(
            t,
            {
                "disaster_scenario": disaster_scenario,
                "plan_version": plan_version,
                "plan_document": plan_document,
                "recovery_procedures": recovery_procedures,
                "resource_requirements": resource_requirements,
                "dependencies": dependencies,
                "estimated_rto": estimated_rto,
                "estimated_rpo": estimated_rpo,
                "approval_status": approval_status,
                "approved_by": approved_by,
                "approved_at": approved_at,
                "effective_date": effective_date,
                "review_frequency": review_frequency,
                "next_review_date": next_review_date,
            },
        )
        with self.engine.begin() as conn:
            _lock_key(conn, f"dr_plan:{plan_name}")
            current = conn.execute(
                select(t.c.id)
                .where(t.c.plan_name == plan_name)
                .order_by(t.c.created_at.desc().nulls_last(), t.c.id.desc())
                .limit(1)
            ).scalar()
            if current is None:
                row = (
                    conn.execute(insert(t).values(plan_name=plan_name, created_by=created_by, **values).returning(t))
                    .mappings()
                    .one()
                )
            else:
                changed = or_(*(t.c[name].is_distinct_from(value) for name, value in values.items()))
                row = (
                    conn.execute(
                        update(t).where(t.c.id == current, changed).values(**values, updated_at=func.now()).returning(t)
                    )
                    .mappings()
                    .one_or_none()
                )
                if row is None:  # nothing changed
                    row = conn.execute(select(t).where(t.c.id == current)).mappings().one()
        return PlanRecord.from_row(row)

    def get_plan(self, plan_id: uuid.UUID | str) -> PlanRecord:
        t = disaster_recovery_plans
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == _uuid(plan_id))).mappings().one_or_none()
        if row is None:
            raise NotFound(f"no recovery plan with id {plan_id}")
        return PlanRecord.from_row(row)

    def latest_plan(self, plan_name: str) -> PlanRecord | None:
        """The newest plan row of that name, or None."""
        t = disaster_recovery_plans
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(t)
                    .where(t.c.plan_name == plan_name)
                    .order_by(t.c.created_at.desc().nulls_last(), t.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .one_or_none()
            )
        return None if row is None else PlanRecord.from_row(row)

    # -- executions -----------------------------------------------------------------------------------
    # -- generic --------------------------------------------------------------------------------------
    def insert(self, table_name: str, **values: Any) -> dict[str, Any]:
        """Insert one row into any catalog table; returns the whole row (a plain dict, normalised)."""
        t = self._table(table_name)
        with self.engine.begin() as conn:
            row = conn.execute(insert(t).values(**_prepare(t, values)).returning(t)).mappings().one()
        return {k: normalize(v) for k, v in row.items()}

    def update_row(self, table_name: str, row_id: uuid.UUID | str, **values: Any) -> dict[str, Any]:
        """Update one row (by id) of any catalog table; returns the whole row."""
        if not values:
            raise ValueError("update_row needs at least one column")
        t = self._table(table_name)
        with self.engine.begin() as conn:
            row = (
                conn.execute(update(t).where(t.c.id == _uuid(row_id)).values(**_prepare(t, values)).returning(t))
                .mappings()
                .one_or_none()
            )
        if row is None:
            raise NotFound(f"no {table_name} row with id {row_id}")
        return {k: normalize(v) for k, v in row.items()}

    @staticmethod
    def _table(table_name: str) -> Table:
        try:
            return TABLES[table_name]
        except KeyError:
            raise ValueError(f"{table_name!r} is not a catalog table ({', '.join(sorted(TABLES))})") from None


def catalog_from_connection(conn_id: str = "dr_catalog", **engine_kwargs: Any) -> Catalog:
    """A catalog on the database of an Airflow Postgres connection (psycopg2 unless the connection's
    ``sqlalchemy_scheme`` extra names another driver; libpq extras such as sslmode are passed on)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id)
    extra = hook.connection.extra_dejson
    url = hook.sqlalchemy_url
    if not extra.get("sqlalchemy_scheme"):
        url = url.set(drivername="postgresql+psycopg2")
    libpq = {
        k: str(v)
        for k, v in extra.items()
        if k
        in (
            "sslmode",
            "sslrootcert",
            "sslcert",
            "sslkey",
            "connect_timeout",
            "application_name",
            "options",
            "target_session_attrs",
            "keepalives",
            "keepalives_idle",
        )
        and k not in url.query
    }
    if libpq:
        url = url.update_query_dict(libpq)
    return Catalog.from_dsn(url, **engine_kwargs)


__all__ = [
    "Catalog",
    "CatalogError",
    "ConflictingExecution",
    "NotFound",
    "StepSpec",
    "catalog_from_connection",
]
