"""Opening things named by Airflow connection ids: PostgreSQL through PostgresHook, addresses, URLs.

Credentials stay inside the hooks; what this module returns for display (``pg_address``) never holds a
password.
"""

from __future__ import annotations

import json
from typing import Any


def _postgres_hook(conn_id: str, *, connect_timeout: float | None, database: str | None = None):
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id, **({"database": database} if database else {}))
    connection = hook.connection
    extra = connection.extra_dejson
    if connect_timeout is not None and "connect_timeout" not in extra:
        # A dead host must not hang the task for the OS TCP timeout; the connection's own value wins.
        connection.extra = json.dumps({**extra, "connect_timeout": max(1, int(connect_timeout))})
    return hook


def pg_connect(
    conn_id: str, *, connect_timeout: float | None = 5, autocommit: bool = True, database: str | None = None
) -> Any:
    """A new DB-API connection (psycopg 3 or psycopg2, as the postgres provider picks) to ``conn_id``
    (its own database, or ``database``)."""
    conn = _postgres_hook(conn_id, connect_timeout=connect_timeout, database=database).get_conn()
    conn.autocommit = autocommit
    return conn


def pg_address(conn_id: str) -> str:
    """``host:port`` of a PostgreSQL connection (for output and sentences; no credentials)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    connection = PostgresHook(postgres_conn_id=conn_id).connection
    return f"{connection.host}:{connection.port or 5432}"


def http_target(conn_id: str, endpoint: str = "") -> tuple[str, tuple[str, str] | None, dict[str, str]]:
    """(url, basic auth or None, headers) of an Airflow HTTP connection, resolved the way HttpHook does:
    base URL from host/schema/port, login/password as basic auth, extra keys that are not HttpHook
    options as headers."""
    from airflow.providers.http.hooks.http import HttpHook

    hook = HttpHook(method="GET", http_conn_id=conn_id)
    url = hook.url_from_endpoint(endpoint)
    connection = hook.get_connection(conn_id)
    auth = (connection.login, connection.password or "") if connection.login else None
    options = {
        "stream", "cert", "proxies", "proxy", "timeout", "verify", "verify_ssl", "allow_redirects",
        "max_redirects", "trust_env", "check_response", "srv_lookup",
    }
    headers = {str(k): str(v) for k, v in connection.extra_dejson.items() if k not in options}
    return url, auth, headers


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…``: webhook URLs often carry their secret in the path or query."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    tail = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{tail}"
