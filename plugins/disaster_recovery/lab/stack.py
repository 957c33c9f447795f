"""The local DR lab: PostgreSQL clusters, notification sinks and Airflow, all on 127.0.0.1.

`up` is idempotent: what exists is kept (clusters, data, passwords, ports), what is stopped is started.
`down` stops everything and keeps the data. All state lives under one folder (default `.lab/` in the
checkout), described by `lab.json`:

  pg/control          Airflow's metadata DB (`airflow`) and the DR catalog (`dr_catalog`)
  pg/wedsync_primary  the protected primary, database `wedsync` with sample data
  pg/wedsync_standby  its streaming standby (synchronous replication switchable)
  airflow/            AIRFLOW_HOME: logs, the admin password file
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
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from cryptography.fernet import Fernet

from disaster_recovery.backups.keys import generate_key
from disaster_recovery.catalog.migrations import migrate
from disaster_recovery.lab.processes import ProcessGroups
from disaster_recovery.postgres.cluster import (
    ClusterError,
    LocalCluster,
    create_standby,
    free_port,
    set_synchronous,
    wait_streaming,
)

REPO = Path(__file__).resolve().parents[3]
SAMPLE_SQL = REPO / "include" / "lab" / "wedsync_sample.sql"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
DEFAULT_PORTS = {
    "control": 54320,
    "primary": 54321,
    "standby": 54322,
    "api": 28080,
    "smtp": 28025,
    "webhook": 28081,
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
    synchronous: bool = False
    backup_key: str = ""

    def save(self) -> None:
        path = Path(self.home) / "lab.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        path.chmod(0o600)

    @classmethod
    def load_or_create(cls, home: Path, *, auto_ports: bool) -> LabConfig:
        path = home / "lab.json"
        if path.exists():
            return cls(**json.loads(path.read_text()))
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
        self.run_dir = self.home / "run"
        self.run_dir.mkdir(exist_ok=True)
        pg = self.home / "pg"
        pg.mkdir(exist_ok=True)
        pg.chmod(0o755)
        ports, password = self.config.ports, self.config.pg_password
        self.control = LocalCluster(data_dir=pg / "control", port=ports["control"], password=password)
        self.primary = LocalCluster(data_dir=pg / "wedsync_primary", port=ports["primary"], password=password)
        self.standby = LocalCluster(data_dir=pg / "wedsync_standby", port=ports["standby"], password=password)

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
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                # LocalExecutor starts `parallelism` workers up front; 4 suits 2 cores (~2 GiB in all).
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": c.fernet_key,
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{c.admin_user}:admin",
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
                "DR_LAB_HOME": str(self.home),
            }
        )
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
            "wedsync_primary": pg(c.ports["primary"], "wedsync"),
            "wedsync_standby": pg(c.ports["standby"], "wedsync"),
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
        for cluster in (self.control, self.primary):
            if not cluster.exists():
                log(f"initdb {cluster.data_dir} (port {cluster.port})")
                cluster.initdb()
            cluster.start()
            cluster.wait_ready()
        for db in ("airflow", "dr_catalog"):
            if self.control.create_database(db):
                log(f"created database {db} on the control plane")
        log(migrate(self.control.dsn("dr_catalog")).sentence())
        if self.primary.create_database("wedsync") or not self.primary.query(
            "SELECT 1 FROM pg_tables WHERE tablename = 'payments'", dbname="wedsync"
        ):
            self._load_sample()
            log("loaded the WedSync sample data")
        self._archive_wal(log)
        if not self.standby.exists():
            log(f"cloning the standby from the primary (port {self.standby.port})")
            create_standby(self.primary, data_dir=self.standby.data_dir, port=self.standby.port, slot="wedsync_standby")
        self.standby.start()
        if not self.primary.in_recovery() and self.standby.in_recovery():
            wait_streaming(self.primary, application_name=self.standby.name, timeout=60)
            set_synchronous(self.primary, standby_names=[self.standby.name] if self.config.synchronous else None)
        else:
            log("note: the wedsync pair is not primary→standby any more (a failover ran); left as it is")

    @property
    def backup_root(self) -> Path:
        return self.home / "backups"

    def _archive_wal(self, log) -> None:
        """Archive the primary's WAL into the wedsync source's storage (point-in-time recovery)."""
        from disaster_recovery.backups.keys import key_from_base64
        from disaster_recovery.backups.wal_archive import enable_archiving, write_archive_config

        if self.primary.in_recovery():
            return
        self.backup_root.mkdir(exist_ok=True)
        self.backup_root.chmod(0o755)
        config = write_archive_config(
            folder=self.home / "pg" / "wal-archive",
            source="wedsync",
            storage_config={"kind": "local", "path": str(self.backup_root)},
            key=key_from_base64(self.config.backup_key, key_id="lab-backup-key-1"),
        )
        conn = self.primary.connect()
        try:
            restart = enable_archiving(conn, config_path=config)
        finally:
            conn.close()
        if restart:
            self.primary.stop()
            self.primary.start()
            self.primary.wait_ready()
            log("WAL archiving of the wedsync primary is on (into the backup storage)")

    def _load_sample(self) -> None:
        conn = self.primary.connect("wedsync")
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
        passwords.write_text(json.dumps({self.config.admin_user: self.config.admin_password}))
        passwords.chmod(0o600)
        airflow = [sys.executable, "-m", "airflow"]
        if not all(self.processes.alive(name) for name in AIRFLOW_COMPONENTS):
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
        for cluster in (self.standby, self.primary, self.control):
            with contextlib.suppress(ClusterError):
                cluster.stop()
        log(f"lab stopped; data kept in {self.home}")

    def summary(self, seconds: float) -> str:
        c = self.config
        return "\n".join(
            [
                f"DR lab is up in {seconds:.1f}s.",
                f"  Airflow UI      {self.api_url}/   login: {c.admin_user} / {c.admin_password}",
                f"  DR API          {self.api_url}/disaster-recovery/docs  (its routes need an Airflow login or token)",
                f"  wedsync primary 127.0.0.1:{c.ports['primary']}  standby 127.0.0.1:{c.ports['standby']}"
                f"  (replication {'synchronous' if c.synchronous else 'asynchronous'})",
                f"  catalog         127.0.0.1:{c.ports['control']}/dr_catalog",
                f"  e-mail sink     {self.home}/mail/   webhooks  {self.home}/webhooks.jsonl",
                f"  backups         {self.backup_root}  (WAL archived there continuously)",
                f"  state           {self.home}  (postgres password in lab.json)",
            ]
        )

    def set_sync(self, enabled: bool, log=print) -> None:
        self.config.synchronous = enabled
        self.config.save()
        set_synchronous(self.primary, standby_names=[self.standby.name] if enabled else None)
        log(f"replication is now {'synchronous' if enabled else 'asynchronous'}")


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
