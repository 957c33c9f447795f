"""Parse DAG folders with every way to a database, the network, a Variable, a Connection or a subprocess
refused and recorded:  python tests/dags/parse_guard.py SPEC.json  (run by tests/dags/test_parse_guard.py).

The guards go in before anything else is imported, at the lowest level Python code can reach:

- network: socket methods (connect, connect_ex, sendto, sendmsg) of ``socket.socket`` and of a guarded
  ``_socket.socket``, ``create_connection`` and every name lookup (``getaddrinfo``, ``gethostbyname*``,
  ``gethostbyaddr``, ``getnameinfo``, in ``socket`` and ``_socket``);
- databases: libpq through psycopg2 (``psycopg2._connect``, which ``connect`` calls, and the connection class
  itself) and psycopg 3 (``Connection.connect``, ``AsyncConnection.connect``, ``generators.connect``), SQLite
  (``sqlite3.connect``, ``_sqlite3.connect``), any SQLAlchemy engine (``Engine.connect``, ``raw_connection``:
  Airflow's metadata DB too);
- Airflow Variables and Connections: the SDK's lookups every API ends in (``_get_variable``, ``_get_connection``
  and friends in ``airflow.sdk.execution_time.context``), ``Variable``/``Connection``/``BaseHook`` entry points
  of the SDK and of ``airflow.models``, the secret cache, and every secrets backend class's lookups;
- subprocesses: ``Popen._execute_child``, ``_posixsubprocess.fork_exec``, ``os.system``, ``os.posix_spawn*``,
  ``os.fork*``, ``os.exec*``.

Each attempt is recorded (kind, what, and the first frame in a watched folder) *and* refused with
``ParseTimeAccess``: a DAG file that swallows the exception is still reported. A parse with
``"isolate_network": true`` first moves the process into a network namespace of its own (root only), so a
C extension that opens its own sockets (bypassing every Python guard) reaches nothing either.

SPEC: {"watch": [folders], "parses": [{"name", "dag_folder", "env": {...}, "isolate_network": bool}]};
the last line of stdout is JSON: {name: {"dags": [...], "import_errors": {file: text}, "attempts": [...]}}.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import traceback

ATTEMPTS: list[dict] = []
STATE = {"armed": False, "watch": ()}


class ParseTimeAccess(RuntimeError):
    """A DAG file reached for a database, the network, a Variable, a Connection or a subprocess."""


def _culprit() -> str:
    for frame in reversed(traceback.extract_stack()[:-3]):
        if frame.filename.startswith(STATE["watch"]):
            return f"{frame.filename}:{frame.lineno}"
    return "<outside the watched folders>"


def _describe(args: tuple, kwargs: dict) -> str:
    shown = [a for a in args if isinstance(a, str | bytes | int | tuple | list)][:2]
    text = ", ".join(repr(a) for a in shown) or ", ".join(f"{k}=" for k in kwargs)
    return text[:200]


def _refuse(kind: str, what: str, args: tuple, kwargs: dict) -> None:
    STATE["armed"] = False  # recording must not trip the guards it is part of
    try:
        ATTEMPTS.append({"kind": kind, "what": what, "args": _describe(args, kwargs), "where": _culprit()})
    finally:
        STATE["armed"] = True
    raise ParseTimeAccess(f"{kind} access at parse time: {what}({_describe(args, kwargs)})")


def guard(owner, name: str, kind: str) -> None:
    """Wrap ``owner.name`` (function, method, classmethod or staticmethod) so that it refuses when armed."""
    static = inspect.getattr_static(owner, name, None)
    if static is None:
        return
    wrapper_type = type(static) if isinstance(static, classmethod | staticmethod) else None
    original = static.__func__ if wrapper_type else static
    what = f"{getattr(owner, '__name__', owner)}.{name}"

    @functools.wraps(original)
    def guarded(*args, **kwargs):
        if STATE["armed"]:
            _refuse(kind, what, args[1:] if wrapper_type is classmethod else args, kwargs)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper_type(guarded) if wrapper_type else guarded)


def guarded_class(module, name: str, kind: str) -> None:
    """Replace ``module.name`` (a connection class) by a subclass whose construction refuses when armed."""
    base = getattr(module, name)

    def __init__(self, *args, **kwargs):  # noqa: N807
        if STATE["armed"]:
            _refuse(kind, f"{module.__name__}.{name}", args, kwargs)
        base.__init__(self, *args, **kwargs)

    setattr(module, name, type(name, (base,), {"__init__": __init__, "__module__": module.__name__}))


def install_low_level_guards() -> None:
    import _socket
    import socket
    import subprocess

    raw = type("socket", (_socket.socket,), {"__module__": "_socket"})  # for code that skips socket.py
    for cls in (socket.socket, raw):
        for name in ("connect", "connect_ex", "sendto", "sendmsg"):
            guard(cls, name, "network")
    _socket.socket = _socket.SocketType = raw
    for module in (socket, _socket):
        for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
                     "getnameinfo"):
            guard(module, name, "network")

    import _posixsubprocess

    guard(subprocess.Popen, "_execute_child", "subprocess")
    guard(_posixsubprocess, "fork_exec", "subprocess")
    for name in ("system", "posix_spawn", "posix_spawnp", "fork", "forkpty", "execv", "execve"):
        guard(os, name, "subprocess")

    import _sqlite3
    import sqlite3
    import sqlite3.dbapi2

    for module in (sqlite3, sqlite3.dbapi2, _sqlite3):
        guard(module, "connect", "database")

    import psycopg2
    import psycopg2._psycopg
    import psycopg2.extensions

    guard(psycopg2, "_connect", "database")
    guard(psycopg2._psycopg, "_connect", "database")
    guarded_class(psycopg2.extensions, "connection", "database")
    psycopg2._psycopg.connection = psycopg2.extensions.connection

    import psycopg
    import psycopg.generators

    guard(psycopg.generators, "connect", "database")
    guard(psycopg.Connection, "connect", "database")
    guard(psycopg.AsyncConnection, "connect", "database")

    from sqlalchemy.engine import Engine

    guard(Engine, "connect", "database")
    guard(Engine, "raw_connection", "database")


def install_airflow_guards() -> None:
    """After Airflow is imported: its Variable and Connection lookups, down to every secrets backend."""
    import airflow.models.connection
    import airflow.models.variable
    import airflow.sdk.execution_time.context as context
    from airflow.sdk import BaseHook, Connection, Variable
    from airflow.sdk.execution_time.cache import SecretCache

    for name in ("_get_variable", "_set_variable", "_delete_variable", "_get_variable_keys"):
        guard(context, name, "variable")
    for name in ("_get_connection", "_async_get_connection"):
        guard(context, name, "connection")
    for name in ("get", "set", "delete", "keys"):
        guard(Variable, name, "variable")
        guard(airflow.models.variable.Variable, name, "variable")
    guard(Connection, "get", "connection")
    guard(Connection, "async_get", "connection")
    guard(BaseHook, "get_connection", "connection")
    guard(BaseHook, "aget_connection", "connection")
    guard(airflow.models.connection.Connection, "get_connection_from_secrets", "connection")
    guard(SecretCache, "get_variable", "variable")
    guard(SecretCache, "get_connection_uri", "connection")

    import airflow.sdk.execution_time.secrets.execution_api  # noqa: F401
    import airflow.secrets.environment_variables  # noqa: F401
    import airflow.secrets.local_filesystem  # noqa: F401
    import airflow.secrets.metastore  # noqa: F401
    from airflow._shared.secrets_backend.base import BaseSecretsBackend as CoreBase
    from airflow.sdk._shared.secrets_backend.base import BaseSecretsBackend as SdkBase

    seen: set[type] = set()
    todo = [CoreBase, SdkBase]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        for name, kind in (("get_connection", "connection"), ("aget_connection", "connection"),
                           ("get_conn_value", "connection"), ("get_variable", "variable"),
                           ("aget_variable", "variable")):
            if name in vars(cls):
                guard(cls, name, kind)


def isolate_network() -> str:
    """A network namespace of our own (only a down loopback): nothing is reachable below Python either."""
    import ctypes

    clone_newnet = 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(clone_newnet) != 0:
        return f"not isolated: unshare(CLONE_NEWNET) failed with errno {ctypes.get_errno()}"
    return "isolated"


def parse(folder: str) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    before = len(ATTEMPTS)
    STATE["armed"] = True
    try:
        bag = DagBag(dag_folder=folder)
    finally:
        STATE["armed"] = False
    return {
        "dags": sorted(bag.dags),
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "attempts": ATTEMPTS[before:],
    }


def main(spec_path: str) -> None:
    install_low_level_guards()
    with open(spec_path) as f:
        spec = json.load(f)
    STATE["watch"] = tuple(os.path.abspath(w) + os.sep for w in spec["watch"])
    import airflow.dag_processing.dagbag  # noqa: F401  (Airflow's own import is not DAG parsing)

    install_airflow_guards()
    results = {}
    for item in spec["parses"]:
        network = isolate_network() if item.get("isolate_network") else "shared"
        saved = dict(os.environ)
        for key, value in (item.get("env") or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            results[item["name"]] = {**parse(item["dag_folder"]), "network": network}
        finally:
            os.environ.clear()
            os.environ.update(saved)
    sys.stdout.write("\n" + json.dumps(results) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
