"""Retention keeps exactly the expected backups, never the newest verified one, and the WAL they need."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from disaster_recovery.backups.retention import (
    BackupInfo,
    BackupStatus,
    RetentionPolicy,
    decide_retention,
    oldest_needed_wal,
    wal_files_to_delete,
    wal_segment_of,
)

START = date(2025, 10, 1)
USABLE = ("verified", "pending")


def at(day: date, hour: int = 2) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def backup_id(day: date, source: str = "wedsync") -> str:
    return f"{source}-{day.isoformat()}"


def history_status(index: int, days: int) -> str:
    """A mix: some failed, corrupted, stuck pending and already expired; the two newest pending."""
    if index >= days - 2:
        return "pending"
    if index % 37 == 5:
        return "failed"
    if index % 53 == 20:
        return "corrupted"
    if index % 61 == 7:
        return "pending"
    if index % 97 == 50:
        return "expired"
    return "verified"


def daily_history(days: int, status=history_status, source: str = "wedsync") -> list[BackupInfo]:
    return [
        BackupInfo(backup_id(day, source), at(day), status(i, days), source)
        for i in range(days)
        for day in [START + timedelta(days=i)]
    ]


def by_day(backups: list[BackupInfo]) -> dict[date, str]:
    return {b.created_at.date(): b.status.value for b in backups}


# --- the 400-day history ------------------------------------------------------------------------------

POLICY = RetentionPolicy(keep_last=7, keep_daily=14, keep_weekly=8, keep_monthly=12)


def expected_days(statuses: dict[date, str], *, last: int, daily: int, weekly: int, monthly: int) -> set[date]:
    """The same rules, by plain date arithmetic (one backup per day): Mondays and first-of-months."""
    usable = sorted(d for d, s in statuses.items() if s in USABLE)
    keep = set(usable[-last:]) | set(usable[-daily:])
    mondays = sorted({d - timedelta(days=d.weekday()) for d in usable})[-weekly:]
    keep |= {max(d for d in usable if d - timedelta(days=d.weekday()) == monday) for monday in mondays}
    firsts = sorted({d.replace(day=1) for d in usable})[-monthly:]
    keep |= {max(d for d in usable if d.replace(day=1) == first) for first in firsts}
    keep.add(max(d for d, s in statuses.items() if s == "verified"))
    return keep


def test_400_daily_backups_keep_exactly_the_expected_set():
    backups = daily_history(400)
    statuses = by_day(backups)
    now = at(START + timedelta(days=399), hour=3)
    decision = decide_retention(backups, policy=POLICY, now=now)

    expected = {backup_id(d) for d in expected_days(statuses, last=7, daily=14, weekly=8, monthly=12)}
    assert set(decision.keep) == expected
    assert len(decision.keep) == 29
    assert len(decision.expire) == 400 - 29
    assert set(decision.keep) | set(decision.expire) == {b.backup_id for b in backups}
    assert not set(decision.keep) & set(decision.expire)
    # newest first, and every id has a reason
    assert list(decision.keep) == sorted(decision.keep, reverse=True)
    assert set(decision.reasons) == {b.backup_id for b in backups}


def test_400_daily_backups_reasons():
    backups = daily_history(400)
    statuses = by_day(backups)
    decision = decide_retention(backups, policy=POLICY, now=at(START + timedelta(days=400)))
    newest = START + timedelta(days=399)
    assert decision.reasons[backup_id(newest)] == (
        f"keep_last 1/7; keep_daily {newest}; keep_weekly 2026-W45; keep_monthly 2026-11"
    )
    newest_verified = max(d for d, s in statuses.items() if s == "verified")
    assert decision.reasons[backup_id(newest_verified)].endswith("newest verified")
    # the last usable day of the 12th newest month is kept for keep_monthly only
    assert decision.reasons[backup_id(date(2025, 12, 31))] == "keep_monthly 2025-12"
    assert backup_id(date(2025, 11, 30)) in decision.expire
    for day, status in statuses.items():
        reason = decision.reasons[backup_id(day)]
        if status in ("failed", "corrupted"):
            assert reason == f"{status}: not restorable"
        elif status == "expired":
            assert reason == "already expired"
    assert "wedsync: keep 29 of 400 backup(s) and expire 371 (18 failed or corrupted)" in decision.sentence
    assert "under keep_last 7, keep_daily 14, keep_weekly 8, keep_monthly 12" in decision.sentence


def test_unrestorable_backups_always_expire_even_when_newest():
    backups = daily_history(400)
    failed = [b.backup_id for b in backups if b.status in (BackupStatus.FAILED, BackupStatus.CORRUPTED)]
    decision = decide_retention(backups, policy=RetentionPolicy(keep_last=400), now=at(date(2027, 1, 1)))
    assert set(failed) <= set(decision.expire)
    assert len(decision.keep) == sum(1 for b in backups if b.status.value in USABLE)


@pytest.mark.parametrize(
    "policy",
    [
        RetentionPolicy(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0),
        RetentionPolicy(keep_last=0),
        RetentionPolicy(recovery_window="1s"),
    ],
)
def test_newest_verified_is_kept_whatever_the_policy(policy):
    backups = daily_history(400)
    newest_verified = max(b.created_at.date() for b in backups if b.status is BackupStatus.VERIFIED)
    decision = decide_retention(backups, policy=policy, now=at(date(2030, 1, 1)))
    assert decision.keep == (backup_id(newest_verified),)
    assert decision.reasons[backup_id(newest_verified)].endswith("newest verified")


def test_newest_verified_is_kept_when_the_newest_backups_all_failed():
    def status(index: int, days: int) -> str:
        return "failed" if index >= days - 5 else ("pending" if index >= days - 8 else "verified")

    backups = daily_history(30, status)
    decision = decide_retention(backups, policy=RetentionPolicy(keep_last=3), now=at(START + timedelta(days=31)))
    days = [START + timedelta(days=i) for i in range(30)]
    # keep_last skips the five failed ones and keeps three pending; the verified day 21 is kept too
    assert decision.keep == tuple(backup_id(d) for d in (days[24], days[23], days[22], days[21]))
    assert decision.reasons[backup_id(days[21])] == "newest verified"
    assert all(decision.reasons[backup_id(d)] == "failed: not restorable" for d in days[25:])


def test_all_zero_policy_without_any_verified_backup_keeps_nothing():
    backups = daily_history(10, lambda i, n: "pending" if i % 2 else "failed")
    policy = RetentionPolicy(keep_last=0, keep_daily=0)
    decision = decide_retention(backups, policy=policy, now=at(date(2026, 1, 1)))
    assert decision.keep == ()
    assert "no verified backup yet" in decision.sentence
    assert decision.reasons[backup_id(START + timedelta(days=1))] == "not kept by keep_last 0, keep_daily 0"


def test_each_source_keeps_its_own_newest_verified():
    backups = daily_history(20, source="a") + daily_history(5, lambda i, n: "verified", source="b")
    policy = RetentionPolicy(keep_last=0)
    decision = decide_retention(backups, policy=policy, now=at(date(2026, 1, 1)))
    a_newest = max(b.created_at.date() for b in backups if b.source == "a" and b.status is BackupStatus.VERIFIED)
    assert set(decision.keep) == {backup_id(a_newest, "a"), backup_id(START + timedelta(days=4), "b")}
    assert decision.sentence.startswith("a: keep 1 of 20")
    assert " b: keep 1 of 5 " in decision.sentence


def test_weeks_and_months_across_a_year_boundary():
    days = [date(2026, 12, 28), date(2026, 12, 31), date(2027, 1, 1), date(2027, 1, 4), date(2027, 1, 5)]
    backups = [BackupInfo(backup_id(d), at(d), "verified", "wedsync") for d in days]
    decision = decide_retention(backups, policy=RetentionPolicy(keep_weekly=2), now=at(date(2027, 1, 6)))
    # 2027-01-01 is in ISO week 2026-W53, like 2026-12-28 and 2026-12-31
    assert decision.keep == (backup_id(days[4]), backup_id(days[2]))
    assert decision.reasons[backup_id(days[2])] == "keep_weekly 2026-W53"
    decision = decide_retention(backups, policy=RetentionPolicy(keep_monthly=2), now=at(date(2027, 1, 6)))
    assert decision.keep == (backup_id(days[4]), backup_id(days[1]))
    assert decision.reasons[backup_id(days[1])] == "keep_monthly 2026-12"


def test_several_backups_a_day_keep_the_newest_of_the_day():
    day = date(2026, 3, 3)
    backups = [BackupInfo(f"b{h}", at(day, h), "verified", "s") for h in (1, 5, 9)]
    decision = decide_retention(backups, policy=RetentionPolicy(keep_daily=5), now=at(day, 23))
    assert decision.keep == ("b9",)


# --- recovery window ------------------------------------------------------------------------------------


def test_recovery_window_keeps_the_window_and_the_newest_verified_before_it():
    def status(index: int, days: int) -> str:
        return {22: "pending", 25: "failed"}.get(index, "verified")

    backups = daily_history(30, status)
    days = [START + timedelta(days=i) for i in range(30)]
    now = at(days[29], hour=12)  # window start: day 22 at 12:00
    decision = decide_retention(backups, policy=RetentionPolicy(recovery_window="7d"), now=now)
    inside = [days[i] for i in (29, 28, 27, 26, 24, 23)]
    assert decision.keep == (*(backup_id(d) for d in inside), backup_id(days[21]))
    # day 22 (02:00) is before the window start and only pending: the verified day 21 anchors the window
    assert backup_id(days[22]) in decision.expire
    assert decision.reasons[backup_id(days[21])] == "recovery_window start (newest before 2025-10-23T12:00:00Z)"
    assert decision.reasons[backup_id(days[26])] == "recovery_window (since 2025-10-23T12:00:00Z)"
    assert decision.reasons[backup_id(days[25])] == "failed: not restorable"


def test_recovery_window_anchor_falls_back_to_a_pending_backup():
    backups = daily_history(10, lambda i, n: "pending")
    decision = decide_retention(backups, policy=RetentionPolicy(recovery_window="1d"), now=at(date(2026, 1, 1)))
    assert decision.keep == (backup_id(START + timedelta(days=9)),)


def test_recovery_window_combines_with_counts():
    backups = daily_history(30, lambda i, n: "verified")
    days = [START + timedelta(days=i) for i in range(30)]
    policy = RetentionPolicy(recovery_window="2d", keep_monthly=2)
    decision = decide_retention(backups, policy=policy, now=at(days[29], hour=12))
    # window: days 28 and 29; its start: day 27; keep_monthly: only October exists, its newest is day 29
    assert decision.keep == tuple(backup_id(days[i]) for i in (29, 28, 27))


# --- inputs ---------------------------------------------------------------------------------------------


def test_times_need_a_time_zone():
    with pytest.raises(ValueError, match="created_at of backup 'x' has no time zone"):
        BackupInfo("x", datetime(2026, 1, 1), "verified", "s")
    with pytest.raises(ValueError, match="now has no time zone"):
        decide_retention([], policy=POLICY, now=datetime(2026, 1, 1))


def test_backup_info_normalises_status_and_time_zone():
    plus_two = datetime(2026, 1, 1, 3, tzinfo=timezone(timedelta(hours=2)))
    info = BackupInfo("x", plus_two, "pending", "s")
    assert info.status is BackupStatus.PENDING
    assert info.created_at == datetime(2026, 1, 1, 1, tzinfo=UTC)
    assert info.created_at.tzinfo is UTC
    with pytest.raises(ValueError):
        BackupInfo("x", plus_two, "lost", "s")


def test_empty_input():
    decision = decide_retention([], policy=POLICY, now=at(START))
    assert (decision.keep, decision.expire, decision.reasons) == ((), (), {})


def test_policy_needs_a_rule_and_non_negative_counts():
    with pytest.raises(ValidationError, match="give at least one retention rule"):
        RetentionPolicy()
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        RetentionPolicy(keep_last=-1)
    with pytest.raises(ValidationError, match="valid integer"):
        RetentionPolicy(keep_last=True)
    policy = RetentionPolicy(keep_last=3, recovery_window="14d")
    assert policy.recovery_window == timedelta(days=14)
    assert policy.document() == {"keep_last": 3, "recovery_window": "14d"}
    assert policy.describe() == "keep_last 3, recovery_window 14d"


# --- WAL ------------------------------------------------------------------------------------------------

LISTING = [
    "000000010000000000000001",
    "00000001000000000000000F",
    "000000010000000000000005.partial",
    "000000010000000000000004.zst",
    "wal/000000010000000000000002",
    "00000001000000000000000C.00000028.backup",
    "000000010000000000000010",
    "000000010000000000000010.00000060.backup",
    "000000010000000100000000",
    "00000002.history",
    "00000002.history.zst",
    "000000020000000100000003",
    "README",
    "000000010000000000000003.tmp-half-written",
    "000000010000000000000001/",
]


def test_wal_older_than_the_oldest_kept_backup_is_deleted():
    kept = ["000000020000000100000005", "000000010000000000000010"]
    assert oldest_needed_wal(kept) == "000000010000000000000010"
    expected = {
        "000000010000000000000001",
        "00000001000000000000000F",
        "000000010000000000000005.partial",
        "000000010000000000000004.zst",
        "wal/000000010000000000000002",
        "00000001000000000000000C.00000028.backup",
        "000000010000000000000003.tmp-half-written",
    }
    assert wal_files_to_delete(LISTING, kept) == tuple(sorted(expected))


def test_wal_of_older_timelines_is_older_and_newer_timelines_stay():
    listing = [
        "000000010000000000000030",  # timeline 1, after the oldest kept start's segment: still older
        "00000001000000000000001F",
        "00000002000000000000001F",
        "000000020000000000000020",
        "000000030000000000000008",  # a newer timeline branched earlier: kept (never guess)
        "00000001.history",
        "00000003.history",
    ]
    assert wal_files_to_delete(listing, ["000000020000000000000020", "000000030000000000000040"]) == (
        "00000001000000000000001F",
        "000000010000000000000030",
        "00000002000000000000001F",
    )


def test_wal_cleanup_needs_kept_backups_and_valid_names():
    assert wal_files_to_delete(LISTING, []) == ()
    assert oldest_needed_wal([]) is None
    with pytest.raises(ValueError, match="not a WAL segment name"):
        wal_files_to_delete(LISTING, ["00000002.history"])
    assert wal_segment_of("a/b/000000010000000A000000FF.partial.zst") == "000000010000000A000000FF"
    assert wal_segment_of("00000002.history") is None
    assert wal_segment_of("000000010000000000000001x") is None
