"""One sweeper for everything a test session makes, which also clears what a killed session left behind.

Each pytest session writes ``$TMPDIR/dr-test-sessions-<uid>/<pid>.json``: its pid with the pid's start time
and the boot id (a reused pid is not the session), the folders it owns outright (the session folder, the
scratch folder on /dev/shm), the clusters it made (data directory, port) and the shared memory their servers
used. The record is rewritten whenever something is registered, so a session killed at any point still names
all of it. At start, every record whose owner is dead is swept: postmasters of its clusters stopped, any
process started with its environment (``DR_TEST_SESSION_DIR=<its folder>``) or working in its folders ended,
the shared memory its servers left released, its folders removed. Nothing else is touched: a live session's
record, the developer's lab and other agents' clusters are not in a dead record; shared memory of unknown
origin goes only when no running server can own it (see ``disaster_recovery.postgres.ipc``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from disaster_recovery.postgres import ipc

TMP_ROOT = tempfile.gettempdir()  # the machine's temp folder (support.py then points this process's elsewhere)
REGISTRY = Path(TMP_ROOT) / f"dr-test-sessions-{os.getuid()}"
SESSION_ENV = "DR_TEST_SESSION_DIR"
SCRATCH_PREFIX = "dr-verify-"
STALE_SCRATCH_SECONDS = 3600


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def start_ticks(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != "Z"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def ancestors(pid: int) -> set[int]:
    chain = {pid}
    while (fields := _stat_fields(pid)) and int(fields[1]) > 1:
        pid = int(fields[1])
        chain.add(pid)
    return chain


def inside(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def sweepable(folder: str) -> bool:
    """Only folders the suite itself makes: <tmp or /dev/shm>/dr-tests-*, never anything else a record names."""
    path = Path(folder)
    return path.is_absolute() and path.name.startswith("dr-tests-") and str(path.parent) in (TMP_ROOT, str(ipc.SHM))


@dataclass
class SessionRecord:
    pid: int
    start: str | None
    boot: str
    folders: list[str]
    clusters: dict[str, int] = field(default_factory=dict)  # data directory -> port
    segments: list[str] = field(default_factory=list)  # /dev/shm names its servers used
    sysv: list[int] = field(default_factory=list)  # their System V header ids

    def owner_alive(self) -> bool:
        return self.boot == boot_id() and self.start is not None and start_ticks(self.pid) == self.start

    @property
    def marker(self) -> bytes:
        return f"{SESSION_ENV}={self.folders[0]}".encode()


def processes_of(record: SessionRecord, *, spare: set[int] = frozenset()) -> dict[int, str]:
    """Live processes started with the session's environment or working in its folders: {pid: command}."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        pid = int(entry)
        if pid in spare or not alive(pid):
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            ours = inside(cwd, record.folders) or record.marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if ours:
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        except OSError:
            continue
    return found


def stop_server(data_dir: str) -> list[str]:
    """Stop the postmaster of ``data_dir`` (immediate shutdown, which releases its shared memory) or kill it
    and its children, then release what a killed one left."""
    from disaster_recovery.postgres.cluster import ClusterError, pg_bindir, run_server_command

    done = []
    path = Path(data_dir)
    try:
        pid = int((path / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        pid = None
    if pid and alive(pid):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/cwd") != str(path):
                pid = None  # a reused pid: not this server
    if pid and alive(pid):
        with contextlib.suppress(ClusterError, OSError):
            run_server_command([str(pg_bindir() / "pg_ctl"), "-D", data_dir, "-m", "immediate", "-w", "-t", "20",
                                "stop"], check=False, timeout=30)
        done.append(f"stopped the postmaster {pid} of {data_dir}")
    ipc.end_processes_in(path)
    released = ipc.release_server_ipc(path)
    if released:
        done.append(f"released {', '.join(released)} of {data_dir}")
    return done


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def end_processes(pids: dict[int, str], *, grace: float = 5) -> list[str]:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return [f"ended {pid}: {command}" for pid, command in pids.items()]


def release_recorded(record: SessionRecord) -> list[str]:
    live = ipc.live_segments()
    removed = ipc.remove_segments([name for name in record.segments if name not in live])
    segments = ipc.sysv_segments()
    for shmid in record.sysv:
        if shmid in segments and segments[shmid].nattch == 0 and ipc.remove_sysv(shmid):
            removed.append(f"sysv:{shmid}")
    return [f"released {name}" for name in removed]


def clear_session(record: SessionRecord, *, spare: set[int]) -> list[str]:
    """Everything of a session (dead, or ourselves at the end): servers, processes, shared memory, folders."""
    folders = [f for f in record.folders if sweepable(f)]
    record = SessionRecord(**{**asdict(record), "folders": folders or ["/nonexistent-dr-tests"]})
    done = []
    data_dirs = {d for d in record.clusters if inside(d, folders)}
    for folder in folders:
        for pidfile in Path(folder).rglob("postmaster.pid") if Path(folder).is_dir() else ():
            data_dirs.add(str(pidfile.parent))
    for data_dir in sorted(data_dirs):
        done += stop_server(data_dir)
    done += end_processes(processes_of(record, spare=spare))
    for data_dir in sorted(data_dirs):
        done += [f"released {name}" for name in ipc.release_server_ipc(Path(data_dir))]
    done += release_recorded(record)
    for folder in folders:
        if Path(folder).exists():
            shutil.rmtree(folder, ignore_errors=True)
            done.append(f"removed {folder}")
    return done


def sweep_strays() -> list[str]:
    """Shared memory no running server can own, and old dr-verify-* scratch folders on /dev/shm nobody uses."""
    done = [f"removed /dev/shm/{name} (no running server owns it)"
            for name in ipc.remove_segments(ipc.orphan_segments(min_age=60))]
    for shmid in ipc.orphan_sysv_headers():
        if ipc.remove_sysv(shmid):
            done.append(f"removed System V segment {shmid} (a dead server's header)")
    used = {cwd for cwd in map(_cwd, map(int, filter(str.isdigit, os.listdir("/proc")))) if cwd}
    with contextlib.suppress(OSError):
        for folder in ipc.SHM.glob(f"{SCRATCH_PREFIX}*"):
            old = time.time() - folder.stat().st_mtime > STALE_SCRATCH_SECONDS
            if old and not any(inside(cwd, [str(folder)]) for cwd in used):
                shutil.rmtree(folder, ignore_errors=True)
                done.append(f"removed {folder} (an abandoned scratch restore)")
    return done


@contextlib.contextmanager
def registry_lock():
    REGISTRY.mkdir(mode=0o700, exist_ok=True)
    with open(REGISTRY / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sweep_dead_sessions() -> list[str]:
    """Clear every registered session whose owner is dead, then the strays (call it under ``registry_lock``)."""
    done: list[str] = []
    spare = ancestors(os.getpid())
    for path in sorted(REGISTRY.glob("*.json")):
        try:
            record = SessionRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if record.pid == os.getpid() or record.owner_alive():
            continue
        done += [f"[session {record.pid}] {line}" for line in clear_session(record, spare=spare)]
        path.unlink(missing_ok=True)
    return done + sweep_strays()


class Sweeper:
    """This session's record; ``begin`` sweeps dead sessions first, ``finish`` clears this one."""

    def __init__(self, folders: list[Path]) -> None:
        self.record = SessionRecord(pid=os.getpid(), start=start_ticks(os.getpid()), boot=boot_id(),
                                    folders=[str(Path(f).absolute()) for f in folders])
        self.path = REGISTRY / f"{os.getpid()}.json"
        self.started_at = time.time()
        self.outside: set[str] = set()  # clusters made outside our folders: never touched, checked at the end

    def save(self) -> None:
        REGISTRY.mkdir(mode=0o700, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self.record)))
        tmp.replace(self.path)

    def begin(self) -> list[str]:
        with registry_lock():
            done = sweep_dead_sessions()
            self.save()
        return done

    def owns(self, path: Path | str) -> bool:
        return inside(str(path), self.record.folders)

    def add_cluster(self, cluster) -> None:
        data_dir = str(cluster.data_dir)
        if not self.owns(data_dir):
            self.outside.add(data_dir)
        elif data_dir not in self.record.clusters or (cluster.port and not self.record.clusters[data_dir]):
            self.record.clusters[data_dir] = cluster.port  # (host control makes port-0 handles of members)
            self.save()

    def add_server_memory(self, cluster) -> None:
        """Note the shared memory of a cluster that just started (released after a kill of this session)."""
        if not self.owns(cluster.data_dir) or (shmid := ipc.server_sysv_id(cluster.data_dir)) is None:
            return
        handle = ipc.sysv_control_handle(shmid)
        names = [f"{ipc.SEGMENT_PREFIX}{handle}", *(ipc.control_items(f"{ipc.SEGMENT_PREFIX}{handle}") or ())] \
            if handle is not None else []
        changed = shmid not in self.record.sysv or any(n not in self.record.segments for n in names)
        self.record.sysv = sorted({*self.record.sysv, shmid})
        self.record.segments = sorted({*self.record.segments, *names})
        if changed:
            self.save()

    def finish(self) -> list[str]:
        with registry_lock():
            done = clear_session(self.record, spare=ancestors(os.getpid()))
            self.path.unlink(missing_ok=True)
        return done
