"""What one member of a cluster says about itself, read in one round trip into an immutable record.

``MEMBER_SQL`` is a single statement (so a snapshot of one server is consistent) that works on a
primary and on a standby; ``member_state_from_row`` turns its row into a ``MemberState``. The same SQL
serves the failover steps (psycopg2 through the postgres provider) and the health monitor (psycopg 3,
asynchronously), so both see a member the same way. No Airflow import.

The fence marker (``dr_fence.json`` in the data directory, written when the member was fenced) is read
through ``pg_read_file``: it needs a superuser or the ``pg_read_server_files`` role; without it the
marker is unknown (``fence_readable`` is False), never silently absent.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from disaster_recovery.postgres.cluster import FENCE_MARKER
from disaster_recovery.postgres.replication import ensure_autocommit, error_text, fetch_one, lsn_to_int


class FenceMarker(BaseModel):
    """Why a member must not serve writes again until it is rejoined (the file ``dr_fence.json``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    fenced_at: datetime
    cluster: str
    member: str
    reason: str
    new_primary: str | None = None
    timeline: int | None = None  # the fenced member's timeline when it was fenced
    last_lsn: str | None = None
    execution_id: str | None = None

    def sentence(self) -> str:
        to = f" in favour of {self.new_primary}" if self.new_primary else ""
        return f"fenced at {self.fenced_at.isoformat(timespec='seconds')}{to}: {self.reason}"


@dataclass(frozen=True, kw_only=True)
class StandbyLink:
    """A row of the primary's pg_stat_replication."""

    application_name: str
    state: str | None
    sync_state: str | None
    replay_lsn: str | None
    flush_lsn: str | None


@dataclass(frozen=True, kw_only=True)
class ArchiverState:
    """pg_stat_archiver and archive_mode of a server."""

    archive_mode: str
    archived_count: int
    last_archived_wal: str | None
    last_archived_at: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_at: datetime | None

    @property
    def failing(self) -> bool:
        """The newest archive attempt failed (a failure newer than the newest success)."""
        if self.last_failed_at is None:
            return False
        return self.last_archived_at is None or self.last_failed_at > self.last_archived_at


@dataclass(frozen=True, kw_only=True)
class MemberState:
    """One reading of one member; ``reachable`` False means only ``error`` is known."""

    member: str
    conn_id: str
    reachable: bool
    error: str | None = None
    taken_at: datetime | None = None
    response_ms: float | None = None
    system_identifier: str | None = None
    in_recovery: bool | None = None
    read_only: bool | None = None  # default_transaction_read_only
    timeline: int | None = None
    current_lsn: str | None = None  # a primary's pg_current_wal_lsn()
    receive_lsn: str | None = None
    replay_lsn: str | None = None
    replay_paused: bool | None = None
    last_replay_at: datetime | None = None
    receiver_status: str | None = None
    sender: str | None = None  # host:port the WAL receiver streams from
    synchronous_standby_names: str | None = None
    standbys: tuple[StandbyLink, ...] = ()
    archiver: ArchiverState | None = None
    fence: FenceMarker | None = None
    fence_readable: bool = True
    fence_problem: str | None = None

    @property
    def unreadable(self) -> bool:
        """It answers, but what it is (primary or standby) is unknown."""
        return self.reachable and self.in_recovery is None

    @property
    def is_writable_primary(self) -> bool:
        return bool(self.reachable and self.in_recovery is False and not self.read_only)

    @property
    def position(self) -> int:
        """How far this member's WAL goes, as a byte position (0 when unknown)."""
        lsn = self.current_lsn if self.in_recovery is False else (self.receive_lsn or self.replay_lsn)
        best = max(lsn_to_int(lsn) or 0, lsn_to_int(self.replay_lsn) or 0)
        return best

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("taken_at", "last_replay_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        if self.archiver is not None:
            for key in ("last_archived_at", "last_failed_at"):
                value = data["archiver"][key]
                data["archiver"][key] = value.isoformat() if value is not None else None
        data["fence"] = self.fence.model_dump(mode="json") if self.fence else None
        return data


MEMBER_SQL = """
SELECT now(),
       (SELECT system_identifier::text FROM pg_control_system()),
       pg_is_in_recovery(),
       current_setting('default_transaction_read_only') = 'on',
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
       (SELECT received_tli FROM pg_stat_wal_receiver),
       (SELECT timeline_id FROM pg_control_checkpoint()),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() END,
       pg_last_xact_replay_timestamp(),
       (SELECT status FROM pg_stat_wal_receiver),
       (SELECT sender_host || ':' || sender_port FROM pg_stat_wal_receiver),
       current_setting('synchronous_standby_names'),
       (SELECT coalesce(json_agg(json_build_array(application_name, state, sync_state, replay_lsn::text,
                                                  flush_lsn::text) ORDER BY application_name), '[]'::json)
          FROM pg_stat_replication),
       current_setting('archive_mode'),
       a.archived_count, a.last_archived_wal, a.last_archived_time, a.failed_count, a.last_failed_wal,
       a.last_failed_time,
       pg_has_role(current_user, 'pg_read_server_files', 'USAGE')
FROM pg_stat_archiver a
"""
# pg_read_file's privilege is checked even inside a CASE that never calls it: a second query, when allowed.
MARKER_SQL = f"SELECT pg_read_file('{FENCE_MARKER}', 0, 65536, true)"


def _timeline(in_recovery: bool, walfile: str | None, received_tli: int | None, checkpoint_tli: int | None) -> int | None:
    if not in_recovery and walfile:
        return int(walfile[:8], 16)
    known = [int(t) for t in (received_tli, checkpoint_tli) if t is not None]
    return max(known) if known else None


def parse_fence_marker(text: str | None) -> tuple[FenceMarker | None, str | None]:
    """(marker, problem): a file that is not a valid marker still fences, and says why it is odd."""
    if not text:
        return None, None
    try:
        return FenceMarker.model_validate(json.loads(text)), None
    except (ValueError, ValidationError) as exc:
        return None, f"{FENCE_MARKER} exists but is not a valid fence marker ({type(exc).__name__})"


def member_state_from_row(row: tuple, *, member: str, conn_id: str, response_ms: float | None,
                          marker_text: str | None = None) -> MemberState:
    """The ``MemberState`` of one ``MEMBER_SQL`` row and the ``MARKER_SQL`` text, if read (pure)."""
    (taken_at, system_id, in_recovery, read_only, walfile, received_tli, checkpoint_tli, current_lsn,
     receive_lsn, replay_lsn, paused, last_replay_at, receiver_status, sender, sync_names, standbys_json,
     archive_mode, archived_count, last_archived_wal, last_archived_at, failed_count, last_failed_wal,
     last_failed_at, can_read) = row
    links = standbys_json if isinstance(standbys_json, list) else json.loads(standbys_json or "[]")
    fence, problem = parse_fence_marker(marker_text)
    return MemberState(
        member=member,
        conn_id=conn_id,
        reachable=True,
        taken_at=taken_at,
        response_ms=response_ms,
        system_identifier=system_id,
        in_recovery=bool(in_recovery),
        read_only=bool(read_only),
        timeline=_timeline(bool(in_recovery), walfile, received_tli, checkpoint_tli),
        current_lsn=current_lsn,
        receive_lsn=receive_lsn,
        replay_lsn=replay_lsn,
        replay_paused=paused,
        last_replay_at=last_replay_at,
        receiver_status=receiver_status,
        sender=sender,
        synchronous_standby_names=sync_names,
        standbys=tuple(
            StandbyLink(application_name=a, state=s, sync_state=y, replay_lsn=r, flush_lsn=f)
            for a, s, y, r, f in links
        ),
        archiver=ArchiverState(
            archive_mode=archive_mode,
            archived_count=int(archived_count or 0),
            last_archived_wal=last_archived_wal,
            last_archived_at=last_archived_at,
            failed_count=int(failed_count or 0),
            last_failed_wal=last_failed_wal,
            last_failed_at=last_failed_at,
        ),
        fence=fence,
        fence_readable=bool(can_read),
        fence_problem=problem if can_read else "cannot read dr_fence.json (needs pg_read_server_files)",
    )


def unreachable(*, member: str, conn_id: str, error: str) -> MemberState:
    return MemberState(member=member, conn_id=conn_id, reachable=False, error=error)


def unreadable(*, member: str, conn_id: str, error: str) -> MemberState:
    """A member that accepted the connection but whose state could not be read (e.g. no privilege)."""
    return MemberState(member=member, conn_id=conn_id, reachable=True, error=f"cannot read its state: {error}")


def read_member_state(conn: Any, *, member: str, conn_id: str) -> MemberState:
    """Read a member over an open DB-API connection (switched to autocommit). Raises on SQL errors."""
    import time

    ensure_autocommit(conn)
    started = time.monotonic()
    row = fetch_one(conn, MEMBER_SQL)
    marker = fetch_one(conn, MARKER_SQL)[0] if row[-1] else None
    return member_state_from_row(row, member=member, conn_id=conn_id, marker_text=marker,
                                 response_ms=round((time.monotonic() - started) * 1000, 2))


@dataclass(frozen=True, kw_only=True)
class ClusterSnapshot:
    """Every member of one cluster, read at (nearly) the same moment; decisions take only this."""

    cluster: str
    members: tuple[MemberState, ...]
    addresses: dict[str, str] = field(default_factory=dict)  # member -> host:port (no credentials)

    def get(self, member: str) -> MemberState:
        for state in self.members:
            if state.member == member:
                return state
        raise KeyError(member)

    def as_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "addresses": dict(self.addresses),
                "members": [m.as_dict() for m in self.members]}


def state_error(exc: BaseException) -> str:
    return error_text(exc)
