"""The health monitor as an Airflow trigger: a long-running asyncio loop in the triggerer.

Why a trigger: probing every second needs a process that is always there, and a deferred task's trigger
is exactly that — it holds no worker slot, lives in the triggerer's event loop beside other triggers, is
re-created from its serialized arguments when the triggerer restarts (or on another triggerer when this
one dies), and is unaffected by scheduler restarts. The DAG ``dr_health_monitor`` (schedule
``@continuous``) defers its one task to it; should the trigger ever end or fail, the run ends and the
scheduler starts the next one at once. An Asset watcher would also run in the triggerer, but the runs it
starts carry neither a conf nor a deterministic run id; a resumed task would add a worker start-up and a
gap in the monitoring in the middle of the incident. So the trigger starts recoveries itself, through the
REST API, with one run id per incident.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from disaster_recovery.health.monitor.loop import Monitor, MonitorConfig


class HealthMonitorTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        services_file: str | None = None,
        clusters_file: str | None = None,
        plans_dir: str | None = None,
        catalog_conn_id: str | None = None,
        api_conn_id: str = "dr_airflow_api",
        run_for_seconds: float | None = None,
    ) -> None:
        super().__init__()
        self.services_file = services_file
        self.clusters_file = clusters_file
        self.plans_dir = plans_dir
        self.catalog_conn_id = catalog_conn_id
        self.api_conn_id = api_conn_id
        self.run_for_seconds = run_for_seconds

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "disaster_recovery.health.monitor.trigger.HealthMonitorTrigger",
            {
                "services_file": self.services_file,
                "clusters_file": self.clusters_file,
                "plans_dir": self.plans_dir,
                "catalog_conn_id": self.catalog_conn_id,
                "api_conn_id": self.api_conn_id,
                "run_for_seconds": self.run_for_seconds,
            },
        )

    async def _set_up(self, monitor: Monitor) -> None:
        """Set up, retrying with backoff: a catalog that is down at start must not end the monitor (the
        scheduler would start runs in a tight loop)."""
        delay = 1.0
        while True:
            try:
                await monitor.setup()
                return
            except Exception as exc:
                self.log.error("health monitor cannot start yet (%s: %s); retrying in %.0f s",
                               type(exc).__name__, exc, delay)
                await monitor.aclose()
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        config = MonitorConfig(
            services_file=self.services_file, clusters_file=self.clusters_file, plans_dir=self.plans_dir,
            catalog_conn_id=self.catalog_conn_id, api_conn_id=self.api_conn_id,
        )
        monitor = Monitor(config)
        started = time.monotonic()
        try:
            await self._set_up(monitor)
            self.log.info("health monitor started: %d service(s), watching plan(s) %s; problems: %s",
                          len(monitor.services), ", ".join(w.plan_name for w in monitor.watches) or "none",
                          "; ".join(monitor.problems) or "none")
            await monitor.run(duration=self.run_for_seconds)
        except asyncio.CancelledError:
            self.log.info("health monitor stopped (triggerer shutting down or task cleared)")
            raise
        finally:
            await monitor.aclose()
        yield TriggerEvent({
            "status": "rotated",
            "seconds": round(time.monotonic() - started, 1),
            "cycles": monitor.stats.cycles,
            "probes": monitor.stats.probes,
        })
