"""What of this session is still there: the end-of-session check.

Run twice: by tests/test_session_end.py, the last test of every full run (session-scoped fixtures still up:
their clusters are expected), and by conftest's ``pytest_sessionfinish`` once every fixture was torn down and
every registered cluster destroyed, before the sweeper clears the session (``final``: then nothing at all may
be left, and the run fails if something was; the sweeper removes it anyway).
"""

from __future__ import annotations

import os
from pathlib import Path

from disaster_recovery.postgres import ipc
from tests.sweeper import SCRATCH_PREFIX, Sweeper, alive, ancestors, processes_of

# multiprocessing's own temp folders, which a process removes as it exits: the lab tests SIGKILL a scheduler
# on purpose (a crash drill), and a SIGKILLed process cannot. The sweeper removes them with the session.
KILLED_PROCESS_TEMP = "pymp-"


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _postmaster(data_dir: str) -> int | None:
    try:
        pid = int((Path(data_dir) / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None
    return pid if alive(pid) and _cwd(pid) == data_dir else None


def _started_by(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def listening_ports(pid: int) -> list[str]:
    """TCP ports process ``pid`` listens on (its socket inodes matched against /proc/net/tcp and tcp6)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:
                ports.append(str(int(fields[1].rsplit(":", 1)[1], 16)))
    return sorted(set(ports))


def leftovers(sweeper: Sweeper, *, held: set[Path], scratch: Path, temp: Path, final: bool) -> list[str]:
    """One line per thing of ours still there. ``held``: data directories of session-scoped clusters, expected
    running unless ``final``."""
    record = sweeper.record
    held_dirs = set() if final else {str(d) for d in held}
    spare = ancestors(os.getpid())
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    spare |= {pid for pid in pids if _cwd(pid) in held_dirs}
    found = []
    for data_dir in sorted(record.clusters):
        if data_dir not in held_dirs and (pid := _postmaster(data_dir)):
            found.append(f"cluster {data_dir} (port {record.clusters[data_dir]}) still runs: postmaster {pid}")
    for data_dir in sorted(sweeper.outside):  # e.g. a lab's: ours only if this session started its server
        if (pid := _postmaster(data_dir)) and _started_by(pid, record.marker):
            found.append(f"cluster {data_dir}, made outside the session's folders, still runs: postmaster {pid}")
    for pid, command in sorted(processes_of(record, spare=spare).items()):
        found.append(f"process {pid} of this session still runs: {command}")
    ports = listening_ports(os.getpid())
    if ports:
        found.append(f"this pytest process still listens on TCP port(s) {', '.join(ports)} (a server not shut down)")
    live = set() if final else ipc.live_segments()
    for name in record.segments:
        if (ipc.SHM / name).exists() and name not in live:
            found.append(f"/dev/shm/{name} of one of this session's servers is left behind")
    segments = ipc.sysv_segments()
    for shmid in record.sysv:
        if shmid in segments and (final or segments[shmid].nattch == 0):
            found.append(f"System V segment {shmid} of one of this session's servers is left behind")
    if scratch.is_dir():
        found += [f"scratch restore folder {p} is left behind" for p in sorted(scratch.glob(f"{SCRATCH_PREFIX}*"))]
    if temp.is_dir():
        found += [f"temp file or folder {p} is left behind" for p in sorted(temp.iterdir())
                  if not p.name.startswith(KILLED_PROCESS_TEMP)]
    return found
