"""Reaching a cluster's members through their Airflow connections: snapshots, roles, host control.

This is the I/O around the pure model (``clusters.model``) and decisions (``clusters.topology``): a
snapshot reads every member at once (one thread each, short connect timeout, so a dead member costs
its timeout once, not once per member); ``resolve_role`` answers "which connection is the primary of
cluster X now?" for backups, checks and probes that name a cluster instead of a connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowNotFoundException

from disaster_recovery.clusters.host.control import LocalHost
from disaster_recovery.clusters.host.recovery_conf import conninfo
from disaster_recovery.clusters.model import Cluster, ClusterSet, Member, load_clusters
from disaster_recovery.clusters.state import (
    ClusterSnapshot,
    MemberState,
    read_member_state,
    state_error,
    unreachable,
    unreadable,
)
from disaster_recovery.clusters.topology import decide_topology
from disaster_recovery.connections import pg_connect

SNAPSHOT_CONNECT_TIMEOUT = 2


class ClusterAccessError(LookupError):
    """A cluster or member cannot be used as asked; the message says which and why."""


@dataclass(frozen=True, kw_only=True)
class MemberLogin:
    """How to reach a member as a client: address and credentials (never logged or returned in output)."""

    host: str
    port: int
    user: str
    password: str | None
    database: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def member_login(member: Member, *, database: str | None = None) -> MemberLogin:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    try:
        connection = PostgresHook(postgres_conn_id=member.conn_id).connection
    except AirflowNotFoundException as exc:
        raise ClusterAccessError(f"member {member.member_name}: connection {member.conn_id!r} is not defined") from exc
    return MemberLogin(
        host=connection.host or "127.0.0.1",
        port=int(connection.port or 5432),
        user=connection.login or "postgres",
        password=connection.password,
        database=database or connection.schema or "postgres",
    )


def replication_conninfo(primary: Member, *, application_name: str) -> tuple[str, str | None]:
    """(primary_conninfo for a standby of ``primary``, password kept apart for commands' environment)."""
    login = member_login(primary)
    info = conninfo(host=login.host, port=login.port, user=login.user, application_name=application_name)
    return info, login.password


def with_password(info: str, password: str | None) -> str:
    """A primary_conninfo the server keeps (postgresql.auto.conf, mode 0600, the server user's)."""
    return f"{info} {conninfo(password=password)}" if password else info


def member_host(cluster: Cluster, member: Member) -> LocalHost | None:
    """The host control of a member, if the cluster declares one."""
    if member.control is None:
        return None
    return LocalHost(
        member=member.member_name,
        data_directory=member.control.resolved_data_directory(),
        bindir=member.control.bindir,
    )


def connect_member(member: Member, *, connect_timeout: float = SNAPSHOT_CONNECT_TIMEOUT) -> Any:
    return pg_connect(member.conn_id, connect_timeout=connect_timeout)


def read_member(member: Member, *, connect_timeout: float = SNAPSHOT_CONNECT_TIMEOUT) -> MemberState:
    started = time.monotonic()
    conn = None
    try:
        try:
            conn = connect_member(member, connect_timeout=connect_timeout)
        except Exception as exc:  # any failure to connect makes the member unreachable
            return unreachable(member=member.member_name, conn_id=member.conn_id, error=state_error(exc))
        try:
            state = read_member_state(conn, member=member.member_name, conn_id=member.conn_id)
        except Exception as exc:  # it answers but cannot be read: it may well be a primary
            return unreadable(member=member.member_name, conn_id=member.conn_id, error=state_error(exc))
        elapsed = round((time.monotonic() - started) * 1000, 2)
        return dataclasses.replace(state, response_ms=elapsed)
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


def snapshot_cluster(cluster: Cluster, *, connect_timeout: float = SNAPSHOT_CONNECT_TIMEOUT) -> ClusterSnapshot:
    """Every member read concurrently; addresses come from the connections (no credentials)."""
    with ThreadPoolExecutor(max_workers=len(cluster.members)) as pool:
        states = tuple(pool.map(lambda m: read_member(m, connect_timeout=connect_timeout), cluster.members))
    addresses = {}
    for member in cluster.members:
        with contextlib.suppress(ClusterAccessError):
            addresses[member.member_name] = member_login(member).address
    return ClusterSnapshot(cluster=cluster.name, members=states, addresses=addresses)


def follows(cluster: Cluster, primary: Member) -> tuple[str, ...]:
    """The members streaming from ``primary`` on its timeline now (a fresh snapshot)."""
    topology = decide_topology(snapshot_cluster(cluster))
    return topology.streaming if topology.primary == primary.member_name else ()


def require_cluster(name: str, clusters: ClusterSet | None = None) -> Cluster:
    clusters = clusters or load_clusters()
    try:
        return clusters.require(name)
    except ValueError as exc:
        raise ClusterAccessError(str(exc)) from exc


def resolve_role(cluster_name: str, role: str = "primary", *, clusters: ClusterSet | None = None) -> str:
    """The connection id of the cluster's current ``primary`` (or its first streaming ``standby``)."""
    cluster = require_cluster(cluster_name, clusters)
    snapshot = snapshot_cluster(cluster)
    topology = decide_topology(snapshot)
    if role == "primary":
        if topology.primary is None:
            raise ClusterAccessError(topology.sentence)
        return cluster.member(topology.primary).conn_id
    names = topology.streaming or tuple(m for m in topology.standbys if m not in topology.fenced)
    if not names:
        raise ClusterAccessError(f"cluster {cluster_name} has no standby: {topology.sentence}")
    return cluster.member(names[0]).conn_id
