"""Exactly one recovery per incident, with hysteresis: the pure incident guard and the plan watches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import yaml
from plan_factory import EXAMPLE_PLAN

from disaster_recovery.health.criteria import CriteriaVerdict, HealthSample
from disaster_recovery.health.monitor.incidents import IncidentGuard, OpenIncident, closed, decide, opened
from disaster_recovery.health.monitor.watch import clear_since, conflicting, watches
from disaster_recovery.plans import parse_plan

T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
MET = CriteriaVerdict(True, "failover criteria met: db was unhealthy or worse in its last 3 probes", ("db",))
CLEAR = CriteriaVerdict(False, "automated recovery criteria not met")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def guard() -> IncidentGuard:
    return IncidentGuard(plan_name="p", rearm_after=timedelta(seconds=30))


def test_fires_once_then_holds_while_the_incident_is_open():
    first = decide(guard(), verdict=MET, now=at(0))
    assert first.fire and first.sentence.endswith("starting the recovery.")
    g = opened(first.guard, OpenIncident(incident_id="i1", detected_at=at(0)))
    for second in range(1, 60):  # a second monitor cycle of the same outage, again and again
        d = decide(g, verdict=MET, now=at(second))
        assert d.action == "hold" and "incident i1" in d.sentence
        g = d.guard


def test_a_flapping_service_does_not_start_a_second_recovery():
    g = opened(decide(guard(), verdict=MET, now=at(0)).guard, OpenIncident(incident_id="i1", detected_at=at(0)))
    g = closed(g, at=at(10))  # the failover completed
    for second in range(11, 40, 2):  # healthy, unhealthy, healthy... never clear for 30 s
        g = decide(g, verdict=CLEAR, now=at(second)).guard
        d = decide(g, verdict=MET, now=at(second + 1))
        assert d.action == "hold" and "same incident" in d.sentence
        g = d.guard


def test_rearmed_after_the_criteria_stay_clear_then_fires_for_a_new_incident():
    g = closed(opened(guard(), OpenIncident(incident_id="i1", detected_at=at(0))), at=at(5))
    d = decide(g, verdict=CLEAR, now=at(6))
    assert not d.guard.armed
    d = decide(d.guard, verdict=CLEAR, now=at(36))
    assert d.guard.armed and "re-armed" in d.sentence
    assert decide(d.guard, verdict=MET, now=at(40)).fire


def test_held_but_not_disarmed_while_a_conflicting_execution_runs():
    d = decide(guard(), verdict=MET, now=at(0), conflicting_executions=("wedsync-switchover run1",))
    assert d.action == "hold" and "wedsync-switchover run1" in d.sentence and d.guard.armed
    assert decide(d.guard, verdict=MET, now=at(1)).fire  # once it is over


def test_restored_after_a_restart():
    now = at(100)
    still_open = guard().restored(open_incident=OpenIncident(incident_id="i1", detected_at=at(0)),
                                  last_closed_at=None, clear_since=None, now=now)
    assert not still_open.armed and decide(still_open, verdict=MET, now=now).action == "hold"
    recent = guard().restored(open_incident=None, last_closed_at=at(90), clear_since=None, now=now)
    assert decide(recent, verdict=MET, now=now).action == "hold"  # the outage it already answered
    cleared = guard().restored(open_incident=None, last_closed_at=at(20), clear_since=at(40), now=now)
    assert decide(cleared, verdict=MET, now=now).fire  # clear for 60 s since: a new incident
    assert guard().restored(open_incident=None, last_closed_at=None, clear_since=None, now=now).armed


def cluster_plan(**overrides):
    data = yaml.safe_load(EXAMPLE_PLAN.read_text())
    data["execution_mode"] = "fully_automated"
    data["steps"] = [{"name": "promote", "type": "database_failover", "config": {"cluster": "wedsync"}}]
    data.update(overrides)
    return parse_plan(data)


def test_a_failover_plan_is_watched_on_its_services_and_cluster():
    (watch,) = watches([cluster_plan()], service_names=["wedsync-primary-db", "other"])
    assert watch.services == ("wedsync-primary-db",) and watch.clusters == ("wedsync",)
    assert watch.dag_id == "dr_plan__wedsync-database-failover"
    assert conflicting(watch, [("wedsync-switchover", "wedsync-switchover run1", ("wedsync",)),
                               ("other-plan", "other run", ("billing",))]) == ("wedsync-switchover run1",)
    assert watches([cluster_plan(execution_mode="manual")], service_names=[]) == []  # a human starts it


def test_clear_since_reads_the_samples():
    (watch,) = watches([cluster_plan()], service_names=["wedsync-primary-db"])

    def sample(second, status):
        return HealthSample(service_name="wedsync-primary-db", health_status=status, at=at(second))

    statuses = ["unhealthy"] * 3 + ["healthy"] * 5  # oldest first: an outage, then healthy since second 3
    rows = [sample(i, s) for i, s in enumerate(statuses)][::-1]
    assert clear_since(watch, {"wedsync-primary-db": rows}) == at(3)
    assert clear_since(watch, {"wedsync-primary-db": rows[5:]}) is None  # met at the newest sample
