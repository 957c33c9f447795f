"""The local DR lab: PostgreSQL clusters, notification sinks and Airflow, all on 127.0.0.1.

`up` is idempotent: what exists is kept (clusters, data, passwords, ports), what is stopped is started.
`down` stops everything and keeps the data. All state lives under one folder (default `.lab/` in the
checkout), described by `lab.json`:

  pg/control          Airflow's metadata DB (`airflow`) and the DR catalog (`dr_catalog`)
  pg/wedsync_node1    the members of the protected cluster `wedsync` (include/clusters.yaml), database
  pg/wedsync_node2    `wedsync` with sample data; which one is the primary is read from them (lab.members)
  airflow/            AIRFLOW_HOME: logs, the users' password file
  run/                pid files and process logs; mail/ and webhooks.jsonl: the notification sinks
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.fernet import Fernet

from disaster_recovery.backups.keys import generate_key
from disaster_recovery.catalog.migrations import migrate
from disaster_recovery.lab.members import MEMBERS, LabMembers
from disaster_recovery.lab.processes import ProcessGroups
from disaster_recovery.postgres.cluster import ClusterError, LocalCluster, free_port

REPO = Path(__file__).resolve().parents[3]
SAMPLE_SQL = REPO / "include" / "lab" / "wedsync_sample.sql"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
DEFAULT_PORTS = {
    "control": 54320,
    MEMBERS[0]: 54321,
    MEMBERS[1]: 54322,
    "api": 28080,
    "smtp": 28025,
    "webhook": 28081,
    # Airflow's log servers (scheduler's workers, triggerer): their fixed defaults 8793/8794 would clash
    # between two labs (a benchmark's beside yours).
    "worker_log": 28793,
    "trigger_log": 28794,
}
MONITOR_USER = "dr-monitor"  # the Airflow user the health monitor triggers recoveries as
# Settings that shorten a recovery's path through Airflow on this 2-core lab (measured from "run created"
# to "promotion finished": 3.8-4.3 s with Airflow's defaults, 1.2-1.3 s with these; bench/failover.py).
LATENCY_SETTINGS = {
    # The scheduler sleeps this long when a loop found nothing to do (default 1 s): it was added to the
    # run's start and to every gap between one task's end and the next one's queueing. About +17 % of
    # one core while idle; 0.05 gained nothing more.
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.1",
    # Task processes inherit our library and the hooks from the scheduler (orchestration/executor.py):
    # ~0.5 s less start-up per task.
    "AIRFLOW__CORE__EXECUTOR": "disaster_recovery.orchestration.executor.PreloadingLocalExecutor",
    # A worker whose task's sockets closed before the process could be reaped waits out this interval
    # in select() (default 5 s): 20-55 % of workers stayed busy ~5 s after their task ended.
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    # Task processes share one cache of connections (orchestration/executor.py): ~50 fewer execution-API
    # requests per run of an 8-step plan, each 10-40 ms of the single api-server worker. A connection
    # edited in the UI reaches the tasks within the TTL.
    "AIRFLOW__SECRETS__USE_CACHE": "True",
    "AIRFLOW__SECRETS__CACHE_TTL_SECONDS": "60",
    # One parsing process, re-parsing a file at most every 2 minutes: parsing never takes both cores in
    # the middle of a failover (dag-processor ~5 % -> ~1 % of a core). New plan files appear within 2 min.
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
    # A killed triggerer's triggers (the health monitor) move to a restarted one after ~10 s, not ~30 s.
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "10",
}


@dataclass
class LabConfig:
    """Everything the lab must remember between runs (written once, then kept)."""

    home: str
    ports: dict[str, int]
    pg_password: str
    admin_user: str
    admin_password: str
    fernet_key: str
    jwt_secret: str
    api_secret_key: str
    synchronous: bool = True
    backup_key: str = ""
    monitor_password: str = ""
    env: dict[str, str] = field(default_factory=dict)  # extra environment for every component (benchmarks)
    # False: Airflow's own defaults instead of LATENCY_SETTINGS (a benchmark's baseline)
    latency_settings: bool = True

    def save(self) -> None:
        path = Path(self.home) / "lab.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        path.chmod(0o600)

    @classmethod
    def load_or_create(cls, home: Path, *, auto_ports: bool) -> LabConfig:
        path = home / "lab.json"
        if path.exists():
            config = cls(**json.loads(path.read_text()))
            if "primary" in config.ports and MEMBERS[0] not in config.ports:
                raise ClusterError(
                    f"{path} was made before clusters (its ports name 'primary' and 'standby'; members are now "
                    f"{' and '.join(MEMBERS)}). Stop the lab and make a new one: make stop && rm -rf {home} && "
                    "make run (keep its backups folder aside first if you want them)"
                )
            for name, port in DEFAULT_PORTS.items():  # ports added since the lab was made
                config.ports.setdefault(name, free_port() if auto_ports else port)
            return config
        ports = {name: free_port() for name in DEFAULT_PORTS} if auto_ports else dict(DEFAULT_PORTS)
        if not auto_ports and os.environ.get("DR_LAB_PORT_BASE"):
            base = int(os.environ["DR_LAB_PORT_BASE"])
            ports = {name: base + i for i, name in enumerate(DEFAULT_PORTS)}
        config = cls(
            home=str(home),
            ports=ports,
            pg_password=secrets.token_urlsafe(18),
            admin_user="admin",
            admin_password=secrets.token_urlsafe(12),
            fernet_key=Fernet.generate_key().decode(),
            jwt_secret=secrets.token_urlsafe(32),
            api_secret_key=secrets.token_urlsafe(32),
        )
        home.mkdir(parents=True, exist_ok=True)
        config.save()
        return config


class Lab:
    def __init__(self, home: Path, *, auto_ports: bool = False) -> None:
        self.home = Path(home).absolute()
        self.home.mkdir(parents=True, exist_ok=True)
        # The clusters run as the unprivileged postgres OS user: it must reach their folders.
        self.home.chmod(0o755)
        self.config = LabConfig.load_or_create(self.home, auto_ports=auto_ports)
        if not self.config.backup_key:
            self.config.backup_key = generate_key()
            self.config.save()
        if not self.config.monitor_password:
            self.config.monitor_password = secrets.token_urlsafe(18)
            self.config.save()
        self.run_dir = self.home / "run"
        self.run_dir.mkdir(exist_ok=True)
        pg = self.home / "pg"
        pg.mkdir(exist_ok=True)
        pg.chmod(0o755)
        ports, password = self.config.ports, self.config.pg_password
        self.control = LocalCluster(data_dir=pg / "control", port=ports["control"], password=password)
        self.members = LabMembers(pg_dir=pg, ports=ports, password=password)

    @property
    def nodes(self) -> dict[str, LocalCluster]:
        """The wedsync members by name (whatever their roles are now)."""
        return self.members.nodes

    @property
    def primary(self) -> LocalCluster | None:
        """The member that is the writable primary now (read from the servers), if any."""
        return self.members.primary()

    # -- environment --------------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports['api']}"

    def airflow_env(self) -> dict[str, str]:
        c = self.config
        airflow_home = self.home / "airflow"
        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW_HOME": str(airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                # LocalExecutor starts `parallelism` workers up front; 4 suits 2 cores (~2 GiB in all).
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": c.fernet_key,
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{c.admin_user}:admin,{MONITOR_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(airflow_home / "passwords.json"),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                    f"postgresql+psycopg2://postgres:{c.pg_password}@127.0.0.1:{c.ports['control']}/airflow"
                ),
                "AIRFLOW__API__PORT": str(c.ports["api"]),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__SECRET_KEY": c.api_secret_key,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": c.jwt_secret,
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(c.ports["worker_log"]),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(c.ports["trigger_log"]),
                "DR_LAB_HOME": str(self.home),
            }
        )
        if c.latency_settings:
            env.update(LATENCY_SETTINGS)
        env.update(c.env)
        return env

    def connections(self) -> dict[str, dict]:
        c = self.config

        def pg(port: int, schema: str) -> dict:
            return {
                "conn_type": "postgres",
                "host": "127.0.0.1",
                "port": port,
                "login": "postgres",
                "password": c.pg_password,
                "schema": schema,
            }

        return {
            "dr_catalog": pg(c.ports["control"], "dr_catalog"),
            **{name: pg(c.ports[name], "wedsync") for name in MEMBERS},
            "dr_airflow_api": {
                "conn_type": "http",
                "description": "The Airflow REST API, as the user the health monitor starts recoveries as",
                "host": "127.0.0.1",
                "port": c.ports["api"],
                "schema": "http",
                "login": MONITOR_USER,
                "password": c.monitor_password,
            },
            "smtp_default": {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": c.ports["smtp"],
                "extra": json.dumps(
                    {"disable_tls": True, "disable_ssl": True, "from_email": "dr-lab@wedsync.example"}
                ),
            },
            "dr_backup_key": {
                "conn_type": "generic",
                "description": "AES-256 key of the lab's backups (login = key id, password = base64 key)",
                "login": "lab-backup-key-1",
                "password": c.backup_key,
            },
            "dr_webhook": {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": c.ports["webhook"],
                "schema": "http",
            },
        }

    # -- PostgreSQL ---------------------------------------------------------------------------------
    def up_clusters(self, log) -> None:
        self.members.check_layout()
        if not self.control.exists():
            log(f"initdb {self.control.data_dir} (port {self.control.port})")
            self.control.initdb()
        self.control.start()
        self.control.wait_ready()
        for db in ("airflow", "dr_catalog"):
            if self.control.create_database(db):
                log(f"created database {db} on the control plane")
        log(migrate(self.control.dsn("dr_catalog")).sentence())
        topology = self.members.up(log, load_sample=self._load_sample,
                                   archive=lambda primary: self._archive_wal(primary, log),
                                   synchronous=self.config.synchronous)
        log(f"cluster wedsync: {topology.sentence}")

    @property
    def backup_root(self) -> Path:
        return self.home / "backups"

    def _archive_wal(self, primary: LocalCluster, log) -> None:
        """Archive the primary's WAL into the wedsync source's storage (point-in-time recovery). A member
        cloned from it inherits the same archive_command, so archiving follows the primary after a failover."""
        from disaster_recovery.backups.keys import key_from_base64
        from disaster_recovery.backups.wal_archive import enable_archiving, write_archive_config
        self.backup_root.mkdir(exist_ok=True)
        self.backup_root.chmod(0o755)
        config = write_archive_config(
            folder=self.home / "pg" / "wal-archive",
            source="wedsync",
            storage_config={"kind": "local", "path": str(self.backup_root)},
            key=key_from_base64(self.config.backup_key, key_id="lab-backup-key-1"),
        )
        conn = primary.connect()
        try:
            restart = enable_archiving(conn, config_path=config)
        finally:
            conn.close()
        if restart:
            primary.stop()
            primary.start()
            primary.wait_ready()
            log("WAL archiving of the wedsync primary is on (into the backup storage)")

    def _load_sample(self, primary: LocalCluster) -> None:
        conn = primary.connect("wedsync")
        try:
            with conn.cursor() as cur:
                cur.execute(SAMPLE_SQL.read_text())
        finally:
            conn.close()

    # -- processes ----------------------------------------------------------------------------------
    # Seconds a component's main process gets to exit after SIGTERM before it is signalled again and
    # then killed (default 10: the scheduler lets running tasks finish meanwhile). The triggerer gets
    # less: in some stops it sits out the whole 10-second escalation of its own kill() of its runner
    # subprocess (airflow.sdk.execution_time.supervisor: once the runner has closed its sockets, kill()
    # blocks in select() with nothing left to wake it), and a second SIGTERM makes it exit at once.
    STOP_TIMEOUTS = {"airflow-triggerer": 3.0}

    @cached_property
    def processes(self) -> ProcessGroups:
        return ProcessGroups(self.run_dir)

    def _stop(self, name: str) -> None:
        self.processes.stop(name, timeout=self.STOP_TIMEOUTS.get(name, 10.0))

    def _spawn(self, name: str, argv: list[str], *, env: dict[str, str], log) -> None:
        """Start `name` unless its leader runs; what is left of a group whose leader died is ended first."""
        if self.processes.alive(name):
            return
        if leftovers := self.processes.stop(name):
            log(f"{name}: its leader was gone but {len(leftovers)} of its processes were left "
                f"(pids {', '.join(map(str, leftovers))}); ended them, starting {name} again")
        self.processes.spawn(name, argv, env=env, cwd=REPO)

    def up_sinks(self, log=print) -> None:
        ports = self.config.ports
        self._spawn(
            "sinks",
            [sys.executable, "-m", "disaster_recovery.lab.sinks", "--home", str(self.home),
             "--smtp-port", str(ports["smtp"]), "--webhook-port", str(ports["webhook"])],
            env=self.airflow_env() | {"PYTHONPATH": str(REPO / "plugins")},
            log=log,
        )

    def up_airflow(self, log) -> None:
        env = self.airflow_env()
        airflow_home = Path(env["AIRFLOW_HOME"])
        airflow_home.mkdir(exist_ok=True)
        passwords = airflow_home / "passwords.json"
        passwords.write_text(json.dumps({self.config.admin_user: self.config.admin_password,
                                         MONITOR_USER: self.config.monitor_password}))
        passwords.chmod(0o600)
        airflow = [sys.executable, "-m", "airflow"]
        if not all(self.processes.alive(f"airflow-{name}") for name in AIRFLOW_COMPONENTS):
            log("migrating Airflow's metadata database")
            self._run(airflow + ["db", "migrate"], env)
            conns = self.run_dir / "connections.json"
            conns.write_text(json.dumps(self.connections()))
            conns.chmod(0o600)
            try:
                self._run(airflow + ["connections", "import", "--overwrite", str(conns)], env)
            finally:
                conns.unlink(missing_ok=True)
            log("created the Airflow connections: " + ", ".join(self.connections()))
        for name in AIRFLOW_COMPONENTS:
            self._spawn(f"airflow-{name}", airflow + [name], env=env, log=log)

    @staticmethod
    def _run(argv: list[str], env: dict[str, str]) -> None:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[2:])} failed ({proc.returncode}): {proc.stderr[-3000:]}")

    def wait_healthy(self, *, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as resp:
                    health = json.loads(resp.read())
                states = {k: v.get("status") for k, v in health.items() if isinstance(v, dict)}
                wanted = ("metadatabase", "scheduler", "dag_processor", "triggerer")
                if all(states.get(k) == "healthy" for k in wanted):
                    self._warm_execution_api(deadline - time.monotonic())
                    return health
                last = json.dumps(states)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = str(exc)
            for name in AIRFLOW_COMPONENTS:
                if not self.processes.alive(f"airflow-{name}"):
                    tail = self.processes.log_path(f"airflow-{name}").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"airflow {name} exited; its log ends with:\n{tail}")
            time.sleep(1)
        raise RuntimeError(f"Airflow did not become healthy in {timeout}s: {last}")

    def _warm_execution_api(self, timeout: float) -> None:
        """The api-server builds its task execution API on the first /execution/ request: 4-17 s here. Do
        it now, not in the first task after a start (the first failover's), whose start call waited."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/execution/health", timeout=max(timeout, 30)) as resp:
                resp.read()
        except (urllib.error.URLError, OSError) as exc:
            raise RuntimeError(f"Airflow's task execution API did not answer: {exc}") from exc

    # -- commands -----------------------------------------------------------------------------------
    def up(self, log=print) -> None:
        started = time.monotonic()
        self.up_clusters(log)
        self.up_sinks(log)
        self.up_airflow(log)
        self.wait_healthy()
        log(self.summary(time.monotonic() - started))

    def down(self, log=print) -> None:
        for name in reversed(AIRFLOW_COMPONENTS):
            self._stop(f"airflow-{name}")
        self._stop("sinks")
        self.members.stop()
        with contextlib.suppress(ClusterError):
            self.control.stop()
        log(f"lab stopped; data kept in {self.home}")

    def summary(self, seconds: float) -> str:
        c = self.config
        return "\n".join(
            [
                f"DR lab is up in {seconds:.1f}s.",
                f"  Airflow UI      {self.api_url}/   login: {c.admin_user} / {c.admin_password}",
                f"  DR API          {self.api_url}/disaster-recovery/docs  (its routes need an Airflow login or token)",
                "  cluster wedsync (include/clusters.yaml; roles as the servers report them now):",
                *(f"    {line}" for line in self.members.describe()),
                "  health monitor  dr_health_monitor probes include/services.yaml every second; it fails the primary"
                " over by itself",
                f"  catalog         127.0.0.1:{c.ports['control']}/dr_catalog",
                f"  e-mail sink     {self.home}/mail/   webhooks  {self.home}/webhooks.jsonl",
                f"  backups         {self.backup_root}  (WAL archived there continuously)",
                f"  state           {self.home}  (postgres password in lab.json)",
            ]
        )

    def set_sync(self, enabled: bool, log=print) -> None:
        self.config.synchronous = enabled
        self.config.save()
        changed = self.members.set_synchronous(enabled)
        if changed is None:
            log("no primary to set: " + self.members.topology().sentence)
            return
        log(f"replication is now {'synchronous' if enabled else 'asynchronous'} (synchronous_standby_names "
            f"{changed[0]!r} -> {changed[1]!r}). Failovers, rejoins and switchovers apply the cluster's own policy "
            "(include/clusters.yaml `synchronous`).")


def default_home() -> Path:
    return Path(os.environ.get("DR_LAB_HOME") or REPO / ".lab")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m disaster_recovery.lab", description="The local DR lab.")
    parser.add_argument("--home", type=Path, default=None, help="state folder (default .lab/ or $DR_LAB_HOME)")
    parser.add_argument("--auto-ports", action="store_true", help="pick free ports when the lab is first created")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="set up (once) and start the lab")
    sub.add_parser("down", help="stop the lab, keep its data")
    sub.add_parser("status", help="print the lab's addresses and login")
    sync = sub.add_parser("sync", help="switch synchronous replication on or off")
    sync.add_argument("mode", choices=["on", "off"])
    args = parser.parse_args(argv)
    lab = Lab(args.home or default_home(), auto_ports=args.auto_ports)
    try:
        if args.command == "up":
            lab.up()
        elif args.command == "down":
            lab.down()
        elif args.command == "status":
            print(lab.summary(0.0))
        elif args.command == "sync":
            lab.set_sync(args.mode == "on")
    except (ClusterError, RuntimeError) as exc:
        print(f"lab {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0
