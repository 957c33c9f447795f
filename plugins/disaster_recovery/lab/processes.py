"""The lab's long-running processes, each the leader of its own session and process group.

`ProcessGroups(run_dir)` starts a component (an Airflow service, the notification sinks) with
`start_new_session`, so the leader's pid is also the id of its session and of its process group.
`<name>.pid` in `run_dir` records that id, with the boot and the leader's start time (both kernel
counts, immune to clock changes): a file from an earlier boot, or whose leader pid now belongs to
another process, is ignored, so a stale file never gets someone else's processes signalled.
`<name>.log` collects the component's output.

A component's members are found through /proc, not through its leader: every live process whose
process group or session is that id. The session matters because Airflow puts each task runner in a
process group of its own, inside the scheduler's session. So a component whose leader was killed
(`kill -9`) is still found, and ended, with what it had started: LocalExecutor workers and their
task runners, the log server. Zombies do not count: they run nothing, and their parent or init reaps
them.

`stop` sends SIGTERM to the leader first and gives it `timeout` seconds: Airflow's components shut
their own children down in order when their main process is told to stop (the scheduler's
LocalExecutor lets running tasks finish meanwhile). What is left then gets SIGTERM (for a leader still
running, a second one: Airflow's components take it as "exit now"), a short grace, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

STRAGGLER_GRACE = 2.0  # seconds the leftovers of an ended leader get between SIGTERM and SIGKILL
KILL_WAIT = 5.0  # seconds SIGKILLed processes get to disappear before stop() gives up
POLL = 0.05


class _Stat(NamedTuple):
    state: str
    pgrp: int
    session: int
    start_ticks: int  # clock ticks after boot


def _stat(pid: int | str) -> _Stat | None:
    """A process's state, process group, session and start time from /proc; None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # the command name in (...) may contain spaces
    return _Stat(fields[0].decode(), int(fields[2]), int(fields[3]), int(fields[19]))


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def group_members(pgid: int) -> dict[int, int]:
    """Live processes (zombies excluded) in process group or session `pgid`: {pid: its process group}."""
    found = {}
    for entry in os.listdir("/proc"):
        stat = _stat(entry) if entry.isdigit() else None
        if stat is not None and stat.state != "Z" and pgid in (stat.pgrp, stat.session):
            found[int(entry)] = stat.pgrp
    return found


def _leader_alive(pgid: int) -> bool:
    stat = _stat(pgid)
    return stat is not None and stat.state != "Z" and stat.pgrp == pgid


def _reap(pid: int) -> None:
    """Reap `pid` if it is a child of ours that has ended (else nobody would)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _wait(done: Callable[[], bool], timeout: float, *, reap: int) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(reap)
        if done():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)


def _signal_groups(groups: set[int], sig: signal.Signals) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)


class ProcessGroups:
    """Named process groups whose ids are kept in `<run_dir>/<name>.pid`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)

    def pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def pgid(self, name: str) -> int | None:
        """The recorded group id; None without a record, or for a stale one (see the module's doc)."""
        try:
            record = json.loads(self.pid_path(name).read_text())
        except (FileNotFoundError, ValueError):
            return None
        if isinstance(record, int):
            return record  # a plain pid file, as the lab wrote before it recorded boot and start time
        try:
            pgid, boot_id, start_ticks = int(record["pgid"]), record["boot_id"], record["start_ticks"]
        except (TypeError, KeyError, ValueError):
            return None
        if boot_id != _boot_id():
            return None
        leader = _stat(pgid)
        if leader is not None and start_ticks is not None and leader.start_ticks != start_ticks:
            return None  # the leader's pid now belongs to another process
        return pgid

    def members(self, name: str) -> list[int]:
        """Pids of the live processes of `name`'s group and session (its leader may be among them or dead)."""
        pgid = self.pgid(name)
        return sorted(group_members(pgid)) if pgid is not None else []

    def alive(self, name: str) -> bool:
        """Whether `name`'s leader runs. A group whose leader died is not alive, though `members` may remain."""
        pgid = self.pgid(name)
        return pgid is not None and _leader_alive(pgid)

    def spawn(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path | None = None) -> int:
        """Start `argv` as the leader of a new session and group named `name`; returns the group id.

        Refuses while any process of the previous group named `name` lives: `stop` it first.
        """
        if left := self.members(name):
            raise RuntimeError(f"{name} still has processes {left}: stop it before starting it again")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path(name).open("ab") as out:
            proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=cwd, start_new_session=True,
            )
        leader = _stat(proc.pid)  # None only if it has already exited
        record = {"pgid": proc.pid, "boot_id": _boot_id(), "start_ticks": leader.start_ticks if leader else None}
        self.pid_path(name).write_text(json.dumps(record) + "\n")
        return proc.pid

    def stop(self, name: str, *, timeout: float = 10.0) -> list[int]:
        """End every process of `name`'s group and session; returns the pids it found running.

        SIGTERM to the leader, up to `timeout` seconds for it to exit; then SIGTERM to what is left
        (all of it when the leader was already dead), STRAGGLER_GRACE seconds, SIGKILL.
        Raises RuntimeError if a process outlives SIGKILL.
        """
        pgid = self.pgid(name)
        found = sorted(group_members(pgid)) if pgid is not None else []
        if pgid is not None and found:
            if _leader_alive(pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pgid, signal.SIGTERM)
                _wait(lambda: not _leader_alive(pgid), timeout, reap=pgid)
            for sig, wait in ((signal.SIGTERM, STRAGGLER_GRACE), (signal.SIGKILL, KILL_WAIT)):
                if not (left := group_members(pgid)):
                    break
                _signal_groups(set(left.values()), sig)
                _wait(lambda: not group_members(pgid), wait, reap=pgid)
            if left := sorted(group_members(pgid)):
                raise RuntimeError(f"{name}: processes {left} of group {pgid} outlived SIGKILL")
        self.pid_path(name).unlink(missing_ok=True)
        return found
