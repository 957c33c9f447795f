"""Pure decisions on cluster snapshots: roles, split brain, failover and switchover candidates."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from disaster_recovery.clusters.state import ClusterSnapshot, FenceMarker, MemberState, StandbyLink, unreachable
from disaster_recovery.clusters.topology import (
    choose_failover_candidate,
    choose_switchover_candidate,
    decide_topology,
)

ADDR = {"a": "127.0.0.1:5001", "b": "127.0.0.1:5002", "c": "127.0.0.1:5003"}


def primary(name: str, *, timeline: int = 1, lsn: str = "0/5000000", streaming=(), read_only=False) -> MemberState:
    links = tuple(StandbyLink(application_name=s, state="streaming", sync_state="async", replay_lsn=lsn,
                              flush_lsn=lsn) for s in streaming)
    return MemberState(member=name, conn_id=name, reachable=True, in_recovery=False, read_only=read_only,
                       timeline=timeline, current_lsn=lsn, standbys=links)


def standby(name: str, *, timeline: int = 1, receive: str = "0/5000000", replay: str | None = None,
            sender: str | None = None, fenced: bool = False, receiver: str | None = "streaming") -> MemberState:
    fence = FenceMarker(fenced_at=datetime(2026, 1, 1, tzinfo=UTC), cluster="x", member=name, reason="failover",
                        new_primary="b") if fenced else None
    return MemberState(member=name, conn_id=name, reachable=True, in_recovery=True, read_only=False,
                       timeline=timeline, receive_lsn=receive, replay_lsn=replay or receive,
                       receiver_status=receiver, sender=sender, fence=fence)


def snap(*members: MemberState) -> ClusterSnapshot:
    return ClusterSnapshot(cluster="x", members=members, addresses=ADDR)


def test_one_primary_streaming_to_its_standby():
    topology = decide_topology(snap(primary("a", streaming=("b",)), standby("b", sender=ADDR["a"])))
    assert topology.primary == "a" and topology.streaming == ("b",) and topology.healthy
    assert topology.sentence == "a is the primary of x (timeline 1); streaming to b."


def test_a_standby_made_elsewhere_is_recognised_by_the_address_it_streams_from():
    topology = decide_topology(snap(primary("a", streaming=("pg_standby_dir",)), standby("b", sender=ADDR["a"])))
    assert topology.streaming == ("b",)


def test_two_writable_primaries_are_split_brain_and_nothing_is_chosen():
    s = snap(primary("a", timeline=1), primary("b", timeline=2))
    topology = decide_topology(s)
    assert topology.primary is None and topology.split_brain == ("b", "a") and not topology.healthy
    assert topology.sentence.startswith("SPLIT BRAIN in cluster x: 2 members accept writes (b on timeline 2")
    decision = choose_failover_candidate(s, priorities={})
    assert not decision.proceed and decision.reason == "split_brain"


def test_a_read_only_old_primary_is_fenced_not_a_primary():
    topology = decide_topology(snap(primary("a", read_only=True), primary("b", timeline=2)))
    assert topology.primary == "b" and "a" in topology.fenced and not topology.split_brain


def test_no_primary_says_why():
    s = snap(unreachable(member="a", conn_id="a", error="connection refused"), standby("b", receiver=None))
    topology = decide_topology(s)
    assert topology.primary is None
    assert "unreachable: a (connection refused)" in topology.sentence and "in recovery: b" in topology.sentence


def test_failover_candidate_is_the_most_advanced_unfenced_standby_on_the_newest_timeline():
    s = snap(
        unreachable(member="a", conn_id="a", error="refused"),
        standby("b", receive="0/5000100", sender=None, receiver=None),
        standby("c", receive="0/5000200", sender=None, receiver=None),
    )
    decision = choose_failover_candidate(s, priorities={})
    assert decision.candidate == "c" and decision.old_primary == "a"
    assert decision.sentence.startswith("Promote c (timeline 1, received 0/5000200")
    assert "Other candidates: b at 0/5000100" in decision.sentence


def test_priority_breaks_ties_and_zero_never_promotes():
    s = snap(unreachable(member="a", conn_id="a", error="refused"),
             standby("b", receiver=None), standby("c", receiver=None))
    assert choose_failover_candidate(s, priorities={"b": 50, "c": 200}).candidate == "c"
    assert choose_failover_candidate(s, priorities={"c": 0}).candidate == "b"


def test_a_fenced_member_and_an_older_timeline_are_never_candidates():
    # b was fenced by an earlier failover (its marker), c lags on an older timeline than d.
    s = snap(unreachable(member="a", conn_id="a", error="refused"),
             standby("b", fenced=True, receive="0/9000000", receiver=None),
             standby("c", timeline=1, receive="0/9000000", receiver=None),
             standby("d", timeline=2, receive="0/6000000", receiver=None))
    decision = choose_failover_candidate(s, priorities={})
    assert decision.candidate == "d"
    assert "b is fenced" in decision.sentence and "On an older timeline: c" in decision.sentence


def test_no_healthy_standby_is_a_refusal_with_every_reason():
    s = snap(unreachable(member="a", conn_id="a", error="refused"), standby("b", fenced=True, receiver=None))
    decision = choose_failover_candidate(s, priorities={})
    assert not decision.proceed and decision.reason == "no_standby"
    assert decision.sentence.startswith("No healthy standby to promote in cluster x: b is fenced")


def test_a_live_primary_is_only_replaced_when_allowed():
    s = snap(primary("a", streaming=("b",)), standby("b", sender=ADDR["a"]))
    refused = choose_failover_candidate(s, priorities={}, allow_primary_alive=False)
    assert refused.reason == "primary_alive" and "Use a switchover" in refused.sentence
    allowed = choose_failover_candidate(s, priorities={}, allow_primary_alive=True)
    assert (allowed.candidate, allowed.old_primary) == ("b", "a")


def test_switchover_candidate_must_stream_from_the_primary():
    s = snap(primary("a", streaming=("b",)), standby("b", sender=ADDR["a"]), standby("c", receiver=None))
    assert choose_switchover_candidate(s, wanted=None).candidate == "b"
    not_streaming = choose_switchover_candidate(s, wanted="c")
    assert not not_streaming.proceed and "does not stream from a" in not_streaming.sentence
    assert choose_switchover_candidate(s, wanted="a").reason == "already_primary"
    no_primary = choose_switchover_candidate(snap(standby("b")), wanted="b")
    assert no_primary.reason == "no_primary" and "Use a failover instead" in no_primary.sentence


@pytest.mark.parametrize("members", [(), (standby("b"),)])
def test_decisions_never_raise_on_thin_snapshots(members):
    s = snap(*members)
    assert decide_topology(s).sentence
    assert choose_failover_candidate(s, priorities={}).sentence


def test_a_diverged_member_that_keeps_reconnecting_is_not_streaming():
    """It streams the old timeline for an instant, over and over (its WAL goes past the fork point)."""
    s = snap(primary("a", timeline=38, streaming=("b",)), standby("b", timeline=37, sender=ADDR["a"]))
    topology = decide_topology(s)
    assert topology.streaming == () and "not streaming from it: b (timeline 37" in topology.sentence
    decision = choose_switchover_candidate(s, wanted="b")
    assert not decision.proceed and "does not stream from a" in decision.sentence
