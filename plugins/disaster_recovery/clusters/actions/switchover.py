"""Planned switchover: move the primary to a streaming standby with zero acknowledged writes lost.

1. snapshot; the candidate (named, else the cluster's ``preferred_primary``, else the only streaming
   standby) must stream from the primary within the lag limit; the primary needs host control;
2. fence the primary (read-only default, sessions ended, CHECKPOINT), then stop it cleanly: its
   walsender sends everything up to the shutdown checkpoint first;
3. wait until the candidate has replayed past that shutdown checkpoint — every write the old primary
   ever acknowledged is then on the candidate. If it does not get there in time, the switchover is
   abandoned: the fence is lifted and the old primary started again as the primary;
4. write the lasting fence into the old primary (standby.signal + primary_conninfo to the candidate),
   promote the candidate, wait for a write;
5. start the old primary as a standby of the new one (it shut down cleanly, so it follows the new
   timeline without a rewind), give it a slot, clear its fence marker once it streams, and restore
   synchronous replication if the cluster keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from disaster_recovery.clusters.access import (
    connect_member,
    follows,
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
    ensure_slot,
    set_synchronous_standbys,
    streaming_standbys,
    wait_for,
)
from disaster_recovery.clusters.actions.failover import replayed_past, shutdown_checkpoint
from disaster_recovery.clusters.host.control import HostControlError, marker_now
from disaster_recovery.clusters.model import Cluster
from disaster_recovery.clusters.topology import choose_switchover_candidate
from disaster_recovery.postgres.failover import (
    FailoverError,
    clear_fence,
    decide_failover,
    fence_primary,
    promote,
    wait_writable,
)
from disaster_recovery.postgres.replication import current_timeline, error_text, read_snapshot


@dataclass(frozen=True, kw_only=True)
class SwitchoverOptions:
    candidate: str | None = None
    max_lag_bytes: int | None = 16 * 1024 * 1024
    timeout: float = 60.0
    dry_run: bool = False
    reason: str = ""
    execution_id: str | None = None


def switchover(cluster: Cluster, opts: SwitchoverOptions) -> ActionResult:
    """Switch the cluster's primary over (see the module docstring); ActionRefused or ActionFailed."""
    phases = Phases()
    notes: list[str] = []
    details: dict = {}
    prefix = "Dry run: " if opts.dry_run else ""
    with phases.time("snapshot"):
        snapshot = snapshot_cluster(cluster)
    wanted = cluster.member(opts.candidate).member_name if opts.candidate else cluster.preferred_primary
    choice = choose_switchover_candidate(snapshot, wanted=wanted)
    if not choice.proceed:
        raise ActionRefused(prefix + choice.sentence)
    old = cluster.member(choice.old_primary)
    new = cluster.member(choice.candidate)
    host = member_host(cluster, old)
    if host is None or not host.exists():
        raise ActionRefused(f"{prefix}A switchover stops {old.member_name} cleanly, which needs its host control "
                            "(control: {kind: local, data_directory: ...}) in the cluster definition.")
    old_conn = new_conn = None
    try:
        old_conn = connect_member(old, connect_timeout=5)
        new_conn = connect_member(new, connect_timeout=5)
        rsnap = read_snapshot(new_conn, primary_conn=old_conn)
        verdict = decide_failover(rsnap, max_lag_bytes=opts.max_lag_bytes, max_lag_seconds=None)
        if not verdict.proceed:
            raise ActionRefused(prefix + verdict.sentence)
        if rsnap.primary_timeline is not None and rsnap.timeline != rsnap.primary_timeline:
            raise ActionRefused(
                f"{prefix}{new.member_name} is on timeline {rsnap.timeline}, {old.member_name} on "
                f"{rsnap.primary_timeline}: it does not follow the primary (rejoin it first); a switchover to it "
                "would lose the primary's writes."
            )
        decision = f"{choice.sentence} {verdict.sentence}"
        base = dict(action="switchover", cluster=cluster.name, source=old.member_name, target=new.member_name,
                    decision=decision, timeline_before=rsnap.timeline, lag_bytes=rsnap.lag_bytes,
                    lag_seconds=rsnap.lag_seconds)
        if opts.dry_run:
            return ActionResult(**base, dry_run=True, phases=phases, details=details, sentence=(
                f"Dry run: would fence and stop {old.member_name}, wait for {new.member_name} to replay its "
                f"shutdown checkpoint, promote {new.member_name} and restart {old.member_name} as its standby. "
                f"{decision}"))

        with phases.time("fence"):
            fence = fence_primary(old_conn)
            details["sql_fence"] = fence.as_dict()
            closing(old_conn)
            old_conn = None
            notes.append(host.ensure_stopped())
        with phases.time("catch_up"):
            checkpoint = shutdown_checkpoint(host)
            if checkpoint is None or not wait_for(lambda: replayed_past(new_conn, checkpoint), timeout=opts.timeout):
                _abandon(old, host)
                raise ActionRefused(
                    f"Switchover abandoned: {new.member_name} did not replay {old.member_name}'s shutdown checkpoint "
                    f"({checkpoint or 'unknown: it did not shut down cleanly'}) within {opts.timeout:g} s; "
                    f"{old.member_name} was started again as the primary and its fence lifted."
                )
            details["shutdown_checkpoint"] = checkpoint
        info, password = replication_conninfo(new, application_name=old.member_name)
        with phases.time("promote"):
            host.write_fence(
                marker_now(cluster=cluster.name, member=old.member_name, new_primary=new.member_name,
                           reason=opts.reason or "switchover", timeline=rsnap.timeline,
                           last_lsn=checkpoint, execution_id=opts.execution_id),
                primary_conninfo=with_password(info, password), slot_name=old.member_name,
            )
            try:
                promote(new_conn, wait_seconds=max(1, int(opts.timeout)))
            except FailoverError as exc:
                raise ActionFailed(f"promotion of {new.member_name} failed after {old.member_name} was stopped and "
                                   f"fenced: {exc}") from exc
            promoted_at = datetime.now(UTC)
            set_synchronous_standbys(new_conn, [])  # nobody streams yet: commits must not wait
            clear_fence(new_conn)
            drop_inactive_slot(new_conn, new.member_name)
            ensure_slot(new_conn, old.member_name)
        with phases.time("writable"):
            try:
                wait_writable(lambda: connect_member(new, connect_timeout=5), timeout=opts.timeout)
            except FailoverError as exc:
                raise ActionFailed(f"{new.member_name} was promoted but {exc}") from exc
        timeline = current_timeline(new_conn)
        with phases.time("rejoin"):
            streaming = _restart_as_standby(old, cluster=cluster, new=new, host=host, timeout=opts.timeout,
                                            notes=notes)
            if streaming and cluster.synchronous:
                before, after = set_synchronous_standbys(new_conn, streaming_standbys(new_conn))
                details["synchronous_standby_names"] = {"before": before, "after": after}
    finally:
        closing(old_conn)
        closing(new_conn)
    sentence = (
        f"Switched the primary of {cluster.name} from {old.member_name} to {new.member_name} (timeline "
        f"{rsnap.timeline} -> {timeline}) with every acknowledged write replayed (past {old.member_name}'s shutdown "
        f"checkpoint {checkpoint}); writes paused {phases.seconds['fence'] + phases.seconds['catch_up'] + phases.seconds['promote'] + phases.seconds['writable']:.2f} s"
        + (f"; {old.member_name} now streams from {new.member_name}" if streaming else
           f"; {old.member_name} is fenced but not streaming yet: run the rejoin")
        + "."
    )
    return ActionResult(**base, dry_run=False, sentence=sentence, phases=phases, promoted_at=promoted_at,
                        timeline_after=timeline, lasting_fence=True, notes=tuple(notes), details=details)


def _restart_as_standby(old, *, cluster: Cluster, new, host, timeout: float, notes: list[str]) -> bool:
    try:
        host.start(timeout=timeout)
    except HostControlError as exc:
        notes.append(f"{old.member_name} did not start as a standby: {exc}")
        return False
    if wait_for(lambda: old.member_name in follows(cluster, new), timeout=timeout):
        host.clear_fence()
        return True
    notes.append(f"{old.member_name} started in recovery but does not stream yet")
    return False


def _abandon(old, host) -> None:
    """Put the old primary back as it was: no standby.signal, no marker, started, read-write by default."""
    try:
        host.remove_standby_signal()
        host.clear_fence()
        host.start(timeout=60)
        conn = connect_member(old, connect_timeout=5)
        try:
            clear_fence(conn)
        finally:
            closing(conn)
    except Exception as exc:  # say so: the operator must look at it now
        raise ActionFailed(f"switchover abandoned, and restarting {old.member_name} as the primary failed too: "
                           f"{error_text(exc)}") from exc
