"""Local PostgreSQL clusters: initdb, start, stop, streaming standbys.

Used by the lab (`make run`) and by the test fixtures. Every cluster lives in its own folder, listens on
127.0.0.1 on a port of its own and keeps its socket in its own folder: the system cluster on 5432 is
never touched. initdb and the server refuse to run as root, so when we are root the server commands run
as the unprivileged ``postgres`` OS user (Debian's packages create it) and the folders are given to it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

from disaster_recovery.postgres import hooks
from disaster_recovery.postgres.ipc import end_processes_in, release_server_ipc

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. Install them with: "
    "sudo apt-get install -y postgresql-15 postgresql-contrib  (or set DR_PG_BINDIR to their folder)"
)
SERVER_OS_USER = "postgres"
FENCE_MARKER = "dr_fence.json"  # see disaster_recovery.clusters.state


class ClusterError(RuntimeError):
    """A cluster command failed; the message carries the command and its output."""


def pg_bindir() -> Path:
    """The folder of the PostgreSQL server binaries: $DR_PG_BINDIR, `pg_config --bindir`, or Debian's."""
    candidates: list[str] = []
    if os.environ.get("DR_PG_BINDIR"):
        candidates.append(os.environ["DR_PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(out.stdout.strip())
    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    for folder in candidates:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    raise ClusterError(INSTALL_HINT)


def pid_alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed postmaster may linger as one until it is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][:1] != "Z"
    except OSError:
        return True  # no /proc to look at: it exists


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """The OS user server commands run as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError as exc:
        raise ClusterError(
            f"running as root needs the unprivileged OS user '{SERVER_OS_USER}' for PostgreSQL "
            "(Debian's postgresql package creates it)"
        ) from exc


def give_to_server_user(path: Path) -> None:
    """Make a folder (and its contents) belong to the OS user the server runs as."""
    user = _server_user()
    if user is None:
        return
    os.chown(path, user.pw_uid, user.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            with contextlib.suppress(FileNotFoundError):
                os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def run_server_command(
    argv: list[str], *, check: bool = True, timeout: float = 120, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run a PostgreSQL server-side command, as the server OS user when we are root."""
    user = _server_user()
    kwargs: dict = {}
    run_env = dict(env or os.environ)
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        run_env["HOME"] = user.pw_dir
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=run_env,
        cwd="/",
        check=False,
        **kwargs,
    )
    if check and proc.returncode != 0:
        raise ClusterError(
            f"{' '.join(argv)} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    return proc


@dataclass
class LocalCluster:
    """One PostgreSQL cluster in a folder of its own, on 127.0.0.1:port."""

    data_dir: Path
    port: int
    password: str
    superuser: str = "postgres"
    bindir: Path = field(default_factory=pg_bindir)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()
        self.bindir = Path(self.bindir)
        hooks.created(self)

    # -- paths --------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The cluster's name (its folder), also its application_name when it streams as a standby."""
        return self.data_dir.name.replace("-", "_")

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.sock"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    # -- life cycle ---------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def initdb(self, *, data_checksums: bool = True) -> None:
        """Create the cluster: scram passwords on TCP, trust on its private socket only."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        for path in (self.data_dir, self.socket_dir, pwfile):
            give_to_server_user(path)
        argv = [
            self._bin("initdb"),
            "-D", str(self.data_dir),
            "-U", self.superuser,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if data_checksums:
            argv.append("--data-checksums")
        try:
            run_server_command(argv)
        finally:
            pwfile.unlink(missing_ok=True)
        self.write_settings(self.base_settings())
        self.allow_replication()

    def base_settings(self) -> dict[str, str]:
        return {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "wal_level": "replica",
            "max_wal_senders": "10",
            "max_replication_slots": "10",
            "wal_log_hints": "on",
            "hot_standby": "on",
            "wal_keep_size": "'256MB'",
            # A promoted standby retries WAL every 5 s by default; 100 ms makes sync failover fast.
            "wal_retrieve_retry_interval": "'100ms'",
            "shared_buffers": "'64MB'",
            "max_connections": "100",
            "fsync": "on",
            "logging_collector": "off",
        }

    def write_settings(self, settings: dict[str, str]) -> None:
        """Write our settings to postgresql.auto.conf's sibling, included by postgresql.conf."""
        conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'dr_lab.conf'"
        text = conf.read_text()
        if include not in text:
            conf.write_text(text + f"\n{include}\n")
        lines = [f"{key} = {value}" for key, value in settings.items()]
        target = self.data_dir / "dr_lab.conf"
        target.write_text("\n".join(lines) + "\n")
        give_to_server_user(target)

    def allow_replication(self) -> None:
        hba = self.data_dir / "pg_hba.conf"
        line = "host replication all 127.0.0.1/32 scram-sha-256"
        text = hba.read_text()
        if line not in text:
            hba.write_text(text + line + "\n")

    def is_running(self) -> bool:
        proc = run_server_command([self._bin("pg_ctl"), "-D", str(self.data_dir), "status"], check=False)
        return proc.returncode == 0

    def start(self, *, timeout: float = 60) -> None:
        """Start the server. A fenced data directory (``dr_fence.json``, written when a failover fenced it)
        only ever starts in recovery: a missing standby.signal is put back first."""
        if self.is_running():
            return
        self._wait_postmaster_gone()
        if (self.data_dir / FENCE_MARKER).exists() and not (self.data_dir / "standby.signal").exists():
            (self.data_dir / "standby.signal").write_text("")
            give_to_server_user(self.data_dir / "standby.signal")
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        give_to_server_user(self.socket_dir)
        self.log_file.touch()
        give_to_server_user(self.log_file)
        run_server_command(
            [
                self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                "-w", "-t", str(int(timeout)), "start",
            ],
            timeout=timeout + 10,
        )
        hooks.started(self)

    def stop(self, *, mode: str = "fast", timeout: float = 60) -> None:
        if not self.exists() or not self.is_running():
            return
        run_server_command(
            [self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
            check=False,
            timeout=timeout + 10,
        )
        self._wait_postmaster_gone()

    def kill(self) -> None:
        """Crash the cluster (SIGKILL the postmaster): the hardware-failure drill."""
        pid = self.postmaster_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            self._wait_postmaster_gone()

    def postmaster_pid(self) -> int | None:
        pidfile = self.data_dir / "postmaster.pid"
        try:
            return int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def _wait_postmaster_gone(self, timeout: float = 30) -> None:
        """A killed postmaster can linger a moment; wait for its PID to go before starting again."""
        pid = self.postmaster_pid()
        deadline = time.monotonic() + timeout
        while pid and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            time.sleep(0.05)

    def destroy(self) -> None:
        """Stop (or kill) the cluster, end the backends a killed postmaster left running and release the shared
        memory it left behind (see postgres.ipc), and remove its folders."""
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            self.stop(mode="immediate", timeout=20)
        if self.postmaster_pid() and self.is_running():
            self.kill()
        end_processes_in(self.data_dir)
        release_server_ipc(self.data_dir)
        for path in (self.data_dir, self.socket_dir):
            shutil.rmtree(path, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    # -- SQL ----------------------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        return (
            f"host=127.0.0.1 port={self.port} dbname={dbname} user={user or self.superuser} "
            f"password={password or self.password} connect_timeout=5"
        )

    def uri(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.superuser}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", *, autocommit: bool = True):
        conn = psycopg2.connect(self.dsn(dbname))
        conn.autocommit = autocommit
        return conn

    def query(self, sql: str, params: tuple | None = None, *, dbname: str = "postgres") -> list[tuple]:
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def create_database(self, name: str) -> bool:
        """Create a database unless it exists; True when it was created."""
        if self.query("SELECT 1 FROM pg_database WHERE datname = %s", (name,)):
            return False
        self.query(f'CREATE DATABASE "{name}"')
        return True

    def in_recovery(self) -> bool:
        return bool(self.query("SELECT pg_is_in_recovery()")[0][0])

    def wait_ready(self, *, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                self.query("SELECT 1")
                return
            except psycopg2.Error as exc:
                last = exc
                time.sleep(0.1)
        raise ClusterError(f"cluster on port {self.port} did not accept connections in {timeout}s: {last}")


def create_standby(
    primary: LocalCluster, *, data_dir: Path, port: int, slot: str | None = None
) -> LocalCluster:
    """Clone ``primary`` with pg_basebackup -R into a streaming standby (not started)."""
    standby = LocalCluster(data_dir=data_dir, port=port, password=primary.password, bindir=primary.bindir)
    standby.data_dir.parent.mkdir(parents=True, exist_ok=True)
    if slot and not primary.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)):
        primary.query("SELECT pg_create_physical_replication_slot(%s)", (slot,))
    argv = [
        str(primary.bindir / "pg_basebackup"),
        "-h", "127.0.0.1", "-p", str(primary.port), "-U", primary.superuser,
        "-D", str(standby.data_dir), "-X", "stream", "-R", "-c", "fast", "--no-password",
    ]
    if slot:
        argv += ["-S", slot]
    env = dict(os.environ, PGPASSWORD=primary.password)
    standby.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    give_to_server_user(standby.data_dir)
    run_server_command(argv, env=env, timeout=600)
    settings = primary.base_settings()
    settings.update(standby.base_settings())
    standby.write_settings(settings)
    # -R wrote primary_conninfo with the password into postgresql.auto.conf; name the standby so a
    # synchronous_standby_names entry can select it.
    auto = standby.data_dir / "postgresql.auto.conf"
    text = auto.read_text().replace("primary_conninfo = '", f"primary_conninfo = 'application_name={standby.name} ")
    auto.write_text(text)
    standby.allow_replication()
    return standby


def set_synchronous(primary: LocalCluster, *, standby_names: list[str] | None) -> None:
    """Switch synchronous replication on (naming the standbys) or off (empty list / None)."""
    value = ",".join(standby_names or [])
    primary.query("ALTER SYSTEM SET synchronous_standby_names = %s", (value,))
    primary.query("SELECT pg_reload_conf()")


def wait_streaming(primary: LocalCluster, *, application_name: str, timeout: float = 30) -> None:
    """Wait until the primary sees a standby with that application_name streaming."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = primary.query(
            "SELECT state FROM pg_stat_replication WHERE application_name = %s", (application_name,)
        )
        if rows and rows[0][0] == "streaming":
            return
        time.sleep(0.1)
    raise ClusterError(f"standby '{application_name}' is not streaming from port {primary.port} after {timeout}s")
