"""The Airflow connections a health probe uses, looked up before the probe's clock starts.

A probe gets what it needs of a connection (``ConnectionInfo``) through an injected ``lookup``: a plain
function (``airflow_connection``: Airflow's secrets backends, AIRFLOW_CONN_* variables, the metadata DB;
blocking) or an awaitable one (``ConnectionCache``: the blocking lookup in a thread, answers kept for a
while). The caller decides how connections are fetched; the probes only open the servers.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from disaster_recovery.postgres.replication import error_text

LOOKUP_TIMEOUT = 30.0  # seconds a connection lookup may take (it is not part of the probe's timeout)


@dataclass(frozen=True, kw_only=True)
class ConnectionInfo:
    """What a probe needs of an Airflow connection (the password is never shown)."""

    conn_id: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    schema: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_airflow(cls, conn_id: str) -> ConnectionInfo:
        """``airflow_connection(conn_id)``: blocking; ConnectionNotDefined when it does not exist."""
        return airflow_connection(conn_id)


class ConnectionNotDefined(LookupError):
    """The connection id is not defined (a configuration problem: the probe cannot run)."""


Lookup = Callable[[str], ConnectionInfo | Awaitable[ConnectionInfo]]


def airflow_connection(conn_id: str) -> ConnectionInfo:
    """The connection through Airflow (secrets backends, AIRFLOW_CONN_* variables, metadata DB). Blocking."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        c = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise ConnectionNotDefined(f"connection {conn_id!r} is not defined") from exc
    return ConnectionInfo(conn_id=conn_id, host=c.host, port=c.port, login=c.login, password=c.password,
                          schema=c.schema, extra=MappingProxyType(dict(c.extra_dejson)))


async def airflow_connection_async(conn_id: str) -> ConnectionInfo:
    """The connection through Airflow's async API: what a trigger (the triggerer's event loop) must use,
    since the blocking one may deadlock talking to the supervisor from inside an event loop."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        c = await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise ConnectionNotDefined(f"connection {conn_id!r} is not defined") from exc
    return ConnectionInfo(conn_id=conn_id, host=c.host, port=c.port, login=c.login, password=c.password,
                          schema=c.schema, extra=MappingProxyType(dict(await c.aextra_dejson())))


class ConnectionCache:
    """An async ``lookup`` that keeps answers for ``ttl`` (a rotated password is picked up after that); a
    missing connection is asked again next time. The lookup it wraps may be async (the default,
    ``airflow_connection_async``) or blocking (then it runs in a thread)."""

    def __init__(self, lookup: Lookup = airflow_connection_async, *, ttl: timedelta = timedelta(minutes=1)) -> None:
        self._lookup = lookup
        self._ttl = ttl.total_seconds()
        self._cache: dict[str, tuple[float, ConnectionInfo]] = {}

    async def __call__(self, conn_id: str) -> ConnectionInfo:
        hit = self._cache.get(conn_id)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        if inspect.iscoroutinefunction(self._lookup):
            result = self._lookup(conn_id)
        else:
            result = await asyncio.to_thread(self._lookup, conn_id)
        info = await result if inspect.isawaitable(result) else result
        self._cache[conn_id] = (time.monotonic(), info)
        return info

    def forget(self, conn_id: str | None = None) -> None:
        if conn_id is None:
            self._cache.clear()
        else:
            self._cache.pop(conn_id, None)


async def info_of(lookup: Lookup, conn_id: str) -> ConnectionInfo:
    result = lookup(conn_id)
    return await result if inspect.isawaitable(result) else result


class CannotRun(Exception):
    """The probe cannot run (configuration), as opposed to the target failing."""


async def resolve_connections(lookup: Lookup, conn_ids: list[str]) -> Callable[[str], ConnectionInfo]:
    """Look the connections up before the probe's clock starts (a slow secrets backend is not a slow
    target); what failed is raised again when the probe asks for it."""
    async def one(conn_id: str) -> ConnectionInfo | Exception:
        try:
            return await asyncio.wait_for(info_of(lookup, conn_id), LOOKUP_TIMEOUT)
        except TimeoutError:
            return CannotRun(f"looking up connection {conn_id!r} took longer than {LOOKUP_TIMEOUT:g} s")
        except ConnectionNotDefined as exc:
            return exc
        except Exception as exc:  # the lookup failed, not the target: kept, and raised where it is needed
            return CannotRun(f"cannot look up connection {conn_id!r}: {error_text(exc)}")

    found = dict(zip(conn_ids, await asyncio.gather(*(one(c) for c in conn_ids)), strict=True))

    def resolved(conn_id: str) -> ConnectionInfo:
        info = found[conn_id]
        if isinstance(info, Exception):
            raise info
        return info

    return resolved
