"""A LocalExecutor that imports what recovery tasks need before it forks its workers.

With the default fork start method, LocalExecutor forks its workers in ``start()`` and every task process
is a fork of a worker, so whatever the scheduler has imported by then every task inherits, copy-on-write.
Measured on the lab (2 cores): a task process went from 0.45 s of CPU and ~0.8 s from start to
``execute()`` (about 180 modules imported, PostgresHook alone 0.4 s) to 0.08 s and ~0.27 s. On a failover
with two tasks before the promotion, that is about a second of the outage.

It also builds, once, the per-process objects every task process (or worker) would otherwise build for
itself (PREBUILT): the task SDK's listener manager with the plugins, the supervisor's schema migrator and
the SDK's message decoder. With those, a no-op task process uses about half the CPU it did
(bench/orchestration.py: lab CPU per 10-task run 6.9 s -> 3.7 s with the connection cache below).

The catch: library edits reach the tasks only after the scheduler restarts (plans and DAG files do not
need one). Use it with ``AIRFLOW__CORE__EXECUTOR=disaster_recovery.orchestration.executor.PreloadingLocalExecutor``.

With ``[secrets] use_cache`` on, it also starts Airflow's shared secrets cache (``SecretCache``, a
multiprocessing manager; Airflow itself starts one only in the dag-processor) before forking, so every
task process shares it: a connection is fetched from the API server once per ``cache_ttl_seconds`` instead
of once per lookup. A recovery's tasks look connections up again and again (the catalog's, each cluster
member's, the webhook's): about 50 execution-API requests per run of bench/orchestration.py's plan.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time

from airflow.executors.local_executor import LocalExecutor

PRELOAD = (
    "airflow.dag_processing.dagbag",
    "airflow.sdk.execution_time.task_runner",
    "airflow.sdk.bases.hook",
    "airflow.providers.postgres.hooks.postgres",
    "airflow.providers.http.hooks.http",
    "airflow.providers.smtp.hooks.smtp",
    "psycopg2",
    "psycopg2.extras",
    "psycopg",
    "sqlalchemy.dialects.postgresql.psycopg2",
    "disaster_recovery.rendering",
    "disaster_recovery.orchestration.runtime",
    "disaster_recovery.orchestration.validate",
    "disaster_recovery.orchestration.finalize",
    "disaster_recovery.steps.registry",
    "disaster_recovery.steps.database_failover",
    "disaster_recovery.steps.validation",
    "disaster_recovery.steps.notification",
    "disaster_recovery.notify",
    # Still imported by every task process after the above (an audit hook on "import" in the forked
    # tasks found only these): ~35 ms of each task's CPU.
    "jinja2.ext",
    "airflow.version",
    "airflow.sdk.execution_time.cache",
    # Imported by each worker when it supervises its first task.
    "airflow.sdk.execution_time.supervisor",
)


def share_secret_cache() -> bool:
    """Start Airflow's secrets cache in this process (if ``[secrets] use_cache``); True if it runs.

    Task processes are forked with a bare ``os.fork`` (not multiprocessing), which does not reset a
    manager proxy's per-process connection: a child would share its parent's socket if the parent had
    used the cache. Each forked child drops the inherited one, so it opens its own on first use.
    """
    from airflow.sdk.execution_time.cache import SecretCache

    SecretCache.init()
    cache = SecretCache._cache
    if cache is None:
        return False

    def fresh_connection() -> None:
        with contextlib.suppress(AttributeError):
            cache._tls.__dict__.clear()

    os.register_at_fork(after_in_child=fresh_connection)
    return True


def share_comms_decoder() -> bool:
    """Build the task SDK's decoder of supervisor messages once, here, for every task process to inherit.

    Each task process's CommsDecoder builds ``TypeAdapter(ToTask)`` twice (a union of ~40 message
    models): ~11 % of a no-op task process's time (py-spy), every time the same validator. Only that call
    is answered from the shared one; any other goes to pydantic as before. False (and nothing changed)
    when the task SDK no longer looks as expected.
    """
    from airflow.sdk.execution_time import comms
    from pydantic import TypeAdapter

    if getattr(comms, "TypeAdapter", None) is not TypeAdapter or not hasattr(comms, "ToTask"):
        return False
    to_task = comms.ToTask
    shared = TypeAdapter(to_task)

    def type_adapter(type_, *args, **kwargs):
        return shared if type_ is to_task and not args and not kwargs else TypeAdapter(type_, *args, **kwargs)

    comms.TypeAdapter = type_adapter
    return True


def _listener_manager() -> None:
    """Every task process asks for it before its first line of work, and the first call loads the plugins
    folder (entry points, then dr_plugin.py, which builds the DR API's FastAPI app): ~50 ms of CPU a task,
    13 % of a no-op task's process (py-spy). Cached per process, so a fork inherits the answer. (A
    plugin's listener that needs per-process state would share it too; ours has no listeners.)"""
    from airflow.sdk.listener import get_listener_manager

    get_listener_manager()


def _schema_migrator() -> None:
    """Built (cached per process) when a worker supervises its first task: 0.34 s of CPU in each worker,
    which the first run after a start waited for (its parallel tasks' queued -> running took 1-3 s)."""
    from airflow.sdk.execution_time.schema import get_schema_version_migrator

    get_schema_version_migrator()


PREBUILT = (
    ("the task SDK's listener manager and plugins", _listener_manager),
    ("the supervisor's schema migrator", _schema_migrator),
    ("the task SDK's message decoder", share_comms_decoder),
)


class PreloadingLocalExecutor(LocalExecutor):
    def start(self) -> None:
        if share_secret_cache():
            self.log.info("task processes share the secrets cache (connections, variables)")
        started = time.perf_counter()
        loaded = []
        for name in PRELOAD:
            try:
                importlib.import_module(name)
                loaded.append(name)
            except Exception as exc:  # a module that cannot be preloaded is imported by the task, as before
                self.log.warning("not preloading %s: %s: %s", name, type(exc).__name__, exc)
        for what, build in PREBUILT:
            try:
                if build() is not False:
                    loaded.append(what)
            except Exception as exc:  # then each process builds its own, as before
                self.log.warning("not prebuilding %s: %s: %s", what, type(exc).__name__, exc)
        self.log.info("preloaded %d modules and objects for the task processes in %.2f s", len(loaded),
                      time.perf_counter() - started)
        super().start()
