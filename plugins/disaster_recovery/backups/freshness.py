"""Stale sources: a source whose newest verified backup is older than its ``max_age``. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from disaster_recovery.plans.language.durations import format_duration


@dataclass(frozen=True)
class SourceFreshness:
    """What freshness needs to know of one source: its newest verified backup time (if any) and limit."""

    source: str
    newest_verified_at: datetime | None
    max_age: timedelta


@dataclass(frozen=True)
class FreshnessAlert:
    """A stale source; ``age`` is None when the source has no verified backup at all."""

    source: str
    newest_verified_at: datetime | None
    age: timedelta | None
    max_age: timedelta
    sentence: str


def _utc(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} has no time zone: {moment.isoformat()}")
    return moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def check_freshness(state: SourceFreshness, now: datetime) -> FreshnessAlert | None:
    """An alert when ``state.source`` has no verified backup or its newest is older than max_age."""
    now = _utc(now, "now")
    limit = format_duration(state.max_age)
    if state.newest_verified_at is None:
        sentence = f"{state.source} has no verified backup (freshness limit {limit})"
        return FreshnessAlert(state.source, None, None, state.max_age, sentence)
    newest = _utc(state.newest_verified_at, f"newest verified backup time of {state.source!r}")
    age = now - newest
    if age <= state.max_age:
        return None
    age_text = format_duration(timedelta(seconds=int(age.total_seconds())))
    sentence = (
        f"{state.source}: the newest verified backup ({_stamp(newest)}) is {age_text} old, "
        f"older than the freshness limit {limit}"
    )
    return FreshnessAlert(state.source, newest, age, state.max_age, sentence)


def freshness_alerts(states: Iterable[SourceFreshness], now: datetime) -> list[FreshnessAlert]:
    """One alert per stale source, in source-name order."""
    alerts = (check_freshness(state, now) for state in sorted(states, key=lambda s: s.source))
    return [alert for alert in alerts if alert is not None]
