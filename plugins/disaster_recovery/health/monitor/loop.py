"""The health monitor's loop: probe every service on its own cadence, record every result, start recoveries.

One cycle: the services that are due are probed concurrently (``health.probes``), each observation is
judged against the service's thresholds and its own recent history (``health.evaluation``) and written as
a ``system_health_monitoring`` row; then every watched plan's failover criteria are evaluated on those
immutable samples and its ``IncidentGuard`` decides (``health.incidents``). A fire opens the incident's
``failover_events`` row and triggers the plan's DAG through Airflow's REST API with a run id derived from
the incident (Airflow answers a second trigger of the same id with 409). The monitor never runs a step.

Its own liveness is a heartbeat row (service ``dr-health-monitor``) every ``heartbeat_interval``.
Blocking work (catalog, connection lookups) runs in threads; the probes are asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from disaster_recovery.health.criteria import HealthSample
from disaster_recovery.health.monitor import incidents
from disaster_recovery.health.monitor.watch import PlanWatch, clear_since, conflicting, unknown_services, watches
from disaster_recovery.orchestration.airflow_api import DEFAULT_API_CONN_ID, AirflowApi, AirflowApiError, ApiLogin

log = logging.getLogger("disaster_recovery.health.monitor")
MONITOR_SERVICE = "dr-health-monitor"
INCIDENT_CHECK_SECONDS = 2.0
RETENTION_CHECK_SECONDS = 3600.0
MAX_SLEEP_SECONDS = 0.25
SAMPLES_KEPT = 300


class MonitorHeartbeat(BaseModel):
    """custom_metrics of the monitor's own heartbeat row."""

    started_at: datetime
    cycles: int
    probes: int
    rows_written: int
    last_cycle_ms: float
    services: list[str]
    watched_plans: list[str]
    open_incidents: list[str]
    problems: list[str]
    host: str
    pid: int


@dataclass(frozen=True, kw_only=True)
class MonitorConfig:
    services_file: str | None = None
    clusters_file: str | None = None
    plans_dir: str | None = None
    catalog_conn_id: str | None = None
    api_conn_id: str = DEFAULT_API_CONN_ID


@dataclass
class _ServiceState:
    service: Any
    history: Any  # evaluation.ServiceHistory: runs, window statistics, baseline
    samples: deque = field(default_factory=lambda: deque(maxlen=SAMPLES_KEPT))  # HealthSample, newest first
    next_due: float = 0.0


@dataclass
class _Stats:
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    cycles: int = 0
    probes: int = 0
    rows: int = 0
    last_cycle_ms: float = 0.0


class Monitor:
    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.stats = _Stats()
        self.problems: list[str] = []
        self.services: dict[str, _ServiceState] = {}
        self.watches: list[PlanWatch] = []
        self.guards: dict[str, incidents.IncidentGuard] = {}
        self.catalog = None
        self.api: AirflowApi | None = None
        self.clusters = None
        self.lookup = None  # probes.ConnectionCache (async: the triggerer's event loop must not block)
        self.http = None  # one httpx client for every HTTP probe
        self._last_heartbeat = 0.0
        self._last_incident_check = 0.0
        self._last_retention = 0.0
        self._heartbeat_interval = 10.0
        self._retention = timedelta(days=7)
        self._mtimes: dict[str, float] = {}

    # -- set-up ---------------------------------------------------------------------------------------
    async def setup(self) -> None:
        from disaster_recovery.catalog.repository import catalog_from_connection
        from disaster_recovery.health.probes import ConnectionCache, probe_http_client

        self._load_config()
        self.lookup = ConnectionCache()
        self.http = probe_http_client()
        conn_id = self.config.catalog_conn_id or self._settings.catalog_conn_id
        self.catalog = await asyncio.to_thread(catalog_from_connection, conn_id)
        try:
            login = await asyncio.to_thread(ApiLogin.from_connection, self.config.api_conn_id)
            self.api = AirflowApi(login)
        except AirflowApiError as exc:
            self.problems.append(f"{exc}: recoveries cannot be started")
        await self._warm_up()

    def _watched_files(self) -> list[Path]:
        from disaster_recovery.clusters.model import clusters_file
        from disaster_recovery.health.services import services_file
        from disaster_recovery.rendering import plans_dir

        plans = Path(self.config.plans_dir) if self.config.plans_dir else plans_dir()
        files = [Path(self.config.services_file or services_file()), Path(self.config.clusters_file or clusters_file())]
        return files + sorted(plans.glob("*.y*ml"))

    def _changed(self) -> bool:
        mtimes = {}
        for path in self._watched_files():
            try:
                mtimes[str(path)] = path.stat().st_mtime
            except OSError:
                mtimes[str(path)] = -1.0
        changed = mtimes != self._mtimes
        self._mtimes = mtimes
        return changed

    def _load_config(self) -> None:
        from disaster_recovery.clusters.model import load_clusters
        from disaster_recovery.health.evaluation import ServiceHistory
        from disaster_recovery.health.services import cluster_problems, load_services, monitor_settings
        from disaster_recovery.plans.reading.loader import plan_files
        from disaster_recovery.rendering import load_valid_plans, plans_dir

        self._changed()
        services = load_services(self.config.services_file)
        self.clusters = load_clusters(self.config.clusters_file)
        directory = Path(self.config.plans_dir) if self.config.plans_dir else plans_dir()
        plan_set = load_valid_plans(plan_files(directory)) if directory.is_dir() else None
        self.problems = [str(p) for p in (*services.problems, *self.clusters.problems,
                                          *(plan_set.problems if plan_set else ()))]
        self.problems += cluster_problems(services, set(self.clusters.items))
        self._settings = monitor_settings(services)
        self._heartbeat_interval = self._settings.heartbeat_interval.total_seconds()
        self._retention = self._settings.retention
        previous = self.services
        self.services = {
            name: previous[name] if name in previous and previous[name].service == service
            else _ServiceState(service=service, history=ServiceHistory(service))
            for name, service in services.items.items()
        }
        self.watches = watches(plan_set.plans.values() if plan_set else (), service_names=self.services)
        for watch in self.watches:
            missing = unknown_services(watch, self.services)
            if missing:
                self.problems.append(f"plan {watch.plan_name}: its failover criteria name services that are not "
                                     f"monitored: {', '.join(missing)} (add them to services.yaml)")
            self.guards.setdefault(watch.plan_name,
                                   incidents.IncidentGuard(plan_name=watch.plan_name, rearm_after=watch.rearm_after))
        for problem in self.problems:
            log.warning("health monitor configuration: %s", problem)

    async def _warm_up(self) -> None:
        """Histories from the newest rows (baselines, error rates survive a restart), guards from incidents."""
        from disaster_recovery.health.evaluation import ServiceHistory

        names = list(self.services)
        recent = await asyncio.to_thread(self.catalog.recent_health, names, limit_per_service=300) if names else {}
        for name, state in self.services.items():
            rows = recent.get(name, [])
            state.history = ServiceHistory.from_samples(state.service, rows)
            state.samples.extend(rows)  # newest first, as recent_health gives them
        events = await asyncio.to_thread(self.catalog.failover_events, limit=500)
        now = datetime.now(UTC)
        samples = self.samples()
        for watch in self.watches:
            from disaster_recovery.clusters.events import FailoverImpact

            mine = [(e, FailoverImpact.of(e)) for e in events]
            mine = [(e, i) for e, i in mine if i.incident and i.plan_name == watch.plan_name]
            open_ = next((e for e, _ in mine if e.status in ("initiated", "in_progress")), None)
            closed = [e.completed_at or e.initiated_at for e, _ in mine if e.status not in ("initiated", "in_progress")]
            guard = self.guards[watch.plan_name].restored(
                open_incident=incidents.OpenIncident(incident_id=str(open_.id), detected_at=open_.initiated_at,
                                                     run_id=run_id_for(str(open_.id))) if open_ else None,
                last_closed_at=max(closed) if closed else None,
                clear_since=clear_since(watch, samples), now=now,
            )
            self.guards[watch.plan_name] = guard
            log.info("watching plan %s (services %s): %s", watch.plan_name, ", ".join(watch.services),
                     "armed" if guard.armed else f"disarmed (open incident: {guard.open_incident})")

    # -- the loop -------------------------------------------------------------------------------------
    def samples(self) -> dict[str, list[HealthSample]]:
        """Every service's recent samples, newest first: the immutable input of this cycle's decisions."""
        return {name: list(state.samples) for name, state in self.services.items()}

    async def run(self, *, stop: asyncio.Event | None = None, duration: float | None = None) -> None:
        """Cycle until ``stop`` is set or ``duration`` seconds have passed (forever by default)."""
        ends = None if duration is None else time.monotonic() + duration
        while not (stop and stop.is_set()) and (ends is None or time.monotonic() < ends):
            started = time.monotonic()
            try:
                await self.cycle()
            except Exception:  # one bad cycle never ends the monitor
                log.exception("health monitor cycle failed")
            self.stats.last_cycle_ms = round((time.monotonic() - started) * 1000, 2)
            await asyncio.sleep(self._sleep_seconds())

    def _sleep_seconds(self) -> float:
        now = time.monotonic()
        due = min((s.next_due for s in self.services.values()), default=now + MAX_SLEEP_SECONDS)
        return max(0.01, min(MAX_SLEEP_SECONDS, due - now))

    async def cycle(self) -> None:
        from disaster_recovery.health.evaluation import evaluate
        from disaster_recovery.health.probes import probe_service

        if self._changed():
            self._load_config()
        clock = time.monotonic()
        due = [s for s in self.services.values() if s.next_due <= clock]
        if due:
            observations = await asyncio.gather(
                *(probe_service(s.service, lookup=self.lookup, clusters=self.clusters, http=self.http) for s in due))
            rows = []
            for state, observation in zip(due, observations, strict=True):
                reading = evaluate(state.service, observation, state.history)
                state.history.add(reading)
                state.samples.appendleft(reading.sample())
                rows.append(reading.row())
                state.next_due = clock + reading.next_delay.total_seconds()
            await asyncio.to_thread(self.catalog.record_health, rows)
            self.stats.probes += len(due)
            self.stats.rows += len(rows)
            await self._decide(datetime.now(UTC))
        self.stats.cycles += 1
        await self._housekeeping(clock)

    async def _decide(self, now: datetime) -> None:
        samples = self.samples()
        active = None
        for watch in self.watches:
            guard = self.guards[watch.plan_name]
            verdict = watch.verdict(samples)
            blocking: tuple[str, ...] = ()
            if verdict.met and guard.armed and guard.open_incident is None:
                if active is None:
                    active = await asyncio.to_thread(self._active_executions)
                blocking = conflicting(watch, active)
            decision = incidents.decide(guard, verdict=verdict, now=now, conflicting_executions=blocking)
            self.guards[watch.plan_name] = decision.guard
            if decision.action != "idle" or decision.guard.armed != guard.armed:
                log.info("%s", decision.sentence)
            if decision.fire:
                await self._start_recovery(watch, decision, verdict, now)

    def _active_executions(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(plan, execution, clusters it acts on) of every running execution, whatever plan it belongs to."""
        from disaster_recovery.plans.model import document_clusters

        return [(a.plan_name, a.execution_name, document_clusters(a.plan_document))
                for a in self.catalog.active_execution_plans()]

    async def _start_recovery(self, watch: PlanWatch, decision, verdict, now: datetime) -> None:
        from disaster_recovery.clusters.events import open_incident

        first_failure = self._first_failure(watch)
        source = ", ".join(watch.clusters) or ", ".join(watch.services)
        incident = await asyncio.to_thread(
            open_incident, self.catalog, cluster=watch.clusters[0] if watch.clusters else None,
            plan_name=watch.plan_name, dag_id=watch.dag_id, source=source, reason=verdict.sentence,
            evidence=list(verdict.reasons), first_failure_at=first_failure, detected_at=now,
            created_by="dr-health-monitor")
        incident_id = str(incident.id)
        run_id = run_id_for(incident_id)
        self.guards[watch.plan_name] = incidents.opened(
            self.guards[watch.plan_name],
            incidents.OpenIncident(incident_id=incident_id, detected_at=now, run_id=run_id))
        await self._trigger(watch, incident_id=incident_id, run_id=run_id, verdict=verdict, detected_at=now,
                            first_failure=first_failure)

    async def _trigger(self, watch: PlanWatch, *, incident_id: str, run_id: str, verdict, detected_at: datetime,
                       first_failure: datetime | None) -> None:
        conf = {
            "reason": f"automated: {verdict.sentence}"[:1000],
            "trigger_type": "automated",
            "incident_id": incident_id,
            "evidence": list(verdict.reasons),
            "detected_at": detected_at.isoformat(),
            "first_failure_at": first_failure.isoformat() if first_failure else None,
        }
        try:
            if self.api is None:
                raise AirflowApiError("no Airflow API connection")
            outcome = await self.api.trigger(watch.dag_id, run_id=run_id, conf=conf,
                                             note=f"Started by the health monitor: {verdict.sentence}"[:1000])
        except AirflowApiError as exc:
            outcome = None
            sentence = f"could not trigger {watch.dag_id}: {exc} (retrying)"
        else:
            sentence = outcome.sentence
        log.warning("incident %s of plan %s: %s", incident_id, watch.plan_name, sentence)
        if outcome is not None and not outcome.started:
            await asyncio.to_thread(self._close_incident, incident_id, f"not started: {outcome.sentence}")
            self.guards[watch.plan_name] = incidents.closed(self.guards[watch.plan_name], at=datetime.now(UTC))

    def _first_failure(self, watch: PlanWatch) -> datetime | None:
        """When the current run of failures began: the oldest sample of the newest unhealthy streak."""
        first = None
        for name in watch.services:
            state = self.services.get(name)
            if state is None:
                continue
            for sample in state.samples:  # newest first
                if sample.health_status == "healthy":
                    break
                first = sample.at if first is None or sample.at < first else first
        return first

    def _close_incident(self, incident_id: str, sentence: str) -> None:
        self.catalog.update_failover_event(incident_id, status="failed", completed_at=datetime.now(UTC),
                                           success_validation={"sentence": sentence, "ok": False})

    # -- housekeeping ---------------------------------------------------------------------------------
    async def _housekeeping(self, clock: float) -> None:
        if clock - self._last_incident_check >= INCIDENT_CHECK_SECONDS:
            self._last_incident_check = clock
            await self._check_open_incidents()
        if clock - self._last_heartbeat >= self._heartbeat_interval:
            self._last_heartbeat = clock
            await asyncio.to_thread(self.catalog.record_health, [self.heartbeat_row()])
        if clock - self._last_retention >= RETENTION_CHECK_SECONDS:
            self._last_retention = clock
            await asyncio.to_thread(self.catalog.delete_health_before, datetime.now(UTC) - self._retention)

    async def _check_open_incidents(self) -> None:
        """Close incidents whose row was completed, or whose run ended without completing them."""
        for watch in self.watches:
            guard = self.guards[watch.plan_name]
            incident = guard.open_incident
            if incident is None:
                continue
            row = await asyncio.to_thread(self.catalog.get_failover_event, incident.incident_id)
            if row.status not in ("initiated", "in_progress"):
                self.guards[watch.plan_name] = incidents.closed(guard, at=row.completed_at or datetime.now(UTC))
                log.info("incident %s of plan %s closed: %s", incident.incident_id, watch.plan_name, row.status)
                continue
            if self.api is None:
                continue
            try:
                state = await self.api.run_state(watch.dag_id, incident.run_id)
            except AirflowApiError as exc:
                log.warning("cannot read run %s of %s: %s", incident.run_id, watch.dag_id, exc)
                continue
            if state is None:  # never created (the API was down): the same run id again, never a second run
                await self._trigger(watch, incident_id=incident.incident_id, run_id=incident.run_id,
                                    verdict=watch.verdict(self.samples()), detected_at=incident.detected_at,
                                    first_failure=None)
            elif state in ("success", "failed"):
                await asyncio.to_thread(self._close_incident, incident.incident_id,
                                        f"the recovery run {incident.run_id} ended {state} without completing "
                                        "the incident (refused or failed before its failover step)")
                self.guards[watch.plan_name] = incidents.closed(guard, at=datetime.now(UTC))

    def heartbeat_row(self) -> dict[str, Any]:
        metrics = MonitorHeartbeat(
            started_at=self.stats.started_at, cycles=self.stats.cycles, probes=self.stats.probes,
            rows_written=self.stats.rows, last_cycle_ms=self.stats.last_cycle_ms, services=sorted(self.services),
            watched_plans=[w.plan_name for w in self.watches],
            open_incidents=[g.open_incident.incident_id for g in self.guards.values() if g.open_incident],
            problems=self.problems[:20], host=socket.gethostname(), pid=os.getpid(),
        )
        return {
            "monitoring_timestamp": datetime.now(UTC),
            "service_name": MONITOR_SERVICE,
            "health_status": "degraded" if self.problems else "healthy",
            "response_time_ms": int(self.stats.last_cycle_ms),
            "custom_metrics": metrics.model_dump(mode="json"),
            "alerts_triggered": [f"configuration: {p}"[:500] for p in self.problems[:5]],
        }

    async def aclose(self) -> None:
        if self.api is not None:
            await self.api.aclose()
            self.api = None
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self.catalog is not None:
            self.catalog.dispose()
            self.catalog = None


def run_id_for(incident_id: str) -> str:
    """The one run id of an incident's recovery (Airflow refuses a second run with it)."""
    return f"dr_incident__{incident_id}"
