"""Rejoin: turn a fenced or lost member back into a streaming standby of the current primary.

For each member to rejoin (the one named, else every member that does not stream from the primary):
stop it; CHECKPOINT the primary (pg_rewind compares against its last checkpoint); pg_rewind it from the
primary when the timelines diverged (with its configuration files kept: pg_rewind copies the source's),
or clone it afresh when rewind is impossible or asked for (the old data directory is kept aside, never
deleted); point it at the primary (primary_conninfo, a slot of its own), start it in recovery, wait until
the primary lists it as streaming, then clear its fence marker and restore synchronous replication if
the cluster keeps it. A member that already streams from the primary only has its marker cleared.
"""

from __future__ import annotations

from dataclasses import dataclass

from disaster_recovery.clusters.access import (
    connect_member,
    follows,
    member_host,
    member_login,
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
    ensure_slot,
    set_synchronous_standbys,
    streaming_standbys,
    wait_for,
)
from disaster_recovery.clusters.host.control import HostControlError, LocalHost
from disaster_recovery.clusters.model import Cluster, Member, RejoinMethod
from disaster_recovery.clusters.state import ClusterSnapshot
from disaster_recovery.clusters.topology import decide_topology
from disaster_recovery.postgres.replication import fetch_all


@dataclass(frozen=True, kw_only=True)
class RejoinOptions:
    member: str | None = None
    method: RejoinMethod | None = None  # default: the cluster's rejoin_method
    timeout: float = 120.0
    dry_run: bool = False


def _targets(cluster: Cluster, snapshot: ClusterSnapshot, primary: str, streaming: tuple[str, ...],
             wanted: str | None) -> list[Member]:
    if wanted is not None:
        member = cluster.member(wanted)
        if member.member_name == primary:
            raise ActionRefused(f"{member.member_name} is the primary of {cluster.name}: there is nothing to rejoin.")
        return [member]
    return [m for m in cluster.members if m.member_name != primary
            and (m.member_name not in streaming or snapshot.get(m.member_name).fence is not None)]


def rejoin(cluster: Cluster, opts: RejoinOptions) -> ActionResult:
    phases = Phases()
    prefix = "Dry run: " if opts.dry_run else ""
    with phases.time("snapshot"):
        snapshot = snapshot_cluster(cluster)
    topology = decide_topology(snapshot)
    if topology.split_brain or topology.primary is None:
        raise ActionRefused(f"{prefix}Cannot rejoin without exactly one writable primary: {topology.sentence}")
    primary = cluster.member(topology.primary)
    targets = _targets(cluster, snapshot, topology.primary, topology.streaming, opts.member)
    if not targets:
        return ActionResult(action="rejoin", cluster=cluster.name, source=None, target=primary.member_name,
                            dry_run=opts.dry_run, decision=topology.sentence, phases=phases,
                            sentence=f"Nothing to rejoin: {topology.sentence}")
    method = opts.method or cluster.rejoin_method
    results: list[dict] = []
    notes: list[str] = []
    primary_conn = connect_member(primary, connect_timeout=5)
    try:
        for member in targets:
            host = member_host(cluster, member)
            if host is None or not host.exists():
                raise ActionRefused(f"{prefix}Rejoining {member.member_name} needs its host control (control: "
                                    "{kind: local, data_directory: ...}) in the cluster definition.")
            state = snapshot.get(member.member_name)
            if member.member_name in topology.streaming:
                if not opts.dry_run:
                    host.clear_fence()
                results.append({"member": member.member_name, "method": "none", "streaming": True})
                notes.append(f"{member.member_name} already streams from {primary.member_name}"
                             + ("; would clear its fence marker" if opts.dry_run else "; its fence marker is cleared"))
                continue
            if opts.dry_run:
                results.append(_plan(member, host=host, primary=primary, method=method, state_words=state.error))
                continue
            results.append(_rejoin_one(member, cluster=cluster, host=host, primary=primary, primary_conn=primary_conn,
                                       method=method, timeout=opts.timeout, phases=phases, notes=notes))
        if not opts.dry_run and cluster.synchronous:
            before, after = set_synchronous_standbys(primary_conn, streaming_standbys(primary_conn))
            if before != after:
                notes.append(f"synchronous_standby_names: {before!r} -> {after!r}")
    finally:
        closing(primary_conn)
    names = ", ".join(r["member"] for r in results)
    if opts.dry_run:
        sentence = "Dry run: " + " ".join(r["plan"] for r in results if "plan" in r)
        if notes:
            sentence += " " + "; ".join(notes) + "."
    else:
        how = ", ".join(f"{r['member']} by {r['method']}" for r in results)
        sentence = (f"Rejoined {how} as standby of {primary.member_name} in {phases.total:.2f} s"
                    + (f"; {'; '.join(notes)}" if notes else "") + ".")
    return ActionResult(action="rejoin", cluster=cluster.name, source=names, target=primary.member_name,
                        dry_run=opts.dry_run, decision=topology.sentence, sentence=sentence, phases=phases,
                        timeline_before=snapshot.get(primary.member_name).timeline, notes=tuple(notes),
                        details={"members": results})


def _plan(member: Member, *, host: LocalHost, primary: Member, method: RejoinMethod, state_words) -> dict:
    status = host.status()
    how = {RejoinMethod.CLONE: "clone it afresh", RejoinMethod.REWIND: "pg_rewind it",
           RejoinMethod.AUTO: "pg_rewind it (clone if rewind is impossible)"}[method]
    words = (f"would {'stop ' + member.member_name + ', ' if status.running else ''}{how} from "
             f"{primary.member_name} and start it as a streaming standby ({member.member_name} is "
             f"{status.sentence()}).")
    return {"member": member.member_name, "method": method.value, "plan": words}


def _rejoin_one(member: Member, *, cluster: Cluster, host: LocalHost, primary: Member, primary_conn,
                method: RejoinMethod, timeout: float, phases: Phases, notes: list[str]) -> dict:
    name = member.member_name
    with phases.time(f"{name}:stop"):
        try:
            notes.append(host.ensure_stopped())
        except HostControlError as exc:
            raise ActionRefused(f"Cannot rejoin {name}: {exc}") from exc
    login = member_login(primary)
    info, password = replication_conninfo(primary, application_name=name)
    used = "pg_rewind"
    with phases.time(f"{name}:rewind"):
        output = ""
        if method is not RejoinMethod.CLONE:
            fetch_all(primary_conn, "CHECKPOINT")  # else pg_rewind may wrongly find "no rewind required"
            saved = host.save_config_files()
            host.remove_standby_signal()  # pg_rewind's crash recovery runs single-user, which refuses standby mode
            try:
                proc = host.rewind(source_conninfo=f"{info} dbname=postgres", password=password)
            finally:
                host.restore_config_files(saved)
                host.write_standby_signal()
            output = (proc.stdout + proc.stderr).strip()
            if proc.returncode != 0:
                if method is RejoinMethod.REWIND:
                    raise ActionFailed(f"pg_rewind of {name} from {primary.member_name} failed (exit "
                                       f"{proc.returncode}): {output[-1500:]}")
                notes.append(f"pg_rewind of {name} was impossible ({_last_line(output)}); cloned it instead")
                used = "clone"
            elif "no rewind required" in output:
                used = "restart (no rewind needed)"
        if method is RejoinMethod.CLONE or used == "clone":
            used = "clone"
            ensure_slot(primary_conn, name)
            try:
                aside = host.clone(source_host=login.host, source_port=login.port, user=login.user,
                                   password=password, slot_name=name)
            except HostControlError as exc:
                raise ActionFailed(str(exc)) from exc
            notes.append(f"the previous data directory of {name} is kept at {aside}")
            host.write_standby_signal()
    with phases.time(f"{name}:start"):
        ensure_slot(primary_conn, name)
        host.set_standby_config(primary_conninfo=with_password(info, password), slot_name=name)
        try:
            host.start(timeout=timeout)
        except HostControlError as exc:
            raise ActionFailed(f"{name} ({used}) does not start: {exc}") from exc
        streaming = wait_for(lambda: name in follows(cluster, primary), timeout=timeout)
        if not streaming:
            raise ActionFailed(f"{name} started in recovery but does not stream from {primary.member_name} after "
                               f"{timeout:g} s (its log: {host.data_dir.parent / (host.data_dir.name + '.log')}); "
                               "it stays fenced")
        host.clear_fence()
    return {"member": name, "method": used, "streaming": True, "pg_rewind": _last_line(output) if output else None}


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
