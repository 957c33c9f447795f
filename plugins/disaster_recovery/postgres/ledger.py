"""A synthetic writer that records every acknowledged commit: the client's view of RTO and RPO.

One row per transaction, through a multi-host connection string with ``target_session_attrs=read-write``
(the way an application follows a failover). Every commit the server acknowledged is recorded with its
time; after the failover, the ids missing on the new primary are the acknowledged writes lost, and the
gap between the first failed write and the next acknowledged one is the outage as the client saw it.
Used by the failover tests, the failover benchmark and drills.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import psycopg2

LEDGER_DDL = "CREATE TABLE IF NOT EXISTS dr_write_ledger (id bigint PRIMARY KEY, written_at timestamptz NOT NULL)"


@dataclass
class Outage:
    first_failure: float  # time.monotonic() of the first write that failed
    recovered: float | None = None  # of the next acknowledged write

    @property
    def seconds(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.first_failure


@dataclass
class AckLedger:
    acked: dict[int, float] = field(default_factory=dict)  # id -> time.monotonic() of the acknowledgement
    server: dict[int, int] = field(default_factory=dict)  # id -> port of the server that acknowledged it
    outages: list[Outage] = field(default_factory=list)
    errors: int = 0
    last_error: str | None = None

    def missing_on(self, present: set[int], *, acked_before: set[int] | None = None) -> list[int]:
        """Acknowledged ids not in ``present``; pass the ids acknowledged before ``present`` was read when
        the writer is still running (later acknowledgements cannot be in it)."""
        ids = set(self.acked) if acked_before is None else acked_before
        return sorted(i for i in ids if i not in present)


def multi_host_dsn(hosts: list[tuple[str, int]], *, user: str, password: str, dbname: str,
                   connect_timeout: int = 2) -> str:
    return (
        f"host={','.join(h for h, _ in hosts)} port={','.join(str(p) for _, p in hosts)} dbname={dbname} "
        f"user={user} password={password} target_session_attrs=read-write connect_timeout={connect_timeout}"
    )


class LedgerWriter:
    """Writes ``dr_write_ledger`` rows in a thread until stopped; ``ledger`` holds what was acknowledged."""

    def __init__(self, dsn: str, *, pause: float = 0.0, statement_timeout_ms: int = 5000) -> None:
        self.dsn = dsn
        self.pause = pause
        self.statement_timeout_ms = statement_timeout_ms
        self.ledger = AckLedger()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._next_id = 1

    def prepare(self) -> None:
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(LEDGER_DDL)
                cur.execute("SELECT coalesce(max(id), 0) FROM dr_write_ledger")
                self._next_id = int(cur.fetchone()[0]) + 1
        finally:
            conn.close()

    def start(self) -> LedgerWriter:
        self.prepare()
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> AckLedger:
        self._stop.set()
        self._thread.join(timeout)
        return self.ledger

    def wait_for_acks(self, count: int, *, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        target = len(self.ledger.acked) + count
        while len(self.ledger.acked) < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _connect(self):
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
        return conn

    def _failed(self, exc: BaseException) -> None:
        self.ledger.errors += 1
        self.ledger.last_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
        outages = self.ledger.outages
        if not outages or outages[-1].recovered is not None:
            outages.append(Outage(first_failure=time.monotonic()))

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                write_id = self._next_id
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO dr_write_ledger VALUES (%s, clock_timestamp()) RETURNING inet_server_port()",
                                (write_id,))
                    self.ledger.server[write_id] = cur.fetchone()[0]
                now = time.monotonic()
                self.ledger.acked[write_id] = now
                self._next_id += 1
                if self.ledger.outages and self.ledger.outages[-1].recovered is None:
                    self.ledger.outages[-1].recovered = now
            except psycopg2.Error as exc:
                # The commit's fate is unknown (e.g. the server died mid-commit): never reuse its id.
                self._next_id += 1
                self._failed(exc)
                if conn is not None:
                    with contextlib.suppress(psycopg2.Error):
                        conn.close()
                conn = None
                time.sleep(0.02)
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()


def lost_acknowledged(ledger: AckLedger, dsn: str) -> list[int]:
    """The acknowledged writes missing on the server at ``dsn`` (safe while the writer still runs)."""
    acked_before = set(ledger.acked)
    return ledger.missing_on(present_ids(dsn), acked_before=acked_before)


def present_ids(dsn: str) -> set[int]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM dr_write_ledger")
            return {int(r[0]) for r in cur.fetchall()}
    finally:
        conn.close()
