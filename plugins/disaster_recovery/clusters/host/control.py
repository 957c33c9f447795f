"""Control of a member's server on this host: status, stop/start, lasting fence, rewind, clone, WAL reading.

Everything here acts on a data directory through the PostgreSQL server binaries, as the server's OS
user when we are root (``postgres.cluster.run_server_command``). It is what makes a fence last: with
``standby.signal`` and a ``primary_conninfo`` in its data directory, the old primary can only ever come
back in recovery — whoever starts it, pg_ctl by hand, the lab, or a reboot — and ``dr_fence.json`` says
why, so our own code never picks it as a candidate until a rejoin clears the marker.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from disaster_recovery.clusters.host.recovery_conf import with_standby_settings
from disaster_recovery.clusters.state import FENCE_MARKER, FenceMarker, parse_fence_marker
from disaster_recovery.postgres.cluster import (
    ClusterError,
    LocalCluster,
    give_to_server_user,
    pg_bindir,
    pid_alive,
    run_server_command,
)

STANDBY_SIGNAL = "standby.signal"
AUTO_CONF = "postgresql.auto.conf"


class HostControlError(RuntimeError):
    """A host-level action on a member failed; the message names the member, the command and why."""


@dataclass(frozen=True, kw_only=True)
class ServerStatus:
    running: bool
    pid: int | None
    cluster_state: str | None  # pg_controldata's "Database cluster state"
    standby_signal: bool
    fence: FenceMarker | None

    def sentence(self) -> str:
        what = f"running (pid {self.pid})" if self.running else "stopped"
        extra = f", control file says '{self.cluster_state}'" if self.cluster_state else ""
        fenced = ", fenced" if self.fence else ""
        return f"{what}{extra}{', standby.signal present' if self.standby_signal else ''}{fenced}"


class LocalHost:
    """A member whose data directory is on this machine."""

    def __init__(self, *, member: str, data_directory: Path, bindir: Path | None = None) -> None:
        self.member = member
        self.data_dir = Path(data_directory)
        self.bindir = Path(bindir) if bindir else pg_bindir()
        # LocalCluster knows how to start and stop a server in a folder; port and password are unused here.
        self._server = LocalCluster(data_dir=self.data_dir, port=0, password="", bindir=self.bindir)

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    def _fail(self, action: str, exc: BaseException) -> HostControlError:
        return HostControlError(f"{action} of member {self.member} ({self.data_dir}) failed: {exc}")

    # -- reading -------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def controldata(self) -> dict[str, str]:
        proc = run_server_command([self._bin("pg_controldata"), "-D", str(self.data_dir)], check=False, timeout=30)
        if proc.returncode != 0:
            raise HostControlError(f"pg_controldata of member {self.member} failed: {proc.stderr.strip()}")
        fields = {}
        for line in proc.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        return fields

    def fence_marker(self) -> FenceMarker | None:
        path = self.data_dir / FENCE_MARKER
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        marker, _problem = parse_fence_marker(text)
        return marker

    def status(self) -> ServerStatus:
        if not self.exists():
            raise HostControlError(f"member {self.member}: {self.data_dir} is not a PostgreSQL data directory")
        running = self._server.is_running()
        try:
            state = self.controldata().get("Database cluster state")
        except HostControlError:
            state = None
        return ServerStatus(
            running=running,
            pid=self._server.postmaster_pid() if running else None,
            cluster_state=state,
            standby_signal=(self.data_dir / STANDBY_SIGNAL).exists(),
            fence=self.fence_marker(),
        )

    # -- process -------------------------------------------------------------------------------------
    def stop(self, *, mode: str = "fast", timeout: float = 60) -> None:
        try:
            self._server.stop(mode=mode, timeout=timeout)
        except (ClusterError, subprocess.TimeoutExpired) as exc:
            raise self._fail(f"pg_ctl stop -m {mode}", exc) from exc
        if self._server.is_running():
            raise HostControlError(f"member {self.member} is still running after pg_ctl stop -m {mode}")

    def kill(self) -> None:
        """SIGKILL the postmaster (fencing a server that is running but does not answer)."""
        pid = self._server.postmaster_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._server._wait_postmaster_gone()

    def server_processes(self) -> list[int]:
        """Every process working in this data directory (PostgreSQL's processes all chdir into it), the
        postmaster and also backends it left behind when it was killed."""
        target = self.data_dir.resolve()
        pids = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if Path(os.readlink(f"/proc/{entry.name}/cwd")) == target:
                    pids.append(int(entry.name))
            except OSError:  # gone, or not ours to look at
                continue
        return sorted(pids)

    def kill_server_processes(self, *, timeout: float = 10) -> int:
        """SIGKILL every process of this data directory and wait until they are gone; how many there were.

        A postmaster killed with SIGKILL leaves its backends and walsenders running for a while: they can
        still commit, and a synchronous standby still acknowledges those commits. Promoting the standby
        while they live would lose acknowledged writes, so a fence ends them first.
        """
        pids = self.server_processes()
        killed = len(pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if pid_alive(p)]
            if pids:
                time.sleep(0.01)
        if pids:
            raise HostControlError(f"processes {pids} of member {self.member} did not end after SIGKILL")
        return killed

    def start(self, *, timeout: float = 60) -> None:
        """Start the server (a fenced member starts in recovery: LocalCluster.start honours the marker)."""
        try:
            self._server.start(timeout=timeout)
        except (ClusterError, subprocess.TimeoutExpired) as exc:
            raise self._fail("pg_ctl start", exc) from exc

    def ensure_stopped(self) -> str:
        """Stop a running server (fast, then immediate, then SIGKILL); a sentence saying what it took."""
        if not self._server.is_running():
            return f"{self.member} was not running"
        for mode in ("fast", "immediate"):
            try:
                self.stop(mode=mode, timeout=10 if mode == "fast" else 5)
                return f"stopped {self.member} (pg_ctl stop -m {mode})"
            except HostControlError:
                continue
        self.kill()
        if self._server.is_running():
            raise HostControlError(f"member {self.member} could not be stopped, not even with SIGKILL")
        return f"killed {self.member}'s postmaster (it did not stop)"

    # -- files ---------------------------------------------------------------------------------------
    def _write(self, name: str, text: str, *, mode: int = 0o600) -> None:
        path = self.data_dir / name
        temp = path.with_name(f".{name}.dr-tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        give_to_server_user(temp)
        os.replace(temp, path)

    def write_fence(self, marker: FenceMarker, *, primary_conninfo: str | None, slot_name: str | None) -> None:
        """Make the stopped server come back only in recovery, streaming from ``primary_conninfo``."""
        if self._server.is_running():
            raise HostControlError(f"member {self.member} is running: stop it before writing its fence")
        self._write(FENCE_MARKER, marker.model_dump_json(indent=2) + "\n")
        self._write(STANDBY_SIGNAL, "")
        if primary_conninfo:
            self.set_standby_config(primary_conninfo=primary_conninfo, slot_name=slot_name)

    def set_standby_config(self, *, primary_conninfo: str, slot_name: str | None) -> None:
        auto = self.data_dir / AUTO_CONF
        text = auto.read_text() if auto.exists() else ""
        self._write(AUTO_CONF, with_standby_settings(text, primary_conninfo=primary_conninfo, slot_name=slot_name))

    def write_standby_signal(self) -> None:
        self._write(STANDBY_SIGNAL, "")

    def remove_standby_signal(self) -> None:
        (self.data_dir / STANDBY_SIGNAL).unlink(missing_ok=True)

    def clear_fence(self) -> bool:
        path = self.data_dir / FENCE_MARKER
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def save_config_files(self) -> dict[str, bytes]:
        """The top-level ``*.conf`` files: pg_rewind overwrites them with the source's (port, paths...)."""
        return {p.name: p.read_bytes() for p in self.data_dir.glob("*.conf") if p.is_file()}

    def restore_config_files(self, saved: dict[str, bytes]) -> None:
        for name, content in saved.items():
            path = self.data_dir / name
            path.write_bytes(content)
            give_to_server_user(path)

    # -- rejoin --------------------------------------------------------------------------------------
    def rewind(self, *, source_conninfo: str, password: str | None, dry_run: bool = False,
               timeout: float = 900) -> subprocess.CompletedProcess:
        """pg_rewind this (stopped) data directory from the running source; the completed process."""
        argv = [self._bin("pg_rewind"), f"--target-pgdata={self.data_dir}", f"--source-server={source_conninfo}",
                "--progress"]
        if dry_run:
            argv.append("--dry-run")
        env = dict(os.environ, PGPASSWORD=password or "", PGCONNECT_TIMEOUT="10")
        return run_server_command(argv, check=False, timeout=timeout, env=env)

    def clone(self, *, source_host: str, source_port: int, user: str, password: str | None,
              slot_name: str | None, timeout: float = 3600) -> Path:
        """Replace the data directory by a fresh pg_basebackup of the source; the old one is kept aside."""
        if self._server.is_running():
            raise HostControlError(f"member {self.member} is running: stop it before cloning over it")
        saved = self.save_config_files()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.data_dir.with_name(f"{self.data_dir.name}.dr-replaced-{stamp}")
        os.replace(self.data_dir, aside)
        self.data_dir.mkdir(mode=0o700)
        give_to_server_user(self.data_dir)
        argv = [self._bin("pg_basebackup"), "-h", source_host, "-p", str(source_port), "-U", user,
                "-D", str(self.data_dir), "-X", "stream", "-c", "fast", "--no-password"]
        env = dict(os.environ, PGPASSWORD=password or "")
        try:
            run_server_command(argv, env=env, timeout=timeout)
        except (ClusterError, subprocess.TimeoutExpired) as exc:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            os.replace(aside, self.data_dir)
            raise self._fail("pg_basebackup clone", exc) from exc
        self.restore_config_files(saved)  # pg_basebackup copied the source's (port, paths...)
        return aside

    def waldump(self, *, start_lsn: str, timeline: int, timeout: float = 120) -> str:
        """``pg_waldump`` of this data directory's WAL from ``start_lsn`` on ``timeline`` (its stdout).

        pg_waldump stops with an error at the end of the WAL that was written: that is expected here.
        """
        argv = [self._bin("pg_waldump"), f"--path={self.data_dir / 'pg_wal'}", f"--timeline={timeline}",
                f"--start={start_lsn}"]
        proc = run_server_command(argv, check=False, timeout=timeout)
        return proc.stdout


def marker_now(**fields) -> FenceMarker:
    return FenceMarker(fenced_at=datetime.now(UTC), **fields)
