"""Failover of a cluster: promote the best standby after fencing the old primary for good.

1. snapshot every member; choose the candidate (``choose_failover_candidate``) and check its lag against
   the old primary on one replication snapshot (``decide_failover``);
2. fence: an old primary that answers is made read-only, its sessions ended and checkpointed (and the
   candidate waits for that final WAL); with host control it is then stopped and ``standby.signal`` +
   ``primary_conninfo`` (pointing at the candidate) + ``dr_fence.json`` are written into its data
   directory, so it can only ever come back in recovery. A dead old primary gets the same files; one
   that runs but does not answer is stopped first (by SIGKILL if need be);
3. promote, set synchronous_standby_names for the standbys left (never waiting on an absent one),
   reset an inherited read-only default, drop the promoted member's own stale slot, wait for a write;
4. measure what was lost from the old primary's own WAL past the fork point (``walloss``).

A dry run does steps 1 and the fence planning and changes nothing. Refusals raise ``ActionRefused``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from disaster_recovery.clusters.access import (
    connect_member,
    member_host,
    replication_conninfo,
    snapshot_cluster,
    with_password,
)
from disaster_recovery.clusters.actions.common import (
    ActionFailed,
    ActionRefused,
    ActionResult,
    Phases,
    closing,
    drop_inactive_slot,
    read_history_file,
    set_synchronous_standbys,
    wait_for,
)
from disaster_recovery.clusters.host.control import HostControlError, LocalHost, marker_now
from disaster_recovery.clusters.host.walloss import WalLoss, fork_point, parse_waldump
from disaster_recovery.clusters.model import Cluster, Member
from disaster_recovery.clusters.state import ClusterSnapshot
from disaster_recovery.clusters.topology import choose_failover_candidate, decide_topology
from disaster_recovery.postgres.failover import (
    FailoverError,
    clear_fence,
    decide_failover,
    fence_primary,
    promote,
    wait_replayed,
    wait_writable,
)
from disaster_recovery.postgres.replication import (
    current_timeline,
    error_text,
    fetch_one,
    lsn_to_int,
    read_snapshot,
)

log = logging.getLogger("disaster_recovery.clusters")


@dataclass(frozen=True, kw_only=True)
class FailoverOptions:
    candidate: str | None = None
    max_lag_bytes: int | None = 16 * 1024 * 1024
    max_lag_seconds: float | None = None
    fence_old_primary: bool = True
    require_lasting_fence: bool = False
    keep_synchronous_names: bool = False
    allow_primary_alive: bool = True  # False: refuse when a writable primary answers (e.g. on a retry)
    expected_primary: str | None = None  # the member named as the old primary (the form without a cluster)
    timeout: float = 60.0
    dry_run: bool = False
    reason: str = ""
    execution_id: str | None = None


def shutdown_checkpoint(host: LocalHost) -> str | None:
    """The LSN of the stopped server's shutdown checkpoint (None unless it was shut down cleanly)."""
    data = host.controldata()
    if data.get("Database cluster state") not in ("shut down", "shut down in recovery"):
        return None
    return data.get("Latest checkpoint location")


def replayed_past(conn, lsn: str) -> bool:
    replay = fetch_one(conn, "SELECT pg_last_wal_replay_lsn()::text")[0]
    return (lsn_to_int(replay) or 0) > (lsn_to_int(lsn) or 0)


class _Failover:
    def __init__(self, cluster: Cluster, opts: FailoverOptions) -> None:
        self.cluster = cluster
        self.opts = opts
        self.phases = Phases()
        self.notes: list[str] = []
        self.details: dict = {}

    def run(self) -> ActionResult:
        with self.phases.time("snapshot"):
            snapshot = snapshot_cluster(self.cluster)
        self.details["topology_before"] = decide_topology(snapshot).sentence
        choice = self._choose(snapshot)
        candidate = self.cluster.member(choice.candidate)
        old = self.cluster.member(choice.old_primary) if choice.old_primary else None
        old_state = snapshot.get(old.member_name) if old else None
        cand_conn = old_conn = None
        try:
            cand_conn = connect_member(candidate, connect_timeout=5)
            if old_state is not None and old_state.reachable:
                try:
                    old_conn = connect_member(old, connect_timeout=5)
                except Exception as exc:  # it went away since the snapshot
                    self.notes.append(f"{old.member_name} stopped answering after the snapshot ({error_text(exc)})")
            rsnap = read_snapshot(
                cand_conn, primary_conn=old_conn,
                primary_error=None if old_conn else (old_state.error if old_state else "no old primary known"),
                application_name=None,
            )
            verdict = decide_failover(rsnap, max_lag_bytes=self.opts.max_lag_bytes,
                                      max_lag_seconds=self.opts.max_lag_seconds)
            decision = f"{choice.sentence} {verdict.sentence}"
            if not verdict.proceed:
                raise ActionRefused(("Dry run: " if self.opts.dry_run else "") + verdict.sentence)
            host = member_host(self.cluster, old) if old else None
            if host is not None and not host.exists():
                self.notes.append(f"host control of {old.member_name} cannot see its data directory {host.data_dir}")
                host = None
            self._check_fence_possible(old, old_conn, host)
            cand_state = snapshot.get(candidate.member_name)
            if old_conn is None and host is None and cand_state.receiver_status == "streaming":
                raise ActionRefused(
                    f"{'Dry run: ' if self.opts.dry_run else ''}{candidate.member_name} still streams from "
                    f"{cand_state.sender}: its primary is alive, only unreachable from here (a network partition?). "
                    "Not promoting a second primary; fence the old one on its host first."
                )
            self.details["primary_reachable"] = old_conn is not None
            self.details["lag_basis"] = rsnap.lag_basis
            base = dict(
                action="failover", cluster=self.cluster.name, source=old.member_name if old else None,
                target=candidate.member_name, decision=decision, timeline_before=rsnap.timeline,
                lag_bytes=rsnap.lag_bytes, lag_seconds=rsnap.lag_seconds,
            )
            if self.opts.dry_run:
                return self._dry_run_result(base, old_conn=old_conn, host=host, candidate=candidate)
            with self.phases.time("fence"):
                lasting = self._fence(old=old, old_conn=old_conn, host=host, candidate=candidate,
                                      cand_conn=cand_conn, timeline=rsnap.timeline)
            with self.phases.time("promote"):
                try:
                    promote(cand_conn, wait_seconds=max(1, int(self.opts.timeout)))
                except FailoverError as exc:
                    raise ActionFailed(f"promotion of {candidate.member_name} failed: {exc}") from exc
                promoted_at = datetime.now(UTC)
            with self.phases.time("configure"):
                self._configure_new_primary(cand_conn, candidate=candidate)
            with self.phases.time("writable"):
                try:
                    wait_writable(lambda: connect_member(candidate, connect_timeout=5), timeout=self.opts.timeout)
                except FailoverError as exc:
                    raise ActionFailed(f"{candidate.member_name} was promoted but {exc}") from exc
            timeline = current_timeline(cand_conn)
            loss = self._measure_loss(cand_conn, host=host, old_answered=old_conn is not None, timeline_after=timeline)
            base["timeline_before"] = self.details.get("forked_from_timeline", rsnap.timeline)
        finally:
            closing(old_conn)
            closing(cand_conn)
        sentence = (
            f"Promoted {candidate.member_name} to primary of {self.cluster.name} on timeline {timeline} (was "
            f"{base['timeline_before']}) in {self.phases.total:.2f} s"
            + (f" ({', '.join(f'{k} {v:.2f} s' for k, v in self.phases.seconds.items())})")
            + (f"; {old.member_name} fenced for good" if lasting else "")
            + (f"; {loss.sentence()}" if loss else "")
            + ("; with synchronous replication a commit is acknowledged only once a standby has it, so none of "
               "those was acknowledged to its client" if loss and loss.lost_transactions and self.cluster.synchronous
               else "")
            + "."
        )
        if self.notes:
            sentence += " " + "; ".join(n.rstrip(".") for n in self.notes) + "."
        return ActionResult(**base, dry_run=False, sentence=sentence, phases=self.phases, promoted_at=promoted_at,
                            timeline_after=timeline, loss=loss, lasting_fence=lasting, notes=tuple(self.notes),
                            details=self.details)

    # -- decisions ------------------------------------------------------------------------------------
    def _choose(self, snapshot: ClusterSnapshot):
        prefix = "Dry run: " if self.opts.dry_run else ""
        priorities = {m.member_name: m.priority for m in self.cluster.members}
        wanted = self.opts.candidate
        if wanted is not None:
            wanted = self.cluster.member(wanted).member_name
            state = snapshot.get(wanted)
            if state.reachable and state.in_recovery is False:
                raise ActionRefused(f"{prefix}{wanted} is not in recovery: it is already a primary (timeline "
                                    f"{state.timeline}); there is nothing to promote.")
            priorities = {name: (1000 if name == wanted else 0) for name in priorities}
        expected = self.opts.expected_primary
        if expected is not None:
            state = snapshot.get(self.cluster.member(expected).member_name)
            if state.reachable and state.in_recovery:
                raise ActionRefused(
                    f"{prefix}The server named as the primary ({expected}) is itself in recovery (a standby): the roles "
                    "may already have been swapped by an earlier failover; check the connections before failing over."
                )
        choice = choose_failover_candidate(snapshot, priorities=priorities, old_primary=expected,
                                           allow_primary_alive=self.opts.allow_primary_alive)
        if not choice.proceed:
            raise ActionRefused(prefix + choice.sentence)
        if choice.old_primary is None:
            self.notes.append("no old primary could be identified (no member answered as one)")
        return choice

    def _check_fence_possible(self, old: Member | None, old_conn, host: LocalHost | None) -> None:
        if old is None:
            return
        if old_conn is not None and not self.opts.fence_old_primary:
            self.notes.append(f"{old.member_name} was NOT fenced (fence_old_primary: false) and still accepts writes")
        if host is None:
            why = (f"{old.member_name} has no host control in the cluster definition, so it cannot be fenced on "
                   "disk: do not start it again before rejoining it")
            if self.opts.require_lasting_fence:
                raise ActionRefused(f"Refusing to fail over: a lasting fence is required and {why}.")
            self.notes.append(why)

    def _dry_run_result(self, base: dict, *, old_conn, host: LocalHost | None, candidate: Member) -> ActionResult:
        old = base["source"]
        actions = []
        if old_conn is not None and self.opts.fence_old_primary:
            actions.append(f"fence {old} (read-only, end its sessions, checkpoint)")
        if host is not None:
            status = host.status()
            actions.append(f"{'stop' if status.running else 'keep stopped'} {old} and write standby.signal + "
                           f"primary_conninfo ({candidate.member_name}) + dr_fence.json into {host.data_dir}")
        actions.append(f"promote {candidate.member_name}")
        sentence = f"Dry run: would {', then '.join(actions)}. {base['decision']}"
        if self.notes:
            sentence += " " + "; ".join(self.notes) + "."
        return ActionResult(**base, dry_run=True, sentence=sentence, phases=self.phases, notes=tuple(self.notes),
                            details=self.details)

    # -- actions --------------------------------------------------------------------------------------
    def _fence(self, *, old: Member | None, old_conn, host: LocalHost | None, candidate: Member, cand_conn,
               timeline: int) -> bool:
        if old is None:
            return False
        if old_conn is not None and self.opts.fence_old_primary:
            try:
                fence = fence_primary(old_conn)
            except Exception as exc:
                if _still_answers(old):
                    raise ActionRefused(
                        f"Could not fence {old.member_name}, which still answers: {error_text(exc)}. Not promoting: "
                        "two writable primaries would split the data."
                    ) from exc
                self.notes.append(f"{old.member_name} went away while being fenced ({error_text(exc)})")
            else:
                self.details["sql_fence"] = fence.as_dict()
                self.notes.append(fence.sentence)
                caught_up, replay = wait_replayed(cand_conn, target_lsn=fence.final_lsn, timeout=self.opts.timeout)
                self.details["caught_up"] = caught_up
                self.details["replay_lsn_at_promotion"] = replay
                if not caught_up:
                    self.notes.append(f"{candidate.member_name} replayed only up to {replay} of the old primary's "
                                      f"final {fence.final_lsn}; promoting anyway (within the lag limit)")
        if host is None:
            return False
        try:
            if old_conn is not None:
                self.notes.append(host.ensure_stopped())
                checkpoint = shutdown_checkpoint(host)
                if checkpoint and wait_for(lambda: replayed_past(cand_conn, checkpoint), timeout=self.opts.timeout):
                    self.details["caught_up"] = True
            else:
                status = host.status()
                if status.running:
                    self.notes.append(f"{old.member_name}'s postmaster runs but does not answer: "
                                      + host.ensure_stopped())
                orphans = host.kill_server_processes()
                if orphans:
                    self.notes.append(f"killed {orphans} server process(es) {old.member_name}'s dead postmaster "
                                      "left running (they could still commit)")
                # Once they are gone nothing more arrives: let the candidate see the end of the stream, so
                # promotion replays every record it acknowledged.
                wait_for(lambda: _receiver_stopped(cand_conn), timeout=2.0)
            info, password = replication_conninfo(candidate, application_name=old.member_name)
            host.write_fence(
                marker_now(cluster=self.cluster.name, member=old.member_name, new_primary=candidate.member_name,
                           reason=self.opts.reason or "failover", timeline=timeline,
                           execution_id=self.opts.execution_id),
                primary_conninfo=with_password(info, password), slot_name=old.member_name,
            )
        except HostControlError as exc:
            if old_conn is not None and _still_answers(old):
                raise ActionRefused(f"Could not fence {old.member_name} on its host while it still answers: {exc}. "
                                    "Not promoting.") from exc
            if self.opts.require_lasting_fence:
                raise ActionRefused(f"Refusing to fail over: the lasting fence of {old.member_name} failed: {exc}") from exc
            self.notes.append(f"the lasting fence of {old.member_name} failed ({exc}): do not start it before a rejoin")
            return False
        return True

    def _configure_new_primary(self, conn, *, candidate: Member) -> None:
        if not self.opts.keep_synchronous_names:
            # Nobody streams from the new primary yet: naming synchronous standbys would hang every commit.
            # A rejoin restores synchronous replication once a standby streams from it.
            before, after = set_synchronous_standbys(conn, [])
            if before != after:
                self.details["synchronous_standby_names"] = {"before": before, "after": after}
                self.notes.append(f"cleared synchronous_standby_names ({before!r}) on the new primary")
        if clear_fence(conn):
            self.notes.append("reset an inherited default_transaction_read_only on the new primary")
        if drop_inactive_slot(conn, candidate.member_name):
            self.notes.append(f"dropped the stale slot {candidate.member_name} on the new primary")

    def _measure_loss(self, cand_conn, *, host: LocalHost | None, old_answered: bool,
                      timeline_after: int) -> WalLoss | None:
        history = read_history_file(cand_conn, timeline_after)
        branch = fork_point(history or "")
        if branch is None:
            return None
        # A standby that lost its primary may report the timeline of its last restartpoint, older than
        # the one it replayed: the history file says which timeline the new one really branched from.
        timeline_before, fork = branch
        self.details["fork_lsn"] = fork
        self.details["forked_from_timeline"] = timeline_before
        if old_answered and self.details.get("caught_up"):
            return WalLoss(fork_lsn=fork, end_lsn=fork, lost_bytes=0, lost_transactions=0,
                           first_lost_commit_at=None, last_lost_commit_at=None)
        if host is None:
            return None
        with self.phases.time("measure_loss"):
            try:
                return parse_waldump(host.waldump(start_lsn=fork, timeline=timeline_before), fork_lsn=fork)
            except Exception as exc:  # measuring must never fail a failover that succeeded
                self.notes.append(f"could not read {host.member}'s WAL to measure the loss ({error_text(exc)})")
                return None


def _receiver_stopped(conn) -> bool:
    status = fetch_one(conn, "SELECT status FROM pg_stat_wal_receiver")
    return not status or status[0] != "streaming"


def _still_answers(member: Member) -> bool:
    conn = None
    try:
        conn = connect_member(member, connect_timeout=3)
        fetch_one(conn, "SELECT 1")
        return True
    except Exception:
        return False
    finally:
        closing(conn)


def failover(cluster: Cluster, opts: FailoverOptions) -> ActionResult:
    """Fail the cluster over (see the module docstring); raises ActionRefused or ActionFailed."""
    return _Failover(cluster, opts).run()
