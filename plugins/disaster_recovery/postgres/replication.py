"""What a streaming standby knows about its replication, read once into an immutable snapshot.

Plain DB-API over psycopg2 or psycopg (3) connections: no Airflow import. The failover decision
(``disaster_recovery.postgres.failover.decide_failover``) is taken on one snapshot, never on values read
at different moments.

Lag is measured against the primary when it answers (its current WAL position minus the standby's
replay position, the primary read first so a standby that catches up in between shows no lag). When the
primary cannot be reached, the only measurable lag is the WAL the standby received but has not yet
replayed; WAL the standby never received cannot be measured, and the snapshot says which basis it used.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

LAG_BASIS_PRIMARY = "primary"
LAG_BASIS_RECEIVED = "received"


def lsn_to_int(lsn: str | None) -> int | None:
    """'16/B374D848' -> byte position; None stays None."""
    if lsn is None:
        return None
    high, _, low = str(lsn).partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 or psycopg (3) error, if it has one."""
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def error_text(exc: BaseException) -> str:
    """``Type: message`` on one line (psycopg's messages span lines)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def ensure_autocommit(conn: Any) -> None:
    """Put a DB-API connection in autocommit mode (ALTER SYSTEM, pg_promote and CHECKPOINT need it)."""
    if not conn.autocommit:
        conn.rollback()
        conn.autocommit = True


def fetch_all(conn: Any, sql: str, *, params: tuple | None = None) -> list[tuple]:
    cur = conn.cursor()
    try:
        cur.execute(sql, params)
        return list(cur.fetchall()) if cur.description else []
    finally:
        cur.close()


def fetch_one(conn: Any, sql: str, *, params: tuple | None = None) -> tuple:
    rows = fetch_all(conn, sql, params=params)
    return rows[0] if rows else ()


_TIMELINE_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
       (SELECT received_tli FROM pg_stat_wal_receiver),
       (SELECT timeline_id FROM pg_control_checkpoint())
"""


def current_timeline(conn: Any) -> int:
    """The server's timeline: from its current WAL file on a primary (pg_control lags behind a promotion
    until the next checkpoint), else the newest of the WAL receiver's and the last restartpoint's."""
    in_recovery, walfile, received_tli, checkpoint_tli = fetch_one(conn, _TIMELINE_SQL)
    if not in_recovery and walfile:
        return int(walfile[:8], 16)
    return max(int(tli) for tli in (received_tli, checkpoint_tli) if tli is not None)


@dataclass(frozen=True, kw_only=True)
class ReplicationSnapshot:
    """One reading of a standby (and of its primary, when reachable)."""

    taken_at: datetime
    in_recovery: bool
    timeline: int
    receive_lsn: str | None
    replay_lsn: str | None
    replay_paused: bool | None
    last_replay_at: datetime | None
    # now() - pg_last_xact_replay_timestamp(); 0.0 when the standby has replayed everything known to exist
    # (an idle primary must not look like lag); None when no transaction was ever replayed.
    lag_seconds: float | None
    lag_bytes: int | None
    lag_basis: str | None  # "primary" (primary's current LSN) or "received" (primary unreachable)
    wal_receiver_status: str | None
    application_name: str | None
    primary_reachable: bool
    primary_error: str | None
    primary_in_recovery: bool | None
    primary_lsn: str | None
    primary_timeline: int | None
    replication_state: str | None  # the primary's pg_stat_replication.state for this standby
    sync_state: str | None  # async / sync / quorum / potential, None when the primary does not list it

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("taken_at", "last_replay_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


_RECEIVER_SQL = "SELECT status, slot_name, conninfo FROM pg_stat_wal_receiver"

_PRIMARY_SQL = """
SELECT pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END
"""

_REPLICATION_SQL = """
SELECT r.application_name, r.state, r.sync_state, s.slot_name
FROM pg_stat_replication r LEFT JOIN pg_replication_slots s ON s.active_pid = r.pid
"""

_STANDBY_SQL = """
SELECT now(),
       pg_is_in_recovery(),
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
       pg_last_xact_replay_timestamp(),
       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END
"""

_APP_NAME = re.compile(r"(?:^|\s)application_name=('(?:[^'\\]|\\.)*'|\S+)")


def _application_name(conninfo: str | None) -> str | None:
    match = _APP_NAME.search(conninfo or "")
    if not match:
        return None
    value = match.group(1)
    return value[1:-1].replace("\\'", "'") if value.startswith("'") else value


def read_snapshot(
    standby_conn: Any,
    *,
    primary_conn: Any | None = None,
    primary_error: str | None = None,
    application_name: str | None = None,
) -> ReplicationSnapshot:
    """Read the standby (and the primary if a connection is given) into one snapshot.

    ``primary_error`` says why there is no primary connection (it is recorded in the snapshot); a
    primary that fails while being read counts as unreachable. ``application_name`` picks the standby's
    row in the primary's pg_stat_replication; by default it is taken from the standby's WAL receiver
    conninfo, then its replication slot, then the only row there is. Both connections are switched to
    autocommit (no transaction is left open on either server).
    """
    ensure_autocommit(standby_conn)
    receiver = fetch_one(standby_conn, _RECEIVER_SQL)
    receiver_status, receiver_slot, receiver_conninfo = receiver if receiver else (None, None, None)
    app_name = application_name or _application_name(receiver_conninfo)

    primary_in_recovery = primary_lsn = primary_timeline = None
    replication_state = sync_state = None
    primary_reachable = False
    if primary_conn is not None:
        try:
            ensure_autocommit(primary_conn)
            primary_in_recovery, primary_lsn, walfile = fetch_one(primary_conn, _PRIMARY_SQL)
            primary_timeline = int(walfile[:8], 16) if walfile else None
            rows = fetch_all(primary_conn, _REPLICATION_SQL)
            primary_reachable = True
        except Exception as exc:  # the primary failing while being read is the same as unreachable
            primary_error = error_text(exc)
        else:
            row = None
            if app_name:
                row = next((r for r in rows if r[0] == app_name), None)
            if row is None and receiver_slot:
                row = next((r for r in rows if r[3] == receiver_slot), None)
            if row is None and len(rows) == 1 and not app_name:
                row = rows[0]
            if row is not None:
                app_name = row[0]
                replication_state, sync_state = row[1], row[2]

    (taken_at, in_recovery, receive_lsn, replay_lsn, paused, last_replay_at, replay_age,
     own_lsn) = fetch_one(standby_conn, _STANDBY_SQL)
    timeline = current_timeline(standby_conn)

    lag_bytes: int | None = None
    lag_basis: str | None = None
    if in_recovery:
        position = lsn_to_int(replay_lsn)
        if primary_reachable and primary_lsn is not None and position is not None:
            lag_bytes = max(0, lsn_to_int(primary_lsn) - position)
            lag_basis = LAG_BASIS_PRIMARY
        elif receive_lsn is not None and position is not None:
            lag_bytes = max(0, lsn_to_int(receive_lsn) - position)
            lag_basis = LAG_BASIS_RECEIVED
    else:
        replay_lsn = replay_lsn or own_lsn

    if not in_recovery or lag_bytes == 0:
        lag_seconds: float | None = 0.0
    else:
        lag_seconds = None if replay_age is None else max(0.0, float(replay_age))

    return ReplicationSnapshot(
        taken_at=taken_at,
        in_recovery=bool(in_recovery),
        timeline=timeline,
        receive_lsn=receive_lsn,
        replay_lsn=replay_lsn,
        replay_paused=paused,
        last_replay_at=last_replay_at,
        lag_seconds=lag_seconds,
        lag_bytes=lag_bytes,
        lag_basis=lag_basis,
        wal_receiver_status=receiver_status,
        application_name=app_name,
        primary_reachable=primary_reachable,
        primary_error=None if primary_reachable else primary_error,
        primary_in_recovery=primary_in_recovery,
        primary_lsn=primary_lsn,
        primary_timeline=primary_timeline,
        replication_state=replication_state,
        sync_state=sync_state,
    )
