"""Subprocess plumbing for the backup engines: big pipes, stderr drained on a thread, server-user spawns.

The PostgreSQL client tools (pg_basebackup, pg_dump, pg_restore) run as ourselves; whatever writes into
a data directory (tar extraction, pg_verifybackup, pg_amcheck on a scratch cluster) runs as the server OS
user when we are root, like ``disaster_recovery.postgres.cluster.run_server_command``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import subprocess
import threading
from collections import deque

from disaster_recovery.postgres.cluster import SERVER_OS_USER

F_SETPIPE_SZ = 1031  # Linux fcntl; not exported by the fcntl module before Python 3.10 on every build
PIPE_BYTES = 1024 * 1024
READ_BYTES = 1024 * 1024


def enlarge_pipe(fd: int, size: int = PIPE_BYTES) -> int:
    """Grow a pipe's kernel buffer (reads then return up to ``size`` bytes, not 64 KiB); the size got."""
    with contextlib.suppress(OSError, AttributeError):
        return fcntl.fcntl(fd, F_SETPIPE_SZ, size)
    # Not allowed (pipe-max-size) or not Linux: keep the default.
    return 0


def server_user_kwargs() -> tuple[dict, dict]:
    """(Popen kwargs, env additions) to run as the server OS user when we are root; empty otherwise."""
    if os.geteuid() != 0:
        return {}, {}
    user = pwd.getpwnam(SERVER_OS_USER)
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}, {"HOME": user.pw_dir}


class StderrTail:
    """Drains a process's stderr on a thread (so it can never fill and block the producer) and keeps
    the whole text up to ``limit`` lines (the last ones)."""

    def __init__(self, stream, *, limit: int = 400) -> None:
        self._lines: deque[str] = deque(maxlen=limit)
        self._stream = stream
        self._thread = threading.Thread(target=self._drain, daemon=True, name="stderr-drain")
        self._thread.start()

    def _drain(self) -> None:
        for raw in iter(self._stream.readline, b""):
            self._lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        with contextlib.suppress(OSError):
            self._stream.close()

    def text(self, *, timeout: float = 10) -> str:
        self._thread.join(timeout)
        return "\n".join(self._lines)

    def last(self, count: int = 8, *, timeout: float = 10) -> str:
        self._thread.join(timeout)
        return " | ".join(list(self._lines)[-count:])


def stop_process(proc: subprocess.Popen, *, timeout: float = 10) -> None:
    """Terminate a child we started (then kill it) and reap it; a no-op once it has exited."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout)
