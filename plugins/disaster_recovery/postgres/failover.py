"""Failover of a streaming pair: a pure decision on a snapshot, then the actions (fence, promote, wait).

Patroni-style: ``decide_failover`` looks only at an immutable ``ReplicationSnapshot`` and always returns
a sentence saying why; the actions each do one thing over a DB-API connection (psycopg2 or psycopg 3)
and report what they did. No Airflow import.

Fencing is PostgreSQL-level: ``default_transaction_read_only`` is set with ALTER SYSTEM (it survives a
restart of the old primary) and every other client session is terminated, so nothing keeps writing
through an open connection. It is a default, not a wall: a client that explicitly runs
``SET transaction_read_only = off`` or ``BEGIN READ WRITE`` can still write. Pair it with moving the
traffic (DNS / load balancer steps) and rejoining the old primary as a standby.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from disaster_recovery.postgres.replication import (
    LAG_BASIS_RECEIVED,
    ReplicationSnapshot,
    ensure_autocommit,
    error_text,
    fetch_all,
    fetch_one,
    lsn_to_int,
    sqlstate,
)

READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction


class FailoverError(RuntimeError):
    """An action could not be completed; the message says what happened, in an operator's words."""


@dataclass(frozen=True, kw_only=True)
class Decision:
    proceed: bool
    reason: str  # ok | not_in_recovery | primary_in_recovery | lag_unknown | lag_bytes | lag_seconds
    sentence: str


def _mb(nbytes: int) -> str:
    if nbytes < 1024 * 1024:
        return f"{nbytes} bytes"
    return f"{nbytes / (1024 * 1024):.1f} MiB ({nbytes} bytes)"


def decide_failover(
    snapshot: ReplicationSnapshot, *, max_lag_bytes: int | None, max_lag_seconds: float | None
) -> Decision:
    """May this standby be promoted now? ``None`` limits are not checked."""
    s = snapshot
    if not s.in_recovery:
        return Decision(
            proceed=False,
            reason="not_in_recovery",
            sentence=(
                f"The standby is not in recovery: it is already a primary (timeline {s.timeline}); there is "
                "nothing to promote."
            ),
        )
    if s.primary_reachable and s.primary_in_recovery:
        return Decision(
            proceed=False,
            reason="primary_in_recovery",
            sentence=(
                "The server named as the primary is itself in recovery (a standby): the roles may already have "
                "been swapped by an earlier failover; check the connections before failing over."
            ),
        )
    if s.primary_reachable:
        where = f"the primary is reachable (at {s.primary_lsn}, {s.sync_state or 'not listed'} replication)"
    else:
        where = (
            f"the primary is unreachable ({s.primary_error or 'no connection'}), so lag is measured against "
            "the WAL the standby received; WAL it never received cannot be measured"
        )
    if s.lag_bytes is None and max_lag_bytes is not None:
        return Decision(
            proceed=False,
            reason="lag_unknown",
            sentence=(
                f"Refusing to fail over: the standby's replication lag cannot be measured ({where}) and a limit "
                f"of {_mb(max_lag_bytes)} is set."
            ),
        )
    if max_lag_bytes is not None and s.lag_bytes is not None and s.lag_bytes > max_lag_bytes:
        return Decision(
            proceed=False,
            reason="lag_bytes",
            sentence=(
                f"Refusing to fail over: the standby is {_mb(s.lag_bytes)} behind, above the limit of "
                f"{_mb(max_lag_bytes)} ({where})."
            ),
        )
    if max_lag_seconds is not None and s.lag_seconds is not None and s.lag_seconds > max_lag_seconds:
        return Decision(
            proceed=False,
            reason="lag_seconds",
            sentence=(
                f"Refusing to fail over: the standby's last replayed transaction is {s.lag_seconds:.1f} s old, "
                f"above the limit of {max_lag_seconds:g} s ({where})."
            ),
        )
    seconds = "" if s.lag_seconds is None else f" / {s.lag_seconds:.1f} s"
    if s.lag_bytes is None:
        lag = f"at an unknown distance{seconds}"
    elif s.lag_basis == LAG_BASIS_RECEIVED:
        lag = f"{_mb(s.lag_bytes)}{seconds} short of the WAL it received"
    else:
        lag = f"{_mb(s.lag_bytes)}{seconds} behind"
    limits = ", ".join(
        part
        for part in (
            None if max_lag_bytes is None else _mb(max_lag_bytes),
            None if max_lag_seconds is None else f"{max_lag_seconds:g} s",
        )
        if part
    )
    paused = " Replay is paused; promotion resumes and finishes it." if s.replay_paused else ""
    return Decision(
        proceed=True,
        reason="ok",
        sentence=(
            f"The standby on timeline {s.timeline} is {lag} (limits: {limits or 'none'}); {where}: "
            f"failover may proceed.{paused}"
        ),
    )


@dataclass(frozen=True, kw_only=True)
class FenceResult:
    read_only: bool
    terminated: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    not_terminated: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    checkpoint: bool = False
    final_lsn: str | None = None
    sentence: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "read_only": self.read_only,
            "terminated": [dict(s) for s in self.terminated],
            "not_terminated": [dict(s) for s in self.not_terminated],
            "checkpoint": self.checkpoint,
            "final_lsn": self.final_lsn,
        }


_SESSIONS_SQL = """
SELECT pid, usename, application_name, datname, client_addr::text
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
ORDER BY pid
"""


def fence_primary(conn: Any, *, terminate_wait_seconds: float = 5.0, apply_timeout: float = 5.0) -> FenceResult:
    """Make a reachable old primary refuse writes: read-only by default (persisted with ALTER SYSTEM and
    reloaded), every other client session terminated, then CHECKPOINT; returns what was done and the
    primary's final WAL position (what a standby must have replayed to lose nothing)."""
    ensure_autocommit(conn)
    fetch_all(conn, "ALTER SYSTEM SET default_transaction_read_only = on")
    fetch_all(conn, "SELECT pg_reload_conf()")
    # The reload is asynchronous: our own session sees the new default once it has processed SIGHUP, and
    # then so does every session started after it (the postmaster forwards the signal first).
    deadline = time.monotonic() + apply_timeout
    read_only = False
    while True:
        read_only = fetch_one(conn, "SHOW default_transaction_read_only")[0] == "on"
        if read_only or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    if not read_only:
        raise FailoverError(
            f"the old primary did not apply default_transaction_read_only within {apply_timeout:g} s after "
            "pg_reload_conf()"
        )
    terminated: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    wait_ms = max(1, int(terminate_wait_seconds * 1000))
    for pid, user, app, db, addr in fetch_all(conn, _SESSIONS_SQL):
        session = {"pid": pid, "user": user, "application_name": app, "database": db, "client_addr": addr}
        try:
            ok = bool(fetch_one(conn, "SELECT pg_terminate_backend(%s, %s)", params=(pid, wait_ms))[0])
        except Exception as exc:  # e.g. no permission to signal a superuser's session
            ok = False
            session["error"] = error_text(exc)
        (terminated if ok else refused).append(session)
    fetch_all(conn, "CHECKPOINT")
    final_lsn = fetch_one(conn, "SELECT pg_current_wal_lsn()::text")[0]
    sentence = (
        f"Fenced the old primary: read-only by default, {len(terminated)} client session(s) terminated"
        + (f", {len(refused)} could not be terminated" if refused else "")
        + f", checkpointed at {final_lsn}."
    )
    return FenceResult(
        read_only=read_only,
        terminated=tuple(terminated),
        not_terminated=tuple(refused),
        checkpoint=True,
        final_lsn=final_lsn,
        sentence=sentence,
    )


def clear_fence(conn: Any) -> bool:
    """Undo ``fence_primary``'s ALTER SYSTEM on a server (a new primary cloned from a fenced one inherits
    it through postgresql.auto.conf). True when something was reset."""
    ensure_autocommit(conn)
    rows = fetch_all(
        conn,
        "SELECT 1 FROM pg_file_settings WHERE name = 'default_transaction_read_only' "
        "AND sourcefile LIKE '%%postgresql.auto.conf' AND applied",
    )
    if not rows:
        return False
    fetch_all(conn, "ALTER SYSTEM RESET default_transaction_read_only")
    fetch_all(conn, "SELECT pg_reload_conf()")
    return True


def wait_replayed(standby_conn: Any, *, target_lsn: str, timeout: float, interval: float = 0.02) -> tuple[bool, str | None]:
    """Wait until the standby has replayed up to ``target_lsn``; (reached, replay position)."""
    ensure_autocommit(standby_conn)
    target = lsn_to_int(target_lsn)
    deadline = time.monotonic() + timeout
    while True:
        replay = fetch_one(standby_conn, "SELECT pg_last_wal_replay_lsn()::text")[0]
        position = lsn_to_int(replay)
        if position is not None and position >= target:
            return True, replay
        if time.monotonic() >= deadline:
            return False, replay
        time.sleep(interval)


def promote(standby_conn: Any, *, wait_seconds: int) -> float:
    """Promote the standby with ``pg_promote(true, wait_seconds)``; the seconds it took."""
    ensure_autocommit(standby_conn)
    if not fetch_one(standby_conn, "SELECT pg_is_in_recovery()")[0]:
        raise FailoverError("the standby is not in recovery: it is already a primary")
    started = time.monotonic()
    ok = fetch_one(standby_conn, "SELECT pg_promote(true, %s)", params=(max(1, int(wait_seconds)),))[0]
    elapsed = time.monotonic() - started
    if not ok:
        raise FailoverError(f"pg_promote() did not finish within {wait_seconds} s; the standby is still in recovery")
    return elapsed


_PROBE_TABLE = "dr_write_probe"


def probe_writable(conn: Any, *, statement_timeout: float = 2.0) -> None:
    """Raise unless this server takes a write: not in recovery, and a default (not forced read-write)
    transaction can create a temp table, take a transaction id and commit (a synchronous_standby_names
    waiting for an absent standby makes the commit time out)."""
    ensure_autocommit(conn)
    fetch_all(
        conn, "SELECT set_config('statement_timeout', %s, false)", params=(f"{int(statement_timeout * 1000)}ms",)
    )
    if fetch_one(conn, "SELECT pg_is_in_recovery()")[0]:
        raise FailoverError("the server is still in recovery")
    conn.autocommit = False
    try:
        fetch_all(conn, f"CREATE TEMP TABLE {_PROBE_TABLE} (x int) ON COMMIT DROP")
        fetch_all(conn, "SELECT txid_current()")
        conn.commit()
    except Exception:
        conn.rollback()
        raise
    finally:
        conn.autocommit = True


def wait_writable(connect: Callable[[], Any], *, timeout: float, interval: float = 0.05) -> float:
    """Poll fresh connections from ``connect()`` until a write succeeds; the seconds waited.

    Raises FailoverError with the last error when ``timeout`` passes first.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = "no attempt"
    while True:
        conn = None
        try:
            conn = connect()
            probe_writable(conn, statement_timeout=max(0.5, min(5.0, timeout / 4)))
            return time.monotonic() - started
        except Exception as exc:
            state = sqlstate(exc)
            last = error_text(exc) + (f" (SQLSTATE {state})" if state else "")
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        if time.monotonic() >= deadline:
            raise FailoverError(f"the new primary did not accept a write within {timeout:g} s: {last}")
        time.sleep(interval)
