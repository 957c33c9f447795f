"""From one probe observation and the service's recent history to a health reading (and its catalog row).

Pure: ``evaluate(service, observation, history)`` reads the history and changes nothing; the caller
keeps the history up to date with ``history.add(reading)`` (or uses ``history.observe``, which does
both). The rules:

- a failed probe is unhealthy once ``failures_to_unhealthy`` probes failed in a row, degraded before;
- a probe that could not run (``ok`` None: its connection is not defined, its cluster unknown) is
  ``unknown``, and neither counts as a failure nor breaks a run of them;
- a successful probe is healthy unless a threshold says otherwise: response time, replication lag, the
  primary's WAL archiving, a response time anomalous against the service's own baseline (degraded);
- ``error_rate``: the percentage of failed probes among the window's probes (by count);
- ``availability_percent``: the share of the window's *time* during which the service was not unhealthy,
  each reading standing for the time since the one before (at most interval + timeout), so the fast
  re-probes of an outage do not weigh more than the calm probes around it;
- alert level ``critical`` after ``alert_after`` unhealthy readings in a row, ``warning`` for any other
  reading that is not healthy or carries an alert, else ``none``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal

from disaster_recovery.health.anomaly import response_time_anomaly
from disaster_recovery.health.criteria import SEVERITY, AlertLevel, HealthMetrics, HealthSample
from disaster_recovery.health.services import ByteLimits, Limits, PostgresProbe, Service

Status = Literal["healthy", "degraded", "unhealthy", "unknown"]
ProbeKind = Literal["postgres", "http", "tcp"]


@dataclass(frozen=True, kw_only=True)
class ProbeObservation:
    """What one probe saw. ``ok`` False: the target failed (that is an observation, not an error);
    None: the probe could not run at all. Facts a probe kind does not have stay None."""

    at: datetime
    kind: ProbeKind
    ok: bool | None
    error: str | None = None
    response_ms: float | None = None
    target: str | None = None  # host:port or URL, never credentials
    network_latency_ms: float | None = None  # tcp: the connect time
    # postgres
    member: str | None = None
    role: str | None = None  # what the member is: primary or standby
    timeline: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    replay_paused: bool | None = None
    standbys_streaming: int | None = None  # role primary: how many standbys stream from it
    archive_mode: str | None = None
    archiver_failing: bool | None = None
    last_failed_wal: str | None = None
    topology: str | None = None
    connections: int | None = None  # client backends on the member
    state_error: str | None = None  # the query ran but the replication state could not be read


@dataclass(frozen=True, kw_only=True)
class PastReading:
    at: datetime
    ok: bool | None
    status: Status
    response_ms: float | None


@dataclass(frozen=True, kw_only=True)
class HealthRow:
    """The values of one system_health_monitoring row (column names as in the spec)."""

    monitoring_timestamp: datetime
    service_name: str
    health_status: Status
    response_time_ms: int | None
    error_rate: float | None
    network_latency_ms: int | None
    active_connections: int | None
    custom_metrics: dict[str, Any]
    alerts_triggered: tuple[str, ...]
    anomalies_detected: dict[str, Any]

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, kw_only=True)
class HealthReading:
    service_name: str
    observation: ProbeObservation
    status: Status
    consecutive_failures: int
    consecutive_unhealthy: int
    error_rate: float | None
    availability_percent: float | None
    window_probes: int
    anomalies: dict[str, Any]
    alerts: tuple[str, ...]
    alert_level: AlertLevel
    sentence: str
    next_delay: timedelta  # when the service should be probed again

    @property
    def at(self) -> datetime:
        return self.observation.at

    @property
    def health_status(self) -> Status:
        """``status``, by its column name."""
        return self.status

    def metrics(self) -> HealthMetrics:
        o = self.observation
        return HealthMetrics(
            probe=o.kind, ok=o.ok, availability_percent=self.availability_percent,
            consecutive_failures=self.consecutive_failures, consecutive_unhealthy=self.consecutive_unhealthy,
            alert_level=self.alert_level, window_probes=self.window_probes, error=o.error or o.state_error,
            target=o.target, member=o.member, role=o.role, timeline=o.timeline, lag_bytes=o.lag_bytes,
            lag_seconds=o.lag_seconds, replay_paused=o.replay_paused, standbys_streaming=o.standbys_streaming,
            archive_mode=o.archive_mode, archiver_failing=o.archiver_failing, last_failed_wal=o.last_failed_wal,
            topology=o.topology,
        )

    def row(self) -> HealthRow:
        o = self.observation
        return HealthRow(
            monitoring_timestamp=o.at,
            service_name=self.service_name,
            health_status=self.status,
            response_time_ms=_ms(o.response_ms),
            error_rate=self.error_rate,
            network_latency_ms=_ms(o.network_latency_ms),
            active_connections=o.connections,
            custom_metrics=self.metrics().model_dump(mode="json", exclude_none=True),
            alerts_triggered=self.alerts,
            anomalies_detected=dict(self.anomalies),
        )

    def sample(self) -> HealthSample:
        """The reading as the failover criteria see it (what the catalog gives back for its row)."""
        return HealthSample(
            service_name=self.service_name, health_status=self.status, at=self.at,
            response_time_ms=_ms(self.observation.response_ms), error_rate=self.error_rate, ok=self.observation.ok,
            consecutive_failures=self.consecutive_failures, consecutive_unhealthy=self.consecutive_unhealthy,
            alert_level=self.alert_level, availability_percent=self.availability_percent,
        )


def _ms(value: float | None) -> int | None:
    return None if value is None else int(round(value))


class ServiceHistory:
    """The recent readings of one service (a bounded deque, oldest first) and its current runs."""

    def __init__(self, service: Service | int, readings: Iterable[PastReading] = (), *,
                 consecutive_failures: int = 0, consecutive_unhealthy: int = 0) -> None:
        window = service if isinstance(service, int) else service.window
        self.readings: deque[PastReading] = deque(readings, maxlen=window)
        self.consecutive_failures = consecutive_failures
        self.consecutive_unhealthy = consecutive_unhealthy

    @classmethod
    def from_samples(cls, service: Service | int, samples: Sequence[HealthSample]) -> ServiceHistory:
        """Warm up from catalog samples, newest first (``Catalog.recent_health``)."""
        window = service if isinstance(service, int) else service.window
        recent = list(samples[:window])
        readings = [PastReading(at=s.at, ok=_sample_ok(s), status=_status(s.health_status),
                                response_ms=s.response_time_ms) for s in reversed(recent)]
        newest = recent[0] if recent else None
        failures = newest.consecutive_failures if newest and newest.consecutive_failures is not None else _run(
            recent, lambda s: _sample_ok(s) is False, skip=lambda s: _sample_ok(s) is None)
        unhealthy = newest.consecutive_unhealthy if newest and newest.consecutive_unhealthy is not None else _run(
            recent, lambda s: s.health_status == "unhealthy", skip=lambda s: s.health_status == "unknown")
        return cls(window, readings, consecutive_failures=failures, consecutive_unhealthy=unhealthy)

    @property
    def window(self) -> int:
        return self.readings.maxlen or 0

    def add(self, reading: HealthReading) -> None:
        """Remember a reading (after ``evaluate``)."""
        self.readings.append(PastReading(at=reading.at, ok=reading.observation.ok, status=reading.status,
                                         response_ms=reading.observation.response_ms))
        self.consecutive_failures = reading.consecutive_failures
        self.consecutive_unhealthy = reading.consecutive_unhealthy

    def observe(self, service: Service, observation: ProbeObservation) -> HealthReading:
        """Evaluate the observation against this history, then record it."""
        reading = evaluate(service, observation, self)
        self.add(reading)
        return reading

    def successful_response_times(self) -> list[float]:
        return [r.response_ms for r in self.readings if r.ok and r.response_ms is not None]


def _status(text: str) -> Status:
    return text if text in SEVERITY else "unknown"  # type: ignore[return-value]


def _sample_ok(sample: HealthSample) -> bool | None:
    if sample.ok is not None:
        return sample.ok
    return None if sample.health_status not in ("healthy", "degraded", "unhealthy") else (
        sample.health_status != "unhealthy")


def _run(newest_first: Sequence[HealthSample], hit, *, skip) -> int:
    count = 0
    for sample in newest_first:
        if skip(sample):
            continue
        if not hit(sample):
            break
        count += 1
    return count


@dataclass(frozen=True)
class _Finding:
    status: Status
    alert: str


@dataclass
class _Findings:
    items: list[_Finding] = field(default_factory=list)

    def add(self, status: Status, alert: str) -> None:
        self.items.append(_Finding(status, alert))

    def limits(self, what: str, value: float | None, limits: Limits | ByteLimits | None, unit: str) -> None:
        if value is None or limits is None:
            return
        if limits.unhealthy is not None and value > limits.unhealthy:
            self.add("unhealthy", f"{what} {_num(value)}{unit} is above the unhealthy limit {_num(limits.unhealthy)}{unit}")
        elif limits.degraded is not None and value > limits.degraded:
            self.add("degraded", f"{what} {_num(value)}{unit} is above the degraded limit {_num(limits.degraded)}{unit}")

    @property
    def status(self) -> Status:
        return max((f.status for f in self.items), key=lambda s: SEVERITY[s], default="healthy")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}".rstrip("0")


def _postgres_findings(probe: PostgresProbe, o: ProbeObservation, found: _Findings) -> None:
    if o.state_error and probe.needs_state:
        found.add("degraded", f"cannot read the replication state: {o.state_error}")
    lag_limits = probe.replication_lag_bytes or probe.replication_lag_seconds
    if lag_limits and o.role == "primary" and o.standbys_streaming == 0:
        found.add("degraded", f"no standby streams from {o.member or 'the primary'}: it has no replica")
    found.limits("replication lag", o.lag_bytes, probe.replication_lag_bytes, " bytes")
    found.limits("replication lag", o.lag_seconds, probe.replication_lag_seconds, " s")
    if probe.wal_archiving and not o.state_error:
        where = o.member if o.role == "primary" and o.member else "the primary"
        if o.archive_mode is None:  # a standby's probe while no primary answers: that probe says so
            if o.role == "primary":
                found.add("degraded", f"cannot check WAL archiving on {where}: its archiver state is unknown")
        elif o.archive_mode == "off":
            found.add("degraded", f"WAL archiving is off on {where} (archive_mode off)")
        elif o.archiver_failing:
            found.add("degraded", f"WAL archiving is failing on {where} (last failed: {o.last_failed_wal or 'unknown'})")


def _window_stats(service: Service, history: ServiceHistory, current: PastReading) -> tuple[float | None, float | None, int]:
    """(error rate %, availability %, probes) over the window including the current reading."""
    readings = [*list(history.readings)[-(service.window - 1):], current] if service.window > 1 else [current]
    attempted = [r for r in readings if r.ok is not None]
    if not attempted:
        return None, None, len(readings)
    error_rate = round(100.0 * sum(1 for r in attempted if r.ok is False) / len(attempted), 2)
    cap = (service.interval + service.timeout).total_seconds()
    up = total = 0.0
    previous: datetime | None = None
    for r in readings:
        weight = service.interval.total_seconds() if previous is None else (r.at - previous).total_seconds()
        previous = r.at
        if r.ok is None:
            continue
        weight = min(max(weight, 0.0), cap)
        total += weight
        up += weight if r.status != "unhealthy" else 0.0
    if total <= 0:
        up, total = float(sum(1 for r in attempted if r.status != "unhealthy")), float(len(attempted))
    return error_rate, round(100.0 * up / total, 2), len(readings)


def evaluate(service: Service, observation: ProbeObservation, history: ServiceHistory) -> HealthReading:
    """The health reading of one observation, judged against the service's history (not changed)."""
    o = observation
    found = _Findings()
    anomalies: dict[str, Any] = {}
    failures, unhealthy_run = history.consecutive_failures, history.consecutive_unhealthy
    if o.ok is None:
        status: Status = "unknown"
        found.add("unknown", f"the probe could not run: {o.error or 'no reason given'}")
    elif o.ok is False:
        failures += 1
        status = "unhealthy" if failures >= service.failures_to_unhealthy else "degraded"
        found.add(status, f"probe failed: {o.error or 'no reason given'}")
    else:
        failures = 0
        found.limits("response time", o.response_ms, service.response_time_ms, " ms")
        if service.anomaly.enabled:
            a = service.anomaly
            verdict = response_time_anomaly(o.response_ms, history.successful_response_times()[-service.window:],
                                            factor=a.factor, min_samples=a.min_samples, min_delta_ms=a.min_delta_ms)
            if verdict.anomalous:
                anomalies["response_time_ms"] = verdict.as_dict()
                found.add("degraded", f"anomalous {verdict.sentence}")
        if isinstance(service.probe, PostgresProbe):
            _postgres_findings(service.probe, o, found)
        status = found.status
    if status == "unhealthy":
        unhealthy_run += 1
    elif status != "unknown":
        unhealthy_run = 0
    current = PastReading(at=o.at, ok=o.ok, status=status, response_ms=o.response_ms)
    error_rate, availability, probes = _window_stats(service, history, current)
    alerts = [f.alert for f in found.items]
    level: AlertLevel = "none"
    if status == "unhealthy" and unhealthy_run >= service.alert_after:
        level = "critical"
        alerts.append(f"critical: unhealthy in {unhealthy_run} probes in a row")
    elif status != "healthy" or alerts:
        level = "warning"
    return HealthReading(
        service_name=service.name, observation=o, status=status, consecutive_failures=failures,
        consecutive_unhealthy=unhealthy_run, error_rate=error_rate, availability_percent=availability,
        window_probes=probes, anomalies=anomalies, alerts=tuple(alerts), alert_level=level,
        sentence=_sentence(service, o, status, alerts=alerts, availability=availability, probes=probes),
        next_delay=service.next_delay(ok=o.ok, consecutive_unhealthy=unhealthy_run),
    )


def _sentence(service: Service, o: ProbeObservation, status: Status, *, alerts: list[str],
              availability: float | None, probes: int) -> str:
    facts = []
    if o.member:
        facts.append(f"{o.member} ({o.role}, timeline {o.timeline})" if o.role else o.member)
    if o.response_ms is not None and o.ok:
        facts.append(f"{o.response_ms:.1f} ms")
    if o.lag_bytes is not None:
        facts.append(f"lag {o.lag_bytes} bytes" + (f" / {o.lag_seconds:g} s" if o.lag_seconds else ""))
    head = f"{service.name} is {status}"
    if alerts:
        head += ": " + "; ".join(alerts)
    if facts:
        head += f" [{', '.join(facts)}]"
    tail = f" Availability {availability:g}% over the last {probes} probes." if availability is not None else ""
    return head + "." + tail
