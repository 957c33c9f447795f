"""ProcessGroups with real child processes: groups are found and ended through /proc, leader or not."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from disaster_recovery.lab.processes import ProcessGroups, group_members

# A leader that starts one child (optionally in a process group of its own inside the session, as
# Airflow does with its task runners), writes the child's pid, then sleeps. With `stubborn`, the child
# (or, with `stubborn_leader`, the leader) notes each SIGTERM in <dir>/terms and carries on.
FAMILY = textwrap.dedent(
    """
    import os, signal, subprocess, sys, time
    folder, mode = sys.argv[1], sys.argv[2]

    def stubborn():
        def note(*_):
            with open(os.path.join(folder, "terms"), "a") as fh:
                fh.write(f"{os.getpid()}\\n")
        signal.signal(signal.SIGTERM, note)

    if mode == "child":
        if "own-group" in sys.argv:
            os.setpgid(0, 0)
        if "stubborn" in sys.argv:
            stubborn()
        with open(os.path.join(folder, "child.pid.tmp"), "w") as fh:
            fh.write(str(os.getpid()))
        os.rename(os.path.join(folder, "child.pid.tmp"), os.path.join(folder, "child.pid"))
    else:
        if "stubborn-leader" in sys.argv:
            stubborn()
        subprocess.Popen([sys.executable, __file__, folder, "child", *sys.argv[3:]])
    while True:
        time.sleep(0.1)
    """
)


@pytest.fixture
def groups(tmp_path) -> ProcessGroups:
    groups = ProcessGroups(tmp_path / "run")
    yield groups
    for pid_file in groups.run_dir.glob("*.pid"):
        groups.stop(pid_file.stem, timeout=1)


def start_family(groups: ProcessGroups, tmp_path: Path, name: str, *flags: str) -> tuple[int, int]:
    """Spawn a FAMILY as `name`; (group id, child pid) once the child runs."""
    script = tmp_path / "family.py"
    script.write_text(FAMILY)
    pgid = groups.spawn(name, [sys.executable, str(script), str(tmp_path), "leader", *flags], env=dict(os.environ))
    child_pid = tmp_path / "child.pid"
    deadline = time.monotonic() + 30
    while not child_pid.exists():
        assert time.monotonic() < deadline, groups.log_path(name).read_text()
        time.sleep(0.05)
    return pgid, int(child_pid.read_text())


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_leader(pgid: int) -> None:
    os.kill(pgid, signal.SIGKILL)
    os.waitpid(pgid, 0)  # the leader is our child: reap it, as the lab's init would


def test_a_group_is_found_through_its_members(groups, tmp_path):
    pgid, child = start_family(groups, tmp_path, "family")
    assert groups.pgid("family") == pgid
    assert groups.alive("family")
    assert groups.members("family") == sorted([pgid, child])


def test_stop_ends_the_leader_and_its_child(groups, tmp_path):
    pgid, child = start_family(groups, tmp_path, "family")
    assert groups.stop("family", timeout=10) == sorted([pgid, child])
    assert not running(pgid) and not running(child)
    assert not groups.pid_path("family").exists()
    assert groups.stop("family") == []


def test_a_killed_leaders_child_is_still_found_and_stopped(groups, tmp_path):
    pgid, child = start_family(groups, tmp_path, "family")
    kill_leader(pgid)
    assert not groups.alive("family")
    assert groups.members("family") == [child]
    assert groups.stop("family", timeout=10) == [child]
    assert not running(child)
    assert group_members(pgid) == {}


def test_a_member_in_a_process_group_of_its_own_is_found_through_the_session(groups, tmp_path):
    pgid, child = start_family(groups, tmp_path, "family", "own-group")
    kill_leader(pgid)
    assert group_members(pgid) == {child: child}
    assert groups.stop("family", timeout=10) == [child]
    assert not running(child)


def test_a_child_ignoring_sigterm_is_killed_once_its_leader_is_gone(groups, tmp_path):
    pgid, child = start_family(groups, tmp_path, "family", "stubborn")
    assert groups.stop("family", timeout=10) == sorted([pgid, child])
    assert not running(child)
    assert str(child) in (tmp_path / "terms").read_text().split()  # it was asked first


def test_a_leader_ignoring_sigterm_is_killed_after_the_timeout(groups, tmp_path):
    pgid, child = start_family(groups, tmp_path, "family", "stubborn-leader")
    assert groups.stop("family", timeout=0.5) == sorted([pgid, child])
    assert not running(pgid) and not running(child)
    assert str(pgid) in (tmp_path / "terms").read_text().split()


def test_spawn_refuses_beside_the_leftovers_of_a_dead_leader(groups, tmp_path):
    pgid, child = start_family(groups, tmp_path, "family")
    kill_leader(pgid)
    with pytest.raises(RuntimeError, match="stop it before starting it again"):
        groups.spawn("family", [sys.executable, "-c", "pass"], env=dict(os.environ))
    assert groups.stop("family", timeout=10) == [child]
    (tmp_path / "child.pid").unlink()
    new_pgid, new_child = start_family(groups, tmp_path, "family")
    assert groups.alive("family") and new_pgid != pgid and running(new_child)


def test_a_record_naming_someone_elses_process_is_ignored(groups):
    """A pid file from an earlier boot, or whose leader pid was reused, must never get a signal sent."""
    groups.run_dir.mkdir(parents=True)
    me = os.getpid()
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    for record in ({"pgid": me, "boot_id": "an-earlier-boot", "start_ticks": None},
                   {"pgid": me, "boot_id": boot_id, "start_ticks": 1}):
        groups.pid_path("stale").write_text(json.dumps(record))
        assert groups.pgid("stale") is None
        assert groups.members("stale") == [] and not groups.alive("stale")
        assert groups.stop("stale") == []
    assert running(me)


def test_a_plain_pid_file_is_read_as_the_group_id(groups, tmp_path):
    pgid, child = start_family(groups, tmp_path, "family")
    groups.pid_path("family").write_text(f"{pgid}\n")
    assert groups.pgid("family") == pgid and groups.alive("family")
    assert groups.stop("family", timeout=10) == sorted([pgid, child])
