"""What a PostgreSQL server leaves behind when it dies without shutting down, and its removal.

A server that shuts down (any ``pg_ctl stop`` mode) removes its own. One that is SIGKILLed (a crash drill, a
fence, a killed test run) leaves backends that have not noticed yet (`end_processes_in`) and, until the same
data directory is started again:

- its System V header segment (56 bytes; ``postmaster.pid`` line 7 holds its key and id), which names
- its dynamic shared memory control segment ``/dev/shm/PostgreSQL.<handle>``, which lists
- the segments it still owned (e.g. the statistics area: pinned, so possibly mapped by no process at all).

`release_server_ipc` removes those of one dead server (found through its data directory); `orphan_segments`
finds ``/dev/shm/PostgreSQL.*`` that belong to no running server: mapped by no process and listed by no
mapped control segment. Layouts are PostgreSQL 15's (``PGShmemHeader``, ``dsm_control_header``) and are
checked by their magic numbers; what does not match is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import struct
import time
from dataclasses import dataclass
from pathlib import Path

SHM = Path("/dev/shm")
SEGMENT_PREFIX = "PostgreSQL."
PG_SHMEM_MAGIC = 679834894  # PGShmemHeader.magic
DSM_CONTROL_MAGIC = 0x9A503D32  # dsm_control_header.magic
_HEADER = struct.Struct("=iiQQI")  # magic, creatorPID, totalsize, freeoffset, dsm_control
_CONTROL = struct.Struct("=III")  # magic, nitems, maxitems (items start at 16)
_ITEM = struct.Struct("=II")  # handle, refcnt (then first_page, npages, impl_private, pinned: 40 bytes)
_ITEM_STRIDE = 40
_SHM_RDONLY = 0o10000
_IPC_RMID = 0


@dataclass(frozen=True)
class SysvSegment:
    shmid: int
    nattch: int
    creator_pid: int
    last_pid: int


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def processes_in(data_dir: Path) -> list[int]:
    """Live processes working in ``data_dir``: its postmaster and children, or backends a killed one left."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/cwd") == str(data_dir) and _alive(int(entry)):
                    found.append(int(entry))
    return found


def end_processes_in(data_dir: Path, *, timeout: float = 10) -> None:
    """SIGKILL whatever still works in ``data_dir`` (call it once its postmaster is stopped or dead)."""
    deadline = time.monotonic() + timeout
    while (left := processes_in(Path(data_dir))) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def sysv_segments() -> dict[int, SysvSegment]:
    """Every System V shared memory segment of the machine, by id (from /proc/sysvipc/shm)."""
    found: dict[int, SysvSegment] = {}
    try:
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) >= 7:
            found[int(fields[1])] = SysvSegment(int(fields[1]), int(fields[6]), int(fields[4]), int(fields[5]))
    return found


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
    libc.shmdt.argtypes = (ctypes.c_void_p,)
    libc.shmctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
    return libc


def sysv_control_handle(shmid: int) -> int | None:
    """The DSM control handle written in a PostgreSQL header segment; None if it is not one (or is gone)."""
    libc = _libc()
    address = libc.shmat(shmid, None, _SHM_RDONLY)
    if address in (None, ctypes.c_void_p(-1).value):
        return None
    try:
        magic, _, _, _, handle = _HEADER.unpack(ctypes.string_at(address, _HEADER.size))
    finally:
        libc.shmdt(address)
    return handle if magic == PG_SHMEM_MAGIC else None


def remove_sysv(shmid: int) -> bool:
    return _libc().shmctl(shmid, _IPC_RMID, None) == 0


def control_items(name: str) -> list[str] | None:
    """The segments a DSM control segment lists (still referenced); None if ``name`` is not a control segment."""
    try:
        with open(SHM / name, "rb") as f:
            head = f.read(16)
            if len(head) < 16:
                return None
            magic, nitems, maxitems = _CONTROL.unpack_from(head)
            if magic != DSM_CONTROL_MAGIC or nitems > maxitems:
                return None
            body = f.read(_ITEM_STRIDE * nitems)
    except OSError:
        return None
    items = []
    for index in range(min(nitems, len(body) // _ITEM_STRIDE)):
        handle, refcnt = _ITEM.unpack_from(body, index * _ITEM_STRIDE)
        if refcnt > 0:
            items.append(f"{SEGMENT_PREFIX}{handle}")
    return items


def mapped_segments() -> set[str]:
    """The ``/dev/shm/PostgreSQL.*`` names some live process maps (read from /proc/*/maps)."""
    marker = f"{SHM}/{SEGMENT_PREFIX}"
    found: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/maps") as maps:
                for line in maps:
                    at = line.find(marker)
                    if at >= 0:
                        found.add(line[at + len(str(SHM)) + 1 :].split()[0])
        except OSError:
            continue
    return found


def live_segments() -> set[str]:
    """Segments some running server still uses: mapped, or listed by a mapped control segment."""
    mapped = mapped_segments()
    live = set(mapped)
    for name in mapped:
        live.update(control_items(name) or ())
    return live


def orphan_segments(*, min_age: float = 60.0) -> list[str]:
    """``/dev/shm/PostgreSQL.*`` that belong to no running server, older than ``min_age`` seconds (a segment
    is created a moment before it is mapped and listed)."""
    try:
        names = sorted(n for n in os.listdir(SHM) if n.startswith(SEGMENT_PREFIX))
    except OSError:
        return []
    live = live_segments()
    now = time.time()
    orphans = []
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            if name not in live and now - (SHM / name).stat().st_ctime >= min_age:
                orphans.append(name)
    return orphans


def orphan_sysv_headers() -> list[int]:
    """PostgreSQL header segments attached by nobody whose creator and last user are dead."""
    return [
        seg.shmid for seg in sysv_segments().values()
        if seg.nattch == 0 and not _alive(seg.creator_pid) and not _alive(seg.last_pid)
        and sysv_control_handle(seg.shmid) is not None
    ]


def remove_segments(names: list[str]) -> list[str]:
    removed = []
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            (SHM / name).unlink()
            removed.append(name)
    return removed


def server_sysv_id(data_dir: Path) -> int | None:
    """The System V header segment id ``postmaster.pid`` records (line 7: key, id); None without one."""
    try:
        lines = (Path(data_dir) / "postmaster.pid").read_text().splitlines()
        return int(lines[6].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def release_server_ipc(data_dir: Path) -> list[str]:
    """Remove what the dead server of ``data_dir`` left in shared memory (nothing a live process still maps;
    nothing while its postmaster lives). Returns what was removed: segment names and ``sysv:<id>``."""
    data_dir = Path(data_dir)
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return []
    shmid = server_sysv_id(data_dir)
    if _alive(pid) or shmid is None:
        return []
    segment = sysv_segments().get(shmid)
    handle = sysv_control_handle(shmid) if segment else None
    if segment is None or handle is None:
        return []
    removed: list[str] = []
    control = f"{SEGMENT_PREFIX}{handle}"
    mapped = mapped_segments()
    candidates = [control, *(control_items(control) or ())]
    removed += remove_segments([name for name in candidates if name not in mapped])
    if segment.nattch == 0 and remove_sysv(shmid):
        removed.append(f"sysv:{shmid}")
    return removed
