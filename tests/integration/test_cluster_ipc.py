"""Shared memory of real servers (disaster_recovery.postgres.ipc): a running server's is never an orphan, and a
SIGKILLed one's is gone once the cluster is destroyed."""

from __future__ import annotations

import pytest

from disaster_recovery.postgres import ipc
from tests.support import drop_cluster, make_cluster

pytestmark = pytest.mark.integration


def _memory(cluster) -> tuple[int, list[str]]:
    shmid = ipc.server_sysv_id(cluster.data_dir)
    control = f"{ipc.SEGMENT_PREFIX}{ipc.sysv_control_handle(shmid)}"
    return shmid, [control, *(ipc.control_items(control) or ())]


def test_a_running_servers_memory_is_never_an_orphan():
    cluster = make_cluster("ipc-live")
    try:
        shmid, names = _memory(cluster)
        assert len(names) >= 2  # the control segment and what it lists (the statistics area, pinned)
        assert all((ipc.SHM / name).exists() for name in names)
        assert set(names) <= ipc.live_segments()
        assert not set(names) & set(ipc.orphan_segments(min_age=0))
        assert shmid not in ipc.orphan_sysv_headers()
        assert ipc.release_server_ipc(cluster.data_dir) == []  # its postmaster lives: nothing is touched
        assert all((ipc.SHM / name).exists() for name in names)
    finally:
        drop_cluster(cluster)
    assert not any((ipc.SHM / name).exists() for name in names)  # a clean stop releases its own


def test_destroying_a_killed_cluster_releases_what_its_server_left():
    cluster = make_cluster("ipc-killed")
    shmid, names = _memory(cluster)
    cluster.kill()
    assert all((ipc.SHM / name).exists() for name in names) and shmid in ipc.sysv_segments()
    drop_cluster(cluster)
    assert not any((ipc.SHM / name).exists() for name in names)
    assert shmid not in ipc.sysv_segments()
