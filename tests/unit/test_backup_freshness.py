"""A source whose newest verified backup is older than its max_age raises an alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from disaster_recovery.backups.freshness import FreshnessAlert, SourceFreshness, check_freshness, freshness_alerts

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
LIMIT = timedelta(hours=26)


def test_a_fresh_source_raises_nothing():
    assert check_freshness(SourceFreshness("wedsync", NOW - timedelta(hours=4), LIMIT), NOW) is None


def test_exactly_at_the_limit_is_still_fresh():
    assert check_freshness(SourceFreshness("wedsync", NOW - LIMIT, LIMIT), NOW) is None


def test_a_stale_source_raises_an_alert():
    newest = NOW - timedelta(days=1, hours=4, minutes=30, seconds=0.5)
    alert = check_freshness(SourceFreshness("wedsync", newest, LIMIT), NOW)
    assert alert == FreshnessAlert(
        source="wedsync",
        newest_verified_at=newest,
        age=timedelta(days=1, hours=4, minutes=30, seconds=0.5),
        max_age=LIMIT,
        sentence=(
            "wedsync: the newest verified backup (2026-11-19T01:29:59Z) is 1d4h30m old, "
            "older than the freshness limit 1d2h"
        ),
    )


def test_a_source_without_any_verified_backup_raises_an_alert():
    alert = check_freshness(SourceFreshness("new_source", None, timedelta(days=8)), NOW)
    assert alert is not None
    assert (alert.newest_verified_at, alert.age) == (None, None)
    assert alert.sentence == "new_source has no verified backup (freshness limit 8d)"


def test_alerts_for_several_sources_in_name_order():
    states = [
        SourceFreshness("zeta", NOW - timedelta(days=3), LIMIT),
        SourceFreshness("wedsync", NOW - timedelta(hours=1), LIMIT),
        SourceFreshness("alpha", None, LIMIT),
        SourceFreshness("wedsync_logical", NOW - timedelta(days=7), timedelta(days=8)),
    ]
    alerts = freshness_alerts(states, NOW)
    assert [a.source for a in alerts] == ["alpha", "zeta"]
    assert alerts[1].age == timedelta(days=3)


def test_other_time_zones_compare_as_instants():
    newest = datetime(2026, 11, 19, 9, 0, tzinfo=timezone(timedelta(hours=5)))  # 04:00 UTC, 26h before NOW
    assert check_freshness(SourceFreshness("wedsync", newest, LIMIT), NOW) is None
    alert = check_freshness(SourceFreshness("wedsync", newest, LIMIT), NOW + timedelta(seconds=1))
    assert alert is not None and "(2026-11-19T04:00:00Z)" in alert.sentence


def test_a_backup_from_the_future_is_fresh():
    assert freshness_alerts([SourceFreshness("wedsync", NOW + timedelta(hours=1), LIMIT)], NOW) == []


def test_times_need_a_time_zone():
    with pytest.raises(ValueError, match="now has no time zone"):
        freshness_alerts([SourceFreshness("wedsync", NOW, LIMIT)], datetime(2026, 11, 20))
    with pytest.raises(ValueError, match="newest verified backup time of 'wedsync' has no time zone"):
        check_freshness(SourceFreshness("wedsync", datetime(2026, 11, 20), LIMIT), NOW)
