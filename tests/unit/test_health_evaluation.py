"""From observations to readings: statuses, runs of failures, error rate, availability, alerts, anomalies."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from disaster_recovery.health.anomaly import baseline, response_time_anomaly
from disaster_recovery.health.criteria import HealthSample, evaluate_failover_criteria
from disaster_recovery.health.evaluation import HealthReading, ProbeObservation, ServiceHistory, evaluate
from disaster_recovery.health.services import Service
from disaster_recovery.plans.language.criteria_models import FailoverCriteria

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def service(**fields) -> Service:
    probe = fields.pop("probe", {"kind": "tcp", "host": "127.0.0.1", "port": 25})
    return Service.model_validate({"name": "svc", "probe": probe, **fields})


def pg_service(**probe) -> Service:
    return service(probe={"kind": "postgres", "cluster": "wedsync", **probe})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def tick(self, seconds: float = 1.0) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def run(svc: Service, history: ServiceHistory, clock: Clock, *outcomes, gap: float = 1.0, **facts) -> list[HealthReading]:
    """Observe each outcome (True/False/None, or a response time in ms for a success) one ``gap`` apart."""
    readings = []
    for outcome in outcomes:
        ok = outcome if outcome is None or isinstance(outcome, bool) else True
        ms = 2.0 if isinstance(outcome, bool) or outcome is None else float(outcome)
        obs = ProbeObservation(at=clock.tick(gap), kind=svc.probe.kind, ok=ok, response_ms=ms if ok else None,
                               error=None if ok else "ConnectionRefusedError: [Errno 111] Connection refused", **facts)
        readings.append(history.observe(svc, obs))
    return readings


def test_a_failure_is_unhealthy_at_once_by_default_and_the_alert_turns_critical_after_three():
    svc, history, clock = service(), ServiceHistory(300), Clock()
    ok, *fails, back = run(svc, history, clock, True, False, False, False, True)
    assert (ok.status, ok.alert_level, ok.alerts, ok.consecutive_failures) == ("healthy", "none", (), 0)
    assert [r.status for r in fails] == ["unhealthy"] * 3
    assert [r.consecutive_failures for r in fails] == [1, 2, 3]
    assert [r.alert_level for r in fails] == ["warning", "warning", "critical"]
    assert fails[0].alerts == ("probe failed: ConnectionRefusedError: [Errno 111] Connection refused",)
    assert fails[2].alerts[-1] == "critical: unhealthy in 3 probes in a row"
    assert "svc is unhealthy: probe failed" in fails[0].sentence
    assert (back.status, back.consecutive_failures, back.consecutive_unhealthy) == ("healthy", 0, 0)
    # re-probe fast while confirming, back to the interval once the alert is critical
    assert [r.next_delay for r in fails] == [timedelta(seconds=0.25)] * 2 + [timedelta(seconds=1)]


def test_failures_to_unhealthy_makes_the_first_failures_degraded():
    svc, history, clock = service(failures_to_unhealthy=3, alert_after=2), ServiceHistory(300), Clock()
    readings = run(svc, history, clock, False, False, False, False, True, False)
    assert [r.status for r in readings] == ["degraded", "degraded", "unhealthy", "unhealthy", "healthy", "degraded"]
    assert [r.alert_level for r in readings] == ["warning", "warning", "warning", "critical", "none", "warning"]


def test_a_probe_that_could_not_run_is_unknown_and_neither_counts_nor_breaks_a_run():
    svc, history, clock = service(), ServiceHistory(300), Clock()
    first, unknown, second = run(svc, history, clock, False, None, False)
    assert unknown.status == "unknown" and unknown.alert_level == "warning"
    assert unknown.consecutive_failures == 1 and second.consecutive_failures == 2
    assert second.consecutive_unhealthy == 2
    assert unknown.error_rate == 100.0  # only the probes that ran count


def test_evaluate_changes_nothing_and_add_records():
    svc, history, clock = service(), ServiceHistory(300), Clock()
    obs = ProbeObservation(at=clock.tick(), kind="tcp", ok=False, error="refused")
    reading = evaluate(svc, obs, history)
    assert len(history.readings) == 0 and history.consecutive_failures == 0
    assert evaluate(svc, obs, history) == reading
    history.add(reading)
    assert len(history.readings) == 1 and history.consecutive_failures == 1


def test_response_time_thresholds():
    svc, history, clock = service(response_time_ms={"degraded": 100, "unhealthy": 1000}), ServiceHistory(300), Clock()
    fast, slow, slower = run(svc, history, clock, 5, 150, 1500)
    assert (fast.status, slow.status, slower.status) == ("healthy", "degraded", "unhealthy")
    assert slow.alerts == ("response time 150 ms is above the degraded limit 100 ms",)
    assert slower.consecutive_failures == 0  # slow is not failed: it answered


def test_error_rate_counts_probes_and_availability_weighs_time():
    svc, history, clock = service(window=300), ServiceHistory(300), Clock()
    run(svc, history, clock, *[True] * 8)
    # an outage: 4 failed probes re-probed every 0.25 s, then the service is back a second later
    readings = run(svc, history, clock, False, False, False, False, gap=0.25)
    back = run(svc, history, clock, True)[0]
    assert readings[-1].error_rate == pytest.approx(100 * 4 / 12, abs=0.01)
    assert back.error_rate == pytest.approx(100 * 4 / 13, abs=0.01)
    # by time: the first reading stands for one interval, each later one for the time since the one before;
    # 8 s + 1 s up, 4 x 0.25 s down: the re-probes do not weigh more than the calm probes around them
    assert back.availability_percent == pytest.approx(100 * 9 / 10, abs=0.01)
    assert back.window_probes == 13


def test_the_window_bounds_error_rate_and_availability():
    svc, history, clock = service(window=4), ServiceHistory(4), Clock()
    run(svc, history, clock, False)
    readings = run(svc, history, clock, True, True, True, True)
    assert [r.error_rate for r in readings] == [50.0, 33.33, 25.0, 0.0]
    assert readings[-1].availability_percent == 100.0 and readings[-1].window_probes == 4


def test_replication_lag_thresholds_and_a_primary_without_replica():
    svc = pg_service(replication_lag_bytes={"degraded": 1000, "unhealthy": 10**6},
                     replication_lag_seconds={"degraded": 30})
    history, clock = ServiceHistory(300), Clock()
    (fine,) = run(svc, history, clock, True, role="primary", member="n1", lag_bytes=10, lag_seconds=0.0,
                  standbys_streaming=1)
    (behind,) = run(svc, history, clock, True, role="primary", member="n1", lag_bytes=5000, lag_seconds=45.5,
                    standbys_streaming=1)
    (far,) = run(svc, history, clock, True, role="primary", member="n1", lag_bytes=2 * 10**6, standbys_streaming=1)
    (alone,) = run(svc, history, clock, True, role="primary", member="n1", standbys_streaming=0)
    assert fine.status == "healthy" and "lag 10 bytes" in fine.sentence
    assert behind.status == "degraded" and behind.alerts == (
        "replication lag 5000 bytes is above the degraded limit 1000 bytes",
        "replication lag 45.5 s is above the degraded limit 30 s")
    assert far.status == "unhealthy" and far.consecutive_failures == 0
    assert alone.status == "degraded" and alone.alerts == ("no standby streams from n1: it has no replica",)


def test_wal_archiving_failing_or_off_is_degraded():
    svc, history, clock = pg_service(wal_archiving=True), ServiceHistory(300), Clock()
    (good,) = run(svc, history, clock, True, role="primary", member="n1", archive_mode="on", archiver_failing=False)
    (failing,) = run(svc, history, clock, True, role="primary", member="n1", archive_mode="on", archiver_failing=True,
                     last_failed_wal="000000010000000000000003")
    (off,) = run(svc, history, clock, True, role="primary", member="n1", archive_mode="off", archiver_failing=False)
    (unread,) = run(svc, history, clock, True, role="primary", member="n1", state_error="InsufficientPrivilege: x")
    assert good.status == "healthy"
    assert failing.status == "degraded" and failing.alert_level == "warning"
    assert failing.alerts == ("WAL archiving is failing on n1 (last failed: 000000010000000000000003)",)
    assert off.alerts == ("WAL archiving is off on n1 (archive_mode off)",)
    assert unread.status == "degraded" and unread.alerts[0].startswith("cannot read the replication state")
    not_checked = pg_service()
    assert run(not_checked, ServiceHistory(300), clock, True, archive_mode="off")[0].status == "healthy"
    standby = pg_service(role="standby", wal_archiving=True)
    (of_primary,) = run(standby, ServiceHistory(300), clock, True, role="standby", member="n2", archive_mode="off")
    assert of_primary.alerts == ("WAL archiving is off on the primary (archive_mode off)",)
    (no_primary,) = run(standby, ServiceHistory(300), clock, True, role="standby", member="n2")
    assert no_primary.status == "healthy"  # the primary's own probe reports that it is gone


def test_anomaly_rule_bounds():
    assert baseline([1, 2, 3, 4, 100]).median_ms == 3 and baseline([1, 2, 3, 4, 100]).mad_ms == 1
    few = response_time_anomaly(500, [2.0] * 19, factor=3, min_samples=20, min_delta_ms=50)
    assert not few.anomalous and "no baseline yet (19 of 20" in few.sentence
    kw = {"factor": 3.0, "min_samples": 20, "min_delta_ms": 50.0}
    steady = [10.0] * 30
    assert not response_time_anomaly(59, steady, **kw).anomalous  # x3 = 30, but not 50 ms above the median
    assert response_time_anomaly(61, steady, **kw).anomalous
    noisy = [100.0 + (i % 5) * 20 for i in range(40)]  # median 140, MAD 20: 6 x 1.4826 x 20 = 178 above
    assert not response_time_anomaly(400, noisy, **kw).anomalous  # below median x 3 = 420
    assert response_time_anomaly(421, noisy, **kw).anomalous


def test_no_false_alarm_on_noisy_loopback_fast_probes():
    rng = random.Random(263)
    svc, history, clock = service(), ServiceHistory(300), Clock()
    values = [rng.lognormvariate(-1, 0.6) + (rng.random() < 0.03) * rng.uniform(5, 40) for _ in range(2000)]
    readings = run(svc, history, clock, *values)
    assert [r for r in readings if r.anomalies] == []
    assert all(r.status == "healthy" for r in readings)


def test_an_anomalous_response_time_is_degraded_with_its_baseline():
    svc, history, clock = service(), ServiceHistory(300), Clock()
    run(svc, history, clock, *[2.0 + (i % 3) * 0.5 for i in range(25)])
    (slow,) = run(svc, history, clock, 300)
    assert slow.status == "degraded" and slow.alert_level == "warning"
    detail = slow.anomalies["response_time_ms"]
    assert detail["value_ms"] == 300 and detail["baseline_median_ms"] == 2.5 and detail["samples"] == 25
    assert slow.alerts[0].startswith("anomalous response time 300.0 ms is above its baseline")
    assert not run(service(anomaly={"enabled": False}), history, clock, 300)[0].anomalies


def test_the_row_has_the_spec_columns_and_typed_metrics():
    svc = pg_service(wal_archiving=True)
    history, clock = ServiceHistory(300), Clock()
    (reading,) = run(svc, history, clock, 3.4, role="primary", member="n1", timeline=2, lag_bytes=0, lag_seconds=0.0,
                     standbys_streaming=1, archive_mode="on", archiver_failing=False, connections=7,
                     target="127.0.0.1:5432", topology="n1 is the primary of wedsync (timeline 2).")
    row = reading.row()
    assert row.values() == {
        "monitoring_timestamp": reading.at, "service_name": "svc", "health_status": "healthy",
        "response_time_ms": 3, "error_rate": 0.0, "network_latency_ms": None, "active_connections": 7,
        "custom_metrics": {
            "probe": "postgres", "ok": True, "availability_percent": 100.0, "consecutive_failures": 0,
            "consecutive_unhealthy": 0, "alert_level": "none", "window_probes": 1, "target": "127.0.0.1:5432",
            "member": "n1", "role": "primary", "timeline": 2, "lag_bytes": 0, "lag_seconds": 0.0,
            "standbys_streaming": 1, "archive_mode": "on", "archiver_failing": False,
            "topology": "n1 is the primary of wedsync (timeline 2).",
        },
        "alerts_triggered": (), "anomalies_detected": {},
    }
    tcp = ProbeObservation(at=clock.tick(), kind="tcp", ok=True, response_ms=0.4, network_latency_ms=0.4)
    assert evaluate(service(), tcp, ServiceHistory(300)).row().network_latency_ms == 0


def sample_of(reading: HealthReading, *, metrics: bool = True) -> HealthSample:
    """What the catalog gives back for a reading's row (HealthSample.from_row of the row's values)."""
    values = reading.row().values()
    if not metrics:
        values["custom_metrics"] = {}
    return HealthSample.from_row({**values, "throughput_rps": None})


@pytest.mark.parametrize("metrics", [True, False])
def test_a_history_warms_up_from_catalog_samples(metrics):
    svc, history, clock = service(), ServiceHistory(300), Clock()
    readings = run(svc, history, clock, *[2.0] * 25, False, False)
    samples = [sample_of(r, metrics=metrics) for r in reversed(readings)]  # newest first, as recent_health gives
    warm = ServiceHistory.from_samples(svc, samples)
    assert (warm.consecutive_failures, warm.consecutive_unhealthy) == (2, 2)
    assert len(warm.readings) == 27 and warm.readings[-1].at == readings[-1].at
    (third,) = run(svc, warm, clock, False)
    assert third.consecutive_unhealthy == 3 and third.alert_level == "critical"  # the run goes on across a restart
    (slow,) = run(svc, warm, clock, 300)
    assert slow.anomalies  # the baseline came back too
    short = ServiceHistory.from_samples(service(window=5), samples)
    assert len(short.readings) == 5 and short.window == 5


def test_readings_feed_the_failover_criteria():
    svc, history, clock = service(), ServiceHistory(300), Clock()
    readings = run(svc, history, clock, True, False, False, False)
    criteria = FailoverCriteria.model_validate({"health_thresholds": {"svc": {"status": "unhealthy",
                                                                               "consecutive_failures": 3}}})
    newest_first = [r.sample() for r in reversed(readings)]
    assert evaluate_failover_criteria(criteria, {"svc": newest_first}).met
    assert not evaluate_failover_criteria(criteria, {"svc": newest_first[1:]}).met
