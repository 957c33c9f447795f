"""What failover, switchover and rejoin share: phase timing, the result record, slots, synchronous names."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from disaster_recovery.clusters.host.walloss import WalLoss
from disaster_recovery.postgres.replication import ensure_autocommit, fetch_all, fetch_one


class ActionRefused(RuntimeError):
    """The action was not started (or was abandoned before it changed the topology); the message says why."""


class ActionFailed(RuntimeError):
    """The action began changing the cluster and could not finish; the message says where it stopped."""


@dataclass
class Phases:
    """Seconds spent in each named phase, in order, plus the UTC moment each one ended."""

    seconds: dict[str, float] = field(default_factory=dict)
    ended_at: dict[str, str] = field(default_factory=dict)

    @contextlib.contextmanager
    def time(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - started, 4)
            self.ended_at[name] = datetime.now(UTC).isoformat()

    @property
    def total(self) -> float:
        return round(sum(self.seconds.values()), 4)


@dataclass(frozen=True, kw_only=True)
class ActionResult:
    """What a lifecycle action did; ``output`` is the step's output_data, ``sentence`` its one line."""

    action: str  # failover | switchover | rejoin
    cluster: str
    source: str | None  # the member that was primary (failover, switchover) or the member rejoined
    target: str | None  # the new primary, or the primary a rejoined member streams from
    dry_run: bool
    decision: str
    sentence: str
    phases: Phases
    promoted_at: datetime | None = None
    timeline_before: int | None = None
    timeline_after: int | None = None
    lag_bytes: int | None = None  # at the decision
    lag_seconds: float | None = None
    loss: WalLoss | None = None  # measured from the old primary's WAL, when it could be read
    lasting_fence: bool = False
    notes: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def data_loss_bytes(self) -> int | None:
        return self.loss.lost_bytes if self.loss is not None else self.lag_bytes

    @property
    def data_loss_seconds(self) -> float | None:
        return self.loss.lost_seconds if self.loss is not None else self.lag_seconds

    def output(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "cluster": self.cluster,
            "dry_run": self.dry_run,
            "promoted": self.promoted_at is not None,
            "promoted_at": self.promoted_at.isoformat() if self.promoted_at else None,
            "old_primary": self.source if self.action != "rejoin" else None,
            "new_primary": self.target if self.action != "rejoin" else None,
            "member": self.source if self.action == "rejoin" else None,
            "decision": self.decision,
            "previous_timeline": self.timeline_before,
            "timeline": self.timeline_after if self.timeline_after is not None else self.timeline_before,
            "lag_bytes": self.lag_bytes,
            "lag_seconds": self.lag_seconds,
            "data_loss_bytes": self.data_loss_bytes,
            "data_loss_seconds": self.data_loss_seconds,
            "data_loss": self.loss.as_dict() if self.loss else None,
            "lasting_fence": self.lasting_fence,
            "fenced": self.lasting_fence or bool(self.details.get("sql_fence")),
            "phases": dict(self.phases.seconds),
            "duration_seconds": self.phases.total,
            "notes": list(self.notes),
            **self.details,
        }


def sql_literal(value: str) -> str:
    """A standard SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    return "'" + value.replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def synchronous_names_value(standbys: list[str]) -> str:
    """synchronous_standby_names for ``standbys`` (any one of them must confirm), '' for none."""
    if not standbys:
        return ""
    return f"ANY 1 ({', '.join(quote_ident(s) for s in standbys)})"


def set_synchronous_standbys(conn: Any, standbys: list[str]) -> tuple[str, str]:
    """Set synchronous_standby_names on a primary; (old value, new value)."""
    ensure_autocommit(conn)
    old = fetch_one(conn, "SHOW synchronous_standby_names")[0]
    new = synchronous_names_value(standbys)
    if old != new:
        # A utility statement takes no bind parameters (psycopg 3 binds on the server): a literal it is.
        fetch_all(conn, f"ALTER SYSTEM SET synchronous_standby_names = {sql_literal(new)}")
        fetch_all(conn, "SELECT pg_reload_conf()")
    return old, new


def ensure_slot(conn: Any, slot: str) -> bool:
    """Create a physical replication slot (reserving WAL now) unless it exists; True when created."""
    ensure_autocommit(conn)
    if fetch_all(conn, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", params=(slot,)):
        return False
    fetch_all(conn, "SELECT pg_create_physical_replication_slot(%s, true)", params=(slot,))
    return True


def drop_inactive_slot(conn: Any, slot: str) -> bool:
    """Drop a slot nobody uses (a promoted member's own slot, left from when it was a primary before)."""
    ensure_autocommit(conn)
    rows = fetch_all(conn, "SELECT active FROM pg_replication_slots WHERE slot_name = %s", params=(slot,))
    if not rows or rows[0][0]:
        return False
    fetch_all(conn, "SELECT pg_drop_replication_slot(%s)", params=(slot,))
    return True


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def streaming_standbys(conn: Any) -> list[str]:
    ensure_autocommit(conn)
    return [r[0] for r in fetch_all(conn, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")]


def read_history_file(conn: Any, timeline: int) -> str | None:
    """The text of timeline ``timeline``'s history file on a server (superuser or pg_read_server_files)."""
    ensure_autocommit(conn)
    row = fetch_one(conn, "SELECT pg_read_file(%s, 0, 1048576, true)", params=(f"pg_wal/{timeline:08X}.history",))
    return row[0] if row else None


def closing(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
