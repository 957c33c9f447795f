"""decide_failover is pure: every decision on a snapshot, each with a sentence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from disaster_recovery.postgres.failover import decide_failover
from disaster_recovery.postgres.replication import ReplicationSnapshot, lsn_to_int

BASE = ReplicationSnapshot(
    taken_at=datetime(2026, 1, 1, tzinfo=UTC),
    in_recovery=True,
    timeline=1,
    receive_lsn="0/3000100",
    replay_lsn="0/3000100",
    replay_paused=False,
    last_replay_at=datetime(2026, 1, 1, tzinfo=UTC),
    lag_seconds=0.0,
    lag_bytes=0,
    lag_basis="primary",
    wal_receiver_status="streaming",
    application_name="standby_1",
    primary_reachable=True,
    primary_error=None,
    primary_in_recovery=False,
    primary_lsn="0/3000100",
    primary_timeline=1,
    replication_state="streaming",
    sync_state="async",
)


def test_lsn_to_int():
    assert lsn_to_int("0/0") == 0
    assert lsn_to_int("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert lsn_to_int(None) is None


def test_caught_up_standby_may_proceed():
    d = decide_failover(BASE, max_lag_bytes=0, max_lag_seconds=5)
    assert d.proceed and d.reason == "ok"
    assert d.sentence.startswith("The standby on timeline 1 is 0 bytes / 0.0 s behind (limits: 0 bytes, 5 s)")


@pytest.mark.parametrize(
    ("changes", "limits", "reason", "words"),
    [
        ({"in_recovery": False}, {}, "not_in_recovery", "already a primary"),
        ({"primary_in_recovery": True}, {}, "primary_in_recovery", "itself in recovery"),
        ({"lag_bytes": 5 * 1024 * 1024, "lag_seconds": 3.0}, {"max_lag_bytes": 1024 * 1024}, "lag_bytes",
         "5.0 MiB (5242880 bytes) behind, above the limit of 1.0 MiB (1048576 bytes)"),
        ({"lag_bytes": 10, "lag_seconds": 42.0}, {"max_lag_seconds": 30}, "lag_seconds",
         "42.0 s old, above the limit of 30 s"),
        ({"lag_bytes": None, "lag_basis": None, "primary_reachable": False, "primary_error": "timeout"},
         {"max_lag_bytes": 0}, "lag_unknown", "cannot be measured (the primary is unreachable (timeout)"),
    ],
)
def test_refusals_say_why(changes, limits, reason, words):
    d = decide_failover(replace(BASE, **changes), **{"max_lag_bytes": None, "max_lag_seconds": None, **limits})
    assert not d.proceed and d.reason == reason
    assert words in d.sentence


def test_unreachable_primary_measures_received_wal():
    snap = replace(BASE, primary_reachable=False, primary_error="connection refused", lag_basis="received",
                   lag_bytes=100, primary_lsn=None, sync_state=None)
    d = decide_failover(snap, max_lag_bytes=1000, max_lag_seconds=None)
    assert d.proceed
    assert "100 bytes / 0.0 s short of the WAL it received" in d.sentence
    assert "unreachable (connection refused)" in d.sentence


def test_no_limits_never_refuse_for_lag():
    snap = replace(BASE, lag_bytes=10**12, lag_seconds=10**6, replay_paused=True)
    d = decide_failover(snap, max_lag_bytes=None, max_lag_seconds=None)
    assert d.proceed and "limits: none" in d.sentence and "Replay is paused" in d.sentence
