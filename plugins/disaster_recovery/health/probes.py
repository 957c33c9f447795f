"""Probing one service once, asynchronously: PostgreSQL (psycopg 3), HTTP (httpx) and TCP (asyncio).

``probe_service`` never raises for a failing target: a refused connection, a timeout, a 500 or a cluster
without a primary are observations (``ok`` False, a one-line ``error``); a probe that cannot run at all
(its connection is not defined, its cluster is not in the clusters file) has ``ok`` None. The whole probe
is bounded by the service's ``timeout``. Connections are opened fresh for every probe (a probe must see a
server that died); what is cached is only the connection *info*, by the injected ``lookup``.

A cluster probe reads every member concurrently with ``clusters.state.MEMBER_SQL`` (the same reading the
failover steps take), decides the topology, runs the service's query on the member that has the role
(on the connection that read it) and takes lag and archiver facts from the same snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

from disaster_recovery.clusters.model import Cluster, ClusterSet
from disaster_recovery.clusters.state import (
    MARKER_SQL,
    MEMBER_SQL,
    ClusterSnapshot,
    MemberState,
    member_state_from_row,
    unreachable,
    unreadable,
)
from disaster_recovery.clusters.topology import Topology, decide_topology
from disaster_recovery.connections import redact_url
from disaster_recovery.health.evaluation import ProbeObservation
from disaster_recovery.health.probe_connections import (
    CannotRun,
    ConnectionCache,
    ConnectionInfo,
    ConnectionNotDefined,
    Lookup,
    airflow_connection,
    airflow_connection_async,
    resolve_connections,
)
from disaster_recovery.health.services import HttpProbe, PostgresProbe, Service, TcpProbe
from disaster_recovery.postgres.replication import error_text, lsn_to_int

Resolved = Callable[[str], ConnectionInfo]
__all__ = ["ConnectionCache", "ConnectionInfo", "ConnectionNotDefined", "Lookup", "airflow_connection",
           "airflow_connection_async", "http_parts", "probe_http_client", "probe_service"]

CONNECTIONS_SQL = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
MEMBER_BUDGET = 0.6  # share of the timeout the members of a cluster get to answer; the rest is for the query
BODY_LIMIT = 1 << 20
LIBPQ_EXTRAS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "options", "target_session_attrs", "keepalives")
HTTP_HOOK_OPTIONS = frozenset({
    "stream", "cert", "proxies", "proxy", "timeout", "verify", "verify_ssl", "allow_redirects", "max_redirects",
    "trust_env", "check_response", "srv_lookup",
})


def probe_http_client() -> httpx.AsyncClient:
    """A client to share between HTTP probes: no keep-alive (each probe opens its own connection, so a
    dead server is seen), no redirects, no proxies from the environment."""
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0), follow_redirects=False,
                             trust_env=False)


def _conn_ids(service: Service, clusters: ClusterSet | None) -> list[str]:
    probe = service.probe
    if isinstance(probe, HttpProbe):
        return [probe.http_conn_id] if probe.http_conn_id else []
    if isinstance(probe, TcpProbe) or probe.cluster is None:
        return [probe.conn_id] if probe.conn_id else []
    if clusters is None or probe.cluster not in clusters.items:
        return []
    return [m.conn_id for m in clusters.items[probe.cluster].members]


async def probe_service(service: Service, *, lookup: Lookup, clusters: ClusterSet | None,
                        http: httpx.AsyncClient | None = None) -> ProbeObservation:
    """Probe once; never raises for a failing target (only cancellation propagates).

    ``lookup(conn_id)`` gives a ``ConnectionInfo`` (or an awaitable of one; ``ConnectionCache`` is one) and
    raises ``ConnectionNotDefined`` for an unknown id; connections are looked up before the ``timeout``
    of the probe starts. ``http``: a client shared between HTTP probes (``probe_http_client()``)."""
    at = datetime.now(UTC)
    kind = service.probe.kind
    timeout = service.timeout.total_seconds()
    try:
        resolved = await resolve_connections(lookup, _conn_ids(service, clusters))
        at = datetime.now(UTC)
        return await asyncio.wait_for(_dispatch(service, at=at, conn=resolved, clusters=clusters, http=http),
                                      timeout)
    except TimeoutError:
        return ProbeObservation(at=at, kind=kind, ok=False, error=f"no answer within {timeout:g} s")
    except (CannotRun, ConnectionNotDefined) as exc:
        return ProbeObservation(at=at, kind=kind, ok=None, error=str(exc))
    except Exception as exc:  # any failure of the target (or of talking to it) is an observation
        return ProbeObservation(at=at, kind=kind, ok=False, error=error_text(exc))


async def _dispatch(service: Service, *, at: datetime, conn: Resolved, clusters: ClusterSet | None,
                    http: httpx.AsyncClient | None) -> ProbeObservation:
    probe, timeout = service.probe, service.timeout.total_seconds()
    if isinstance(probe, TcpProbe):
        return await _probe_tcp(probe, at=at, conn=conn)
    if isinstance(probe, HttpProbe):
        if http is not None:
            return await _probe_http(probe, at=at, conn=conn, client=http, timeout=timeout)
        async with probe_http_client() as client:
            return await _probe_http(probe, at=at, conn=conn, client=client, timeout=timeout)
    if probe.cluster is None:
        return await _probe_server(probe, at=at, info=conn(str(probe.conn_id)), timeout=timeout)
    if clusters is None or probe.cluster not in clusters.items:
        where = f" ({clusters.file})" if clusters is not None else ""
        raise CannotRun(f"cluster {probe.cluster!r} is not a valid cluster of the clusters file{where}")
    return await _probe_cluster(probe, clusters.items[probe.cluster], at=at, conn=conn, timeout=timeout)


# -- tcp and http ------------------------------------------------------------------------------------
async def _probe_tcp(probe: TcpProbe, *, at: datetime, conn: Resolved) -> ProbeObservation:
    host, port = probe.host, probe.port
    if probe.conn_id is not None:
        info = conn(probe.conn_id)
        host, port = info.host, port or info.port
        if not host or not port:
            raise CannotRun(f"connection {probe.conn_id!r} has no host and port")
    target = f"{host}:{port}"
    started = time.monotonic()
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return ProbeObservation(at=at, kind="tcp", ok=False, target=target, error=f"{target}: {error_text(exc)}")
    elapsed = (time.monotonic() - started) * 1000
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 0.5)
    return ProbeObservation(at=at, kind="tcp", ok=True, target=target, response_ms=round(elapsed, 3),
                            network_latency_ms=round(elapsed, 3))


def http_parts(info: ConnectionInfo, endpoint: str) -> tuple[str, tuple[str, str] | None, dict[str, str]]:
    """(url, basic auth, headers) from an HTTP connection, the way the http provider's HttpHook builds them."""
    host = info.host or ""
    base = host if "://" in host else f"{info.schema or 'http'}://{host}"
    if info.port:
        base += f":{info.port}"
    if base and not base.endswith("/") and endpoint and not endpoint.startswith("/"):
        url = f"{base}/{endpoint}"
    else:
        url = base + (endpoint or "")
    auth = (info.login, info.password or "") if info.login else None
    headers = {str(k): str(v) for k, v in info.extra.items() if k not in HTTP_HOOK_OPTIONS}
    return url, auth, headers


async def _probe_http(probe: HttpProbe, *, at: datetime, conn: Resolved, client: httpx.AsyncClient,
                      timeout: float) -> ProbeObservation:
    if probe.url is not None:
        url, auth, headers = probe.url, None, {}
    else:
        url, auth, headers = http_parts(conn(str(probe.http_conn_id)), probe.endpoint)
    target = redact_url(url)
    started = time.monotonic()
    found: bool | None = None
    async with client.stream(probe.method, url, auth=auth, headers=headers, timeout=timeout) as response:
        if probe.expect_body_contains is not None:
            found = await _body_contains(response, probe.expect_body_contains)
        else:
            await response.aclose()
    elapsed = round((time.monotonic() - started) * 1000, 3)
    error = None
    if response.status_code != probe.expected_status:
        error = f"{target} answered HTTP {response.status_code} (expected {probe.expected_status})"
    elif found is False:
        error = f"{target}: the body does not contain {probe.expect_body_contains!r}"
    return ProbeObservation(at=at, kind="http", ok=error is None, error=error, target=target, response_ms=elapsed)


async def _body_contains(response: httpx.Response, text: str) -> bool:
    wanted, seen, size = text.encode(), b"", 0
    async for chunk in response.aiter_bytes():
        seen = seen[-len(wanted):] + chunk
        if wanted in seen:
            return True
        size += len(chunk)
        if size > BODY_LIMIT:
            break
    return False


# -- postgres ----------------------------------------------------------------------------------------
@dataclass
class _Read:
    state: MemberState
    conn: psycopg.AsyncConnection | None = None
    connect_ms: float = 0.0
    address: str | None = None
    no_privilege: bool = False  # it answers, but its login may not read the replication state


async def _connect(info: ConnectionInfo, *, database: str | None, timeout: float) -> psycopg.AsyncConnection:
    params: dict[str, Any] = {
        "host": info.host or "127.0.0.1", "port": int(info.port or 5432), "user": info.login or "postgres",
        "dbname": database or info.schema or "postgres", "connect_timeout": max(2, math.ceil(timeout)),
        "application_name": "dr_health_probe",
    }
    if info.password:
        params["password"] = info.password
    params.update({k: str(info.extra[k]) for k in LIBPQ_EXTRAS if k in info.extra})
    return await asyncio.wait_for(psycopg.AsyncConnection.connect(autocommit=True, **params), timeout)


async def _fetch(conn: psycopg.AsyncConnection, sql: str) -> tuple | None:
    async with conn.cursor() as cur:
        await cur.execute(sql, prepare=False)
        return await cur.fetchone() if cur.description else None


async def _read_state(conn: psycopg.AsyncConnection, *, member: str, conn_id: str) -> MemberState:
    started = time.monotonic()
    row = await _fetch(conn, MEMBER_SQL)
    assert row is not None
    marker = (await _fetch(conn, MARKER_SQL) or (None,))[0] if row[-1] else None
    return member_state_from_row(row, member=member, conn_id=conn_id, marker_text=marker,
                                 response_ms=round((time.monotonic() - started) * 1000, 3))


async def _read_member(member: str, conn_id: str, info: ConnectionInfo | Exception, *, database: str | None,
                       budget: float) -> _Read:
    if isinstance(info, Exception):
        return _Read(unreachable(member=member, conn_id=conn_id, error=str(info)))
    address = f"{info.host or '127.0.0.1'}:{info.port or 5432}"
    started = time.monotonic()
    try:
        conn = await _connect(info, database=database, timeout=budget)
    except Exception as exc:  # refused, timed out, auth failed: unreachable
        error = f"no answer within {budget:g} s" if isinstance(exc, TimeoutError) else error_text(exc)
        return _Read(unreachable(member=member, conn_id=conn_id, error=error), address=address)
    read = _Read(unreachable(member=member, conn_id=conn_id, error="not read"), conn=conn, address=address,
                 connect_ms=(time.monotonic() - started) * 1000)
    try:
        remaining = max(0.05, budget - (time.monotonic() - started))
        read.state = await asyncio.wait_for(_read_state(conn, member=member, conn_id=conn_id), remaining)
    except Exception as exc:  # it answers but its state cannot be read: it may well be a primary
        read.state = unreadable(member=member, conn_id=conn_id, error=error_text(exc))
        read.no_privilege = isinstance(exc, psycopg.errors.InsufficientPrivilege)
    return read


async def _close(conn: psycopg.AsyncConnection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), 1)


async def _run_query(conn: psycopg.AsyncConnection, query: str) -> tuple[float, int | None]:
    """(milliseconds the service's query took, client connections on the server)."""
    started = time.monotonic()
    await _fetch(conn, query)
    elapsed = (time.monotonic() - started) * 1000
    with contextlib.suppress(psycopg.Error):
        row = await _fetch(conn, CONNECTIONS_SQL)
        return elapsed, int(row[0]) if row else None
    return elapsed, None


def _primary_lag(primary: MemberState, snapshot: ClusterSnapshot | None) -> dict[str, Any]:
    """Lag of the standbys streaming from ``primary`` (its pg_stat_replication): the worst one."""
    current = lsn_to_int(primary.current_lsn)
    if any(link.state is None for link in primary.standbys):  # rows without columns: not ours to see
        return {"state_error": "pg_stat_replication is hidden from this login (give it pg_monitor)"}
    links = [link for link in primary.standbys if link.state == "streaming"]
    facts: dict[str, Any] = {"standbys_streaming": len(links)}
    behind = [(max(0, current - (lsn_to_int(link.replay_lsn) or 0)), link) for link in links if current is not None]
    if not behind:
        return facts
    lag, worst = max(behind, key=lambda pair: pair[0])
    facts["lag_bytes"] = lag
    members = {m.member: m for m in snapshot.members} if snapshot else {}
    standby = members.get(worst.application_name)
    if standby is None and snapshot is not None:  # a standby streaming under another application_name
        others = [m for m in snapshot.members if m.reachable and m.in_recovery]
        standby = others[0] if len(others) == 1 else None
    facts["lag_seconds"] = 0.0 if lag == 0 else _replay_age(standby, now=primary.taken_at)
    return facts


def _standby_lag(standby: MemberState, primary: MemberState | None) -> dict[str, Any]:
    """How far ``standby`` is behind the primary's current WAL position (else what it received but did
    not replay, when the probe reads a lone server)."""
    replay = lsn_to_int(standby.replay_lsn)
    ahead = lsn_to_int(primary.current_lsn) if primary is not None else lsn_to_int(standby.receive_lsn)
    if replay is None or ahead is None:
        return {"replay_paused": standby.replay_paused}
    lag = max(0, ahead - replay)
    return {"lag_bytes": lag, "lag_seconds": 0.0 if lag == 0 else _replay_age(standby, now=standby.taken_at),
            "replay_paused": standby.replay_paused}


def _replay_age(standby: MemberState | None, *, now: datetime | None) -> float | None:
    if standby is None or standby.last_replay_at is None or now is None:
        return None
    return round(max(0.0, (now - standby.last_replay_at).total_seconds()), 3)


def _archiver_facts(state: MemberState | None) -> dict[str, Any]:
    if state is None or state.archiver is None:
        return {}
    a = state.archiver
    return {"archive_mode": a.archive_mode, "archiver_failing": a.failing,
            "last_failed_wal": a.last_failed_wal if a.failing else None}


def _choose(topology: Topology, role: str, snapshot: ClusterSnapshot) -> str | None:
    if role == "primary":
        return topology.primary
    fenced = set(topology.fenced)
    streaming = [m for m in topology.streaming if m not in fenced]
    return (streaming or [m for m in topology.standbys if m not in fenced and snapshot.get(m).reachable] or [None])[0]


async def _probe_cluster(probe: PostgresProbe, cluster: Cluster, *, at: datetime, conn: Resolved,
                         timeout: float) -> ProbeObservation:
    infos: list[ConnectionInfo | Exception] = []
    for member in cluster.members:
        try:
            infos.append(conn(member.conn_id))
        except Exception as exc:  # that member cannot be reached; the others may
            infos.append(exc)
    if all(isinstance(i, ConnectionNotDefined | CannotRun) for i in infos):
        raise CannotRun(f"no connection of cluster {cluster.name} can be used: {infos[0]}")
    database = probe.database or cluster.database
    reads = await asyncio.gather(*(
        _read_member(m.member_name, m.conn_id, info, database=database, budget=timeout * MEMBER_BUDGET)
        for m, info in zip(cluster.members, infos, strict=True)))
    try:
        snapshot = ClusterSnapshot(cluster=cluster.name, members=tuple(r.state for r in reads),
                                   addresses={m.member_name: r.address for m, r in zip(cluster.members, reads,
                                                                                       strict=True) if r.address})
        topology = decide_topology(snapshot)
        chosen = _choose(topology, probe.role, snapshot)
        base = ProbeObservation(at=at, kind="postgres", ok=False, role=probe.role, topology=topology.sentence)
        if chosen is None:
            if any(r.no_privilege for r in reads):  # a configuration problem, not a lost server
                raise CannotRun(f"cannot tell the roles in cluster {cluster.name}: {topology.sentence} (give the "
                                "connections a superuser or pg_monitor login)")
            what = "writable primary" if probe.role == "primary" else "reachable unfenced standby"
            return replace(base, error=f"no {what}: {topology.sentence}")
        read = next(r for m, r in zip(cluster.members, reads, strict=True) if m.member_name == chosen)
        primary = snapshot.get(topology.primary) if topology.primary else None
        facts = _primary_lag(read.state, snapshot) if probe.role == "primary" else _standby_lag(read.state, primary)
        base = replace(base, member=chosen, timeline=read.state.timeline, target=read.address,
                       **facts, **_archiver_facts(primary))
        assert read.conn is not None
        try:
            query_ms, connections = await _run_query(read.conn, probe.query)
        except psycopg.Error as exc:
            return replace(base, error=f"{chosen}: {error_text(exc)}")
        return replace(base, ok=True, response_ms=round(read.connect_ms + query_ms, 3), connections=connections)
    finally:
        await asyncio.gather(*(_close(r.conn) for r in reads))


async def _probe_server(probe: PostgresProbe, *, at: datetime, info: ConnectionInfo, timeout: float) -> ProbeObservation:
    target = f"{info.host or '127.0.0.1'}:{info.port or 5432}"
    base = ProbeObservation(at=at, kind="postgres", ok=False, target=target, member=info.conn_id)
    started = time.monotonic()
    try:
        conn = await _connect(info, database=probe.database, timeout=timeout)
    except Exception as exc:
        why = f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError) else error_text(exc)
        return replace(base, error=f"{target}: {why}")
    try:
        connect_ms = (time.monotonic() - started) * 1000
        try:
            query_ms, connections = await _run_query(conn, probe.query)
        except psycopg.Error as exc:
            return replace(base, error=f"{target}: {error_text(exc)}")
        base = replace(base, ok=True, response_ms=round(connect_ms + query_ms, 3), connections=connections)
        if not probe.needs_state:
            return base
        try:
            state = await _read_state(conn, member=info.conn_id, conn_id=info.conn_id)
        except psycopg.Error as exc:
            return replace(base, state_error=error_text(exc))
        role = "standby" if state.in_recovery else "primary"
        facts = _primary_lag(state, None) if role == "primary" else _standby_lag(state, None)
        return replace(base, role=role, timeline=state.timeline, **facts, **_archiver_facts(state))
    finally:
        await _close(conn)
