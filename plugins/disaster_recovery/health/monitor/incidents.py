"""When the health monitor starts a recovery: exactly once per incident, with hysteresis. Pure.

One ``IncidentGuard`` per automated plan. Each monitor cycle gives it the plan's criteria verdict (on the
cycle's immutable samples) and what the catalog says is going on; it answers fire / hold / idle with a
sentence. The rules:

- fire only on criteria met while *armed*; firing disarms;
- an incident stays open until its row is closed (the plan's failover step completes it, or the monitor
  closes it when the plan's run ended without doing so); while open, nothing fires;
- re-armed only after the criteria have been seen clear for ``rearm_after`` without interruption, so a
  flapping service, or a second monitor cycle of the same outage, never starts a second recovery;
- held (not disarmed) while another recovery execution acts on the same clusters: a planned switchover
  stops the primary for a moment and must not look like an outage;
- after a restart the guard is restored from the catalog: an open incident stays open, and a recently
  closed one keeps the guard disarmed unless the samples show the criteria clear since it closed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from disaster_recovery.health.criteria import CriteriaVerdict


@dataclass(frozen=True, kw_only=True)
class OpenIncident:
    incident_id: str
    detected_at: datetime
    run_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class IncidentGuard:
    plan_name: str
    rearm_after: timedelta
    armed: bool = True
    open_incident: OpenIncident | None = None
    clear_since: datetime | None = None  # criteria not met, continuously, since this moment
    last_closed_at: datetime | None = None

    def restored(self, *, open_incident: OpenIncident | None, last_closed_at: datetime | None,
                 clear_since: datetime | None, now: datetime) -> IncidentGuard:
        """The guard after a restart, from the catalog's incidents and the warmed-up samples."""
        armed = open_incident is None and (
            last_closed_at is None
            or (clear_since is not None and now - clear_since >= self.rearm_after)
            or now - last_closed_at >= timedelta(days=1)  # a day later it is another incident
        )
        return replace(self, armed=armed, open_incident=open_incident, clear_since=clear_since,
                       last_closed_at=last_closed_at)


@dataclass(frozen=True, kw_only=True)
class IncidentDecision:
    action: str  # fire | hold | idle
    sentence: str
    guard: IncidentGuard

    @property
    def fire(self) -> bool:
        return self.action == "fire"


def decide(guard: IncidentGuard, *, verdict: CriteriaVerdict, now: datetime,
           conflicting_executions: tuple[str, ...] = ()) -> IncidentDecision:
    """What to do this cycle (``conflicting_executions``: active executions acting on the same clusters)."""
    plan = guard.plan_name
    if not verdict.met:
        clear_since = guard.clear_since or now
        armed = guard.armed
        if not armed and guard.open_incident is None and now - clear_since >= guard.rearm_after:
            armed = True
        new = replace(guard, clear_since=clear_since, armed=armed)
        if armed and not guard.armed:
            return IncidentDecision(action="idle", guard=new, sentence=(
                f"{plan}: re-armed, its criteria have been clear for {_seconds(now - clear_since)}."))
        return IncidentDecision(action="idle", guard=new, sentence=f"{plan}: {verdict.sentence}.")
    met = replace(guard, clear_since=None)
    if guard.open_incident is not None:
        return IncidentDecision(action="hold", guard=met, sentence=(
            f"{plan}: {verdict.sentence}; incident {guard.open_incident.incident_id} (detected "
            f"{guard.open_incident.detected_at.isoformat(timespec='seconds')}) is still open, so no second recovery."))
    if not guard.armed:
        return IncidentDecision(action="hold", guard=met, sentence=(
            f"{plan}: {verdict.sentence}; the same incident as the last recovery (the criteria have not been "
            f"clear for {_seconds(guard.rearm_after)} since), so it is not started again."))
    if conflicting_executions:
        return IncidentDecision(action="hold", guard=met, sentence=(
            f"{plan}: {verdict.sentence}; held while recovery execution(s) {', '.join(conflicting_executions)} act "
            "on the same cluster."))
    return IncidentDecision(action="fire", guard=replace(met, armed=False), sentence=(
        f"{plan}: {verdict.sentence}: starting the recovery."))


def opened(guard: IncidentGuard, incident: OpenIncident) -> IncidentGuard:
    return replace(guard, open_incident=incident, armed=False, clear_since=None)


def closed(guard: IncidentGuard, *, at: datetime) -> IncidentGuard:
    return replace(guard, open_incident=None, last_closed_at=at, armed=False)


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"
