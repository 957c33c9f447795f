"""The lab's protected cluster ``wedsync``: two members on this machine, whatever their roles are now.

Members are named as in include/clusters.yaml (``wedsync_node1``, ``wedsync_node2``; data directories
``pg/<member>`` in the lab home). Which one is the primary is read from the servers, never assumed: after
a failover the lab starts both members as they are — the fenced old primary comes up in recovery (its
data directory holds standby.signal and dr_fence.json) — and describes the topology truthfully, with
what to run next. It never promotes or rejoins by itself: that goes through Airflow (the plans).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from disaster_recovery.clusters.actions.common import set_synchronous_standbys, streaming_standbys
from disaster_recovery.clusters.state import ClusterSnapshot, read_member_state, state_error, unreachable
from disaster_recovery.clusters.topology import Topology, decide_topology
from disaster_recovery.postgres.cluster import ClusterError, LocalCluster, create_standby, wait_streaming

CLUSTER = "wedsync"
MEMBERS = ("wedsync_node1", "wedsync_node2")
LEGACY_DIRS = ("wedsync_primary", "wedsync_standby")
REJOIN_DAG = "dr_plan__wedsync-rejoin"
FAILOVER_DAG = "dr_plan__wedsync-database-failover"


class LabMembers:
    def __init__(self, *, pg_dir: Path, ports: dict[str, int], password: str) -> None:
        self.pg_dir = pg_dir
        self.nodes = {name: LocalCluster(data_dir=pg_dir / name, port=ports[name], password=password)
                      for name in MEMBERS}

    def check_layout(self) -> None:
        legacy = [d for d in LEGACY_DIRS if (self.pg_dir / d).exists()]
        if legacy:
            raise ClusterError(
                f"this lab was made before clusters: it has {', '.join(legacy)} in {self.pg_dir}, where members are "
                f"now {' and '.join(MEMBERS)} (include/clusters.yaml). Stop it and make a new one: make stop && rm -rf "
                f"{self.pg_dir.parent} && make run (its sample data is made again; keep {self.pg_dir.parent}/backups "
                "aside first if you want its backups)"
            )

    # -- reading ------------------------------------------------------------------------------------
    def snapshot(self) -> ClusterSnapshot:
        states = []
        for name, node in self.nodes.items():
            conn = None
            try:
                conn = node.connect()
                states.append(read_member_state(conn, member=name, conn_id=name))
            except Exception as exc:  # a member that does not answer is part of the picture, not an error
                states.append(unreachable(member=name, conn_id=name, error=state_error(exc)))
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
        addresses = {name: f"127.0.0.1:{node.port}" for name, node in self.nodes.items()}
        return ClusterSnapshot(cluster=CLUSTER, members=tuple(states), addresses=addresses)

    def topology(self) -> Topology:
        return decide_topology(self.snapshot())

    def primary(self) -> LocalCluster | None:
        name = self.topology().primary
        return self.nodes[name] if name else None

    # -- bringing it up -----------------------------------------------------------------------------
    def up(self, log: Callable[[str], None], *, load_sample: Callable[[LocalCluster], None],
           archive: Callable[[LocalCluster], None], synchronous: bool) -> Topology:
        """Create what is missing, start every member as it is, and say what the cluster looks like."""
        self.check_layout()
        first = self.nodes[MEMBERS[0]]
        if not any(node.exists() for node in self.nodes.values()):
            log(f"initdb {first.data_dir} (port {first.port})")
            first.initdb()
        for node in self.nodes.values():
            if node.exists():
                node.start()
        for node in self.nodes.values():
            if node.exists():
                with contextlib.suppress(ClusterError):
                    node.wait_ready(timeout=30)
        topology = self.topology()
        primary = self.nodes[topology.primary] if topology.primary else None
        if primary is not None:
            if primary.create_database("wedsync") or not primary.query(
                "SELECT 1 FROM pg_tables WHERE tablename = 'payments'", dbname="wedsync"
            ):
                load_sample(primary)
                log("loaded the WedSync sample data")
            archive(primary)
            for name, node in self.nodes.items():
                if not node.exists():
                    log(f"cloning {name} from the primary {topology.primary} (port {node.port})")
                    create_standby(primary, data_dir=node.data_dir, port=node.port, slot=name)
                    node.start()
                    wait_streaming(primary, application_name=name, timeout=60)
            self.set_synchronous(synchronous)
            topology = self.topology()
        return topology

    def set_synchronous(self, enabled: bool) -> tuple[str, str] | None:
        """Synchronous replication to the standbys streaming now (ANY 1 of them), or none; None when
        there is no primary."""
        primary = self.primary()
        if primary is None:
            return None
        conn = primary.connect()
        try:
            return set_synchronous_standbys(conn, streaming_standbys(conn) if enabled else [])
        finally:
            conn.close()

    # -- saying so ----------------------------------------------------------------------------------
    def describe(self, topology: Topology | None = None) -> list[str]:
        """One line per member, what it is now, and what to do about it."""
        snapshot = self.snapshot()
        topology = topology or decide_topology(snapshot)
        lines = []
        for state in snapshot.members:
            node = self.nodes[state.member]
            where = f"127.0.0.1:{node.port}"
            if not state.reachable:
                what = f"down ({state.error})"
            elif state.is_writable_primary:
                sync = state.synchronous_standby_names
                what = f"primary, timeline {state.timeline}" + (f", synchronous to {sync}" if sync else ", asynchronous")
            elif state.in_recovery:
                streams = state.member in topology.streaming
                what = f"standby, timeline {state.timeline}, " + ("streaming" if streams else "NOT streaming")
            else:
                what = f"read-only old primary (fenced by SQL), timeline {state.timeline}"
            if state.fence is not None:
                what += f"; FENCED {state.fence.sentence()}: rejoin it with {REJOIN_DAG}"
            lines.append(f"{state.member:<14} {where}  {what}")
        if topology.split_brain:
            lines.append("SPLIT BRAIN: " + topology.sentence)
        elif topology.primary is None:
            lines.append(f"no writable primary: {topology.sentence} Fail over with {FAILOVER_DAG}.")
        return lines

    def stop(self) -> None:
        for node in reversed(list(self.nodes.values())):
            with contextlib.suppress(ClusterError):
                node.stop()
