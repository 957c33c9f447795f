"""Who is the primary, who streams from whom, who is fenced: pure decisions on one ``ClusterSnapshot``.

Patroni-style: every decision looks only at the immutable snapshot and returns a sentence saying why.

- ``decide_topology``: the writable primary (exactly one, else why not), the standbys and whether they
  stream from it, fenced and unreachable members, and split brain (two writable primaries).
- ``choose_failover_candidate``: the standby to promote when the primary is lost — reachable, in
  recovery, not fenced, on the newest timeline, the most WAL, then the highest priority.
- ``choose_switchover_candidate``: a named (or preferred) standby that streams from the primary.
"""

from __future__ import annotations

from dataclasses import dataclass

from disaster_recovery.clusters.state import ClusterSnapshot, MemberState


@dataclass(frozen=True, kw_only=True)
class Topology:
    cluster: str
    primary: str | None
    standbys: tuple[str, ...]  # reachable, in recovery
    streaming: tuple[str, ...]  # standbys the primary lists as streaming
    fenced: tuple[str, ...]  # members with a fence marker, or read-only non-recovery servers
    unreachable: tuple[str, ...]
    split_brain: tuple[str, ...]  # every writable primary when there is more than one
    sentence: str

    @property
    def healthy(self) -> bool:
        return self.primary is not None and not self.split_brain


def _name(state: MemberState) -> str:
    return state.member


def _streaming_from(primary: MemberState, snapshot: ClusterSnapshot) -> tuple[str, ...]:
    """Standbys streaming from the primary: listed by it under their member name, or (a standby made
    outside our control, under another application_name) whose WAL receiver streams from its address."""
    listed = {link.application_name for link in primary.standbys if link.state == "streaming"}
    address = snapshot.addresses.get(primary.member)
    return tuple(
        m.member for m in snapshot.members
        if m.member != primary.member and m.reachable and m.in_recovery
        and (m.member in listed or (address is not None and m.receiver_status == "streaming" and m.sender == address))
        # A member that diverged (it wrote past the point where the primary's timeline forked off) keeps
        # reconnecting and streams the old timeline for an instant, over and over: it is not a standby.
        and (m.timeline is None or primary.timeline is None or m.timeline == primary.timeline)
    )


def decide_topology(snapshot: ClusterSnapshot) -> Topology:
    """The roles of the snapshot's members, and one sentence."""
    members = snapshot.members
    writable = [m for m in members if m.is_writable_primary]
    read_only_primaries = [m for m in members if m.reachable and m.in_recovery is False and m.read_only]
    standbys = [m for m in members if m.reachable and m.in_recovery]
    unreachable = [m for m in members if not m.reachable]
    fenced = [m for m in members if m.fence is not None or m.fence_problem and m.fence_readable]
    fenced_names = tuple(dict.fromkeys([*(_name(m) for m in fenced), *(_name(m) for m in read_only_primaries)]))

    if len(writable) > 1:
        ranked = sorted(writable, key=lambda m: (m.timeline or 0, m.position), reverse=True)
        names = tuple(_name(m) for m in ranked)
        return Topology(
            cluster=snapshot.cluster, primary=None, standbys=tuple(_name(m) for m in standbys), streaming=(),
            fenced=fenced_names, unreachable=tuple(_name(m) for m in unreachable), split_brain=names,
            sentence=(
                f"SPLIT BRAIN in cluster {snapshot.cluster}: {len(names)} members accept writes ("
                + ", ".join(f"{_name(m)} on timeline {m.timeline}" for m in ranked)
                + "); nothing is promoted or rejoined until one of them is fenced."
            ),
        )
    if writable:
        primary = writable[0]
        streaming = _streaming_from(primary, snapshot)
        parts = [f"{primary.member} is the primary of {snapshot.cluster} (timeline {primary.timeline})"]
        if streaming:
            parts.append(f"streaming to {', '.join(streaming)}")
        others = [m for m in standbys if m.member not in streaming]
        if others:
            parts.append("not streaming from it: " + ", ".join(_standby_words(m) for m in others))
        if unreachable:
            parts.append("unreachable: " + ", ".join(f"{m.member} ({m.error})" for m in unreachable))
        if read_only_primaries:
            parts.append("fenced read-only: " + ", ".join(_name(m) for m in read_only_primaries))
        return Topology(
            cluster=snapshot.cluster, primary=primary.member, standbys=tuple(_name(m) for m in standbys),
            streaming=streaming, fenced=fenced_names, unreachable=tuple(_name(m) for m in unreachable),
            split_brain=(), sentence="; ".join(parts) + ".",
        )
    why = []
    unknown = [m for m in members if m.unreadable]
    if unknown:
        why.append("answering but unreadable: " + ", ".join(f"{m.member} ({m.error})" for m in unknown))
    if read_only_primaries:
        why.append("fenced read-only: " + ", ".join(_name(m) for m in read_only_primaries))
    if standbys:
        why.append("in recovery: " + ", ".join(_standby_words(m) for m in standbys))
    if unreachable:
        why.append("unreachable: " + ", ".join(f"{m.member} ({m.error})" for m in unreachable))
    return Topology(
        cluster=snapshot.cluster, primary=None, standbys=tuple(_name(m) for m in standbys), streaming=(),
        fenced=fenced_names, unreachable=tuple(_name(m) for m in unreachable), split_brain=(),
        sentence=f"Cluster {snapshot.cluster} has no writable primary ({'; '.join(why) or 'no members'}).",
    )


def _standby_words(m: MemberState) -> str:
    words = f"{m.member} (timeline {m.timeline}, replayed {m.replay_lsn}"
    if m.fence is not None:
        words += ", fenced"
    if m.receiver_status:
        words += f", receiver {m.receiver_status}"
    return words + ")"


@dataclass(frozen=True, kw_only=True)
class CandidateDecision:
    candidate: str | None
    old_primary: str | None
    reason: str  # ok | split_brain | primary_alive | no_standby
    sentence: str

    @property
    def proceed(self) -> bool:
        return self.candidate is not None


def _ineligible(m: MemberState, priorities: dict[str, int]) -> str | None:
    if not m.reachable:
        return f"{m.member} is unreachable ({m.error})"
    if not m.in_recovery:
        return f"{m.member} is not in recovery"
    if m.fence is not None:
        return f"{m.member} is fenced ({m.fence.sentence()}) and must be rejoined first"
    if m.fence_problem and m.fence_readable:
        return f"{m.member}: {m.fence_problem}"
    if priorities.get(m.member, 100) == 0:
        return f"{m.member} has priority 0 (never promoted)"
    return None


def choose_failover_candidate(
    snapshot: ClusterSnapshot, *, priorities: dict[str, int], old_primary: str | None = None,
    allow_primary_alive: bool = False,
) -> CandidateDecision:
    """The standby to promote when the primary is lost (or, with ``allow_primary_alive``, to be replaced)."""
    topology = decide_topology(snapshot)
    if topology.split_brain:
        return CandidateDecision(candidate=None, old_primary=None, reason="split_brain", sentence=topology.sentence)
    unknown = [m for m in snapshot.members if m.unreadable]
    if unknown:
        return CandidateDecision(
            candidate=None, old_primary=None, reason="unreadable",
            sentence="Not failing over: " + "; ".join(f"{m.member} answers but {m.error}" for m in unknown)
            + " — it may still be a primary (give its connection a superuser or pg_monitor login).",
        )
    if topology.primary is not None and not allow_primary_alive:
        return CandidateDecision(
            candidate=None, old_primary=topology.primary, reason="primary_alive",
            sentence=f"Not failing over: {topology.primary} is a writable primary and answers ({topology.sentence}) "
            "Use a switchover to move the primary on purpose.",
        )
    lost = topology.primary or old_primary or _likely_old_primary(snapshot)
    reasons = []
    eligible = []
    for m in snapshot.members:
        if m.member == lost:
            continue
        why = _ineligible(m, priorities)
        if why:
            reasons.append(why)
        else:
            eligible.append(m)
    if not eligible:
        return CandidateDecision(
            candidate=None, old_primary=lost, reason="no_standby",
            sentence=f"No healthy standby to promote in cluster {snapshot.cluster}: "
            + ("; ".join(reasons) or "it has no other member") + ".",
        )
    newest = max(m.timeline or 0 for m in eligible)
    behind = [m for m in eligible if (m.timeline or 0) < newest]
    eligible = [m for m in eligible if (m.timeline or 0) == newest]
    best = max(eligible, key=lambda m: (m.position, priorities.get(m.member, 100), -_order(snapshot, m.member)))
    others = [m for m in eligible if m is not best]
    extra = ""
    if others:
        extra += " Other candidates: " + ", ".join(f"{m.member} at {m.receive_lsn or m.replay_lsn}" for m in others) + "."
    if behind:
        extra += " On an older timeline: " + ", ".join(m.member for m in behind) + "."
    if reasons:
        extra += " Not eligible: " + "; ".join(reasons) + "."
    return CandidateDecision(
        candidate=best.member, old_primary=lost, reason="ok",
        sentence=(
            f"Promote {best.member} (timeline {best.timeline}, received {best.receive_lsn}, replayed "
            f"{best.replay_lsn}) in place of {lost or 'the lost primary'}.{extra}"
        ),
    )


def _order(snapshot: ClusterSnapshot, member: str) -> int:
    return next(i for i, m in enumerate(snapshot.members) if m.member == member)


def _likely_old_primary(snapshot: ClusterSnapshot) -> str | None:
    """The member the standbys were streaming from (by address), else the only unreachable one."""
    by_address = {address: name for name, address in snapshot.addresses.items()}
    for m in snapshot.members:
        if m.reachable and m.in_recovery and m.sender and m.sender in by_address:
            return by_address[m.sender]
    unreachable = [m.member for m in snapshot.members if not m.reachable]
    return unreachable[0] if len(unreachable) == 1 else None


def choose_switchover_candidate(snapshot: ClusterSnapshot, *, wanted: str | None) -> CandidateDecision:
    """The standby a planned switchover promotes: ``wanted`` (or the only streaming one), streaming now."""
    topology = decide_topology(snapshot)
    if topology.primary is None:
        return CandidateDecision(
            candidate=None, old_primary=None, reason="no_primary",
            sentence=f"No switchover without a primary: {topology.sentence} Use a failover instead.",
        )
    if wanted == topology.primary:
        return CandidateDecision(candidate=None, old_primary=topology.primary, reason="already_primary",
                                 sentence=f"{wanted} is already the primary of {snapshot.cluster}: nothing to switch.")
    streaming = [m for m in topology.streaming if snapshot.get(m).fence is None]
    if wanted is None:
        if len(streaming) != 1:
            return CandidateDecision(
                candidate=None, old_primary=topology.primary, reason="no_standby",
                sentence=f"Name the member to switch to: {len(streaming)} unfenced standbys stream from "
                f"{topology.primary} ({', '.join(streaming) or 'none'}).",
            )
        wanted = streaming[0]
    if wanted not in streaming:
        state = next((m for m in snapshot.members if m.member == wanted), None)
        why = "is not a member" if state is None else (
            "is fenced: rejoin it first" if state.fence is not None else f"does not stream from {topology.primary}")
        return CandidateDecision(candidate=None, old_primary=topology.primary, reason="no_standby",
                                 sentence=f"Cannot switch over to {wanted}: it {why} ({topology.sentence})")
    return CandidateDecision(
        candidate=wanted, old_primary=topology.primary, reason="ok",
        sentence=f"Switch the primary of {snapshot.cluster} from {topology.primary} to {wanted}, which streams from it.",
    )
