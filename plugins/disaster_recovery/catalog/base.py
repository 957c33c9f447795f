"""What the catalog's parts share: its errors and the helpers that prepare values for its tables."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import URL, Connection

from disaster_recovery.catalog.records import to_json


class CatalogError(RuntimeError):
    """A catalog operation could not be carried out."""


class NotFound(CatalogError, LookupError):
    """The row asked for does not exist."""


class ConflictingExecution(CatalogError):
    """Another execution of the same plan is still initiated or in progress."""

    def __init__(
        self, execution_id: uuid.UUID, execution_name: str, plan_id: uuid.UUID | None, message: str | None = None
    ) -> None:
        self.execution_id = execution_id
        self.execution_name = execution_name
        self.plan_id = plan_id
        super().__init__(
            message or f"plan {plan_id} already has a running execution: '{execution_name}' ({execution_id})"
        )


class DuplicateExecution(ConflictingExecution):
    """This run was triggered while another execution of the same plan was running (it may have ended since)."""

    def __init__(
        self, execution_id: uuid.UUID, execution_name: str, plan_id: uuid.UUID | None, *, ended_at: Any = None
    ) -> None:
        self.ended_at = ended_at
        state = f"it ended at {ended_at:%Y-%m-%d %H:%M:%S} UTC" if ended_at else "it is still running"
        super().__init__(
            execution_id, execution_name, plan_id,
            f"duplicate of execution {execution_id} ('{execution_name}'), triggered while it was running ({state})",
        )


# -- value preparation --------------------------------------------------------------------------------
def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _prepare(table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check column names and make values bindable: JSON-safe JSONB, lists for arrays, aware timestamps."""
    unknown = sorted(set(values) - set(table.c.keys()))
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {', '.join(unknown)}")
    prepared: dict[str, Any] = {}
    for name, value in values.items():
        column_type = table.c[name].type
        if value is None:
            prepared[name] = None
        elif isinstance(column_type, JSONB):
            prepared[name] = to_json(value)
        elif isinstance(column_type, ARRAY):
            if isinstance(value, str):
                raise ValueError(f"{table.name}.{name} takes a list of strings, not a string")
            prepared[name] = list(value)
        elif isinstance(value, dt.datetime) and value.tzinfo is None:
            raise ValueError(f"{table.name}.{name}: naive datetime {value!r}; pass a timezone-aware one")
        elif name in ("id", "plan_id", "execution_id"):
            prepared[name] = _uuid(value)
        else:
            prepared[name] = value
    return prepared


def _url_from_libpq_dsn(dsn: str) -> URL:
    from psycopg2.extensions import parse_dsn

    params = parse_dsn(dsn)
    port = params.pop("port", None)
    return URL.create(
        "postgresql+psycopg2",
        username=params.pop("user", None),
        password=params.pop("password", None),
        host=params.pop("host", None),
        port=int(port) if port else None,
        database=params.pop("dbname", None),
        query=params,
    )


def _check_choice(label: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{label} {value!r} is not one of {', '.join(choices)}")


def _lock_key(conn: Connection, key: str) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key})
