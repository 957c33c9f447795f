"""README, the lab: `make run` with ``DR_LAB_HOME=DIR`` and ``DR_LAB_PORT_BASE=N`` puts the whole lab in DIR on
N, N+1, ...; the primary archives its WAL into the lab's backup storage; ``python -m disaster_recovery.lab
sync on|off`` switches synchronous replication; ``make stop`` then ``make run`` keeps the data.

One lab of its own, made and driven through the README's own commands (`make run`, `make stop`, the sync
command), with nothing but the two environment variables to say where; its tests run in order and the
module stops it at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from disaster_recovery.backups.keys import key_from_base64
from disaster_recovery.backups.retention import wal_segment_of
from disaster_recovery.backups.storage import LocalStorage
from disaster_recovery.backups.wal_archive import archived_files, fetch, load_config, wait_archived
from disaster_recovery.lab.stack import DEFAULT_PORTS, Lab

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]
SYNCHRONOUS = [('ANY 1 ("wedsync_node2")',)]
REPLICATION = "SELECT application_name, sync_state FROM pg_stat_replication"
# Test-only settings a lab must not inherit: it reads its own home, plans and catalog.
FOREIGN = ("DR_BACKUPS_FILE", "DR_CATALOG_CONN_ID", "DR_PLANS_DIR", "DR_LAB_HOME", "DR_LAB_PORT_BASE")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_base(count: int) -> int:
    """A base N with N..N+count-1 free, below the kernel's ephemeral range (where free_port() and every
    client socket draw from), away from the lab's default ports; the start depends on our pid so that two
    sessions do not probe the same bases first."""
    low, high = 20000, int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) - count
    defaults = set(DEFAULT_PORTS.values())
    span = (high - low) // 10
    for step in range(span):
        base = low + ((os.getpid() + step) % span) * 10
        ports = range(base, base + count)
        if not defaults & set(ports) and all(port_is_free(p) for p in ports):
            return base
    raise RuntimeError(f"no {count} consecutive free ports between {low} and {high}")


def run(argv: list[str], *, home: Path, base: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k not in FOREIGN}
    env.update(DR_LAB_HOME=str(home), DR_LAB_PORT_BASE=str(base), PYTHONPATH=str(REPO / "plugins"))
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)


def make(target: str, lab) -> subprocess.CompletedProcess:
    proc = run(["make", "--no-print-directory", target], home=lab.home, base=lab.base)
    assert proc.returncode == 0, f"make {target} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def lab_cli(lab, *args: str) -> subprocess.CompletedProcess:
    proc = run([sys.executable, "-m", "disaster_recovery.lab", *args], home=lab.home, base=lab.base)
    assert proc.returncode == 0, f"lab {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def processes_of(home: Path) -> dict[int, str]:
    """Running processes started with this lab's environment (DR_LAB_HOME): {pid: command line}."""
    marker = f"DR_LAB_HOME={home}".encode()
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in environ and state != "Z":
            found[int(entry)] = cmdline.strip()
    return found


def answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def lab(session_dir):
    home = session_dir / "lifecycle-lab"
    base = free_port_base(len(DEFAULT_PORTS))
    first = run(["make", "--no-print-directory", "run"], home=home, base=base)
    try:
        assert first.returncode == 0, f"make run failed (port base {base}):\n{first.stdout}\n{first.stderr}"
        lab = Lab(home)
        lab.base, lab.first_run = base, first.stdout
        yield lab
    finally:
        run(["make", "--no-print-directory", "stop"], home=home, base=base)


def test_the_lab_lives_in_dr_lab_home_on_ports_from_dr_lab_port_base(lab):
    assert (lab.home / "lab.json").is_file() and (lab.home / "pg" / "wedsync_node1" / "PG_VERSION").is_file()
    assert lab.config.home == str(lab.home)
    assert lab.config.ports == {name: lab.base + i for i, name in enumerate(DEFAULT_PORTS)}
    for name in ("control", "wedsync_node1", "wedsync_node2", "api", "smtp", "webhook"):
        assert answers(lab.config.ports[name]), f"{name} does not answer on {lab.config.ports[name]}"
    assert lab.control.port == lab.base and lab.nodes["wedsync_node2"].port == lab.base + 2
    assert f"http://127.0.0.1:{lab.base + 3}/" in lab.first_run and str(lab.home) in lab.first_run
    health = httpx.get(f"http://127.0.0.1:{lab.base + 3}/api/v2/monitor/health", timeout=10).json()
    assert health["metadatabase"]["status"] == "healthy"


def test_the_primary_archives_its_wal_into_the_lab_backups(lab, tmp_path):
    primary = lab.primary
    config_path = lab.home / "pg" / "wal-archive" / "archive.json"
    assert "WAL archiving of the wedsync primary is on" in lab.first_run
    assert primary.query("SHOW archive_mode") == [("on",)]
    command = primary.query("SHOW archive_command")[0][0]
    assert "disaster_recovery.backups.wal_archive push" in command and str(config_path) in command
    with contextlib.closing(primary.connect()) as conn:
        name = wait_archived(conn, timeout=60)
    assert primary.query("SELECT failed_count FROM pg_stat_archiver") == [(0,)]
    assert name in archived_files(LocalStorage(lab.home / "backups"), "wedsync")

    # Sealed with the lab's backup key (the dr_backup_key connection); fetched back it is that segment.
    config, key = load_config(config_path)
    assert config["storage"] == {"kind": "local", "path": str(lab.home / "backups")}
    assert key == key_from_base64(lab.config.backup_key, key_id="lab-backup-key-1")
    assert fetch(config, key, file_name=name, destination=tmp_path / name)
    segment = (tmp_path / name).read_bytes()
    size = primary.query("SHOW wal_segment_size")[0][0]
    assert size == "16MB" and len(segment) == 16 * 2**20
    # The long header of its first page: magic, timeline, address of the segment, system id, segment size.
    magic, _info, timeline, pageaddr, _rem, sysid, seg_size = struct.unpack_from("<HHIQIxxxxQI", segment)
    assert (timeline, pageaddr) == (int(name[:8], 16), (int(name[8:16], 16) * 256 + int(name[16:], 16)) * 2**24)
    assert sysid == primary.query("SELECT system_identifier FROM pg_control_system()")[0][0]
    assert seg_size == 16 * 2**20 and magic == 0xD110  # PostgreSQL 15's WAL page magic


def test_sync_off_makes_replication_asynchronous(lab):
    assert lab.primary.query("SHOW synchronous_standby_names") == SYNCHRONOUS
    assert lab.primary.query(REPLICATION) == [("wedsync_node2", "quorum")]
    proc = lab_cli(lab, "sync", "off")
    assert "replication is now asynchronous" in proc.stdout
    assert lab.primary.query("SHOW synchronous_standby_names") == [("",)]
    assert lab.primary.query(REPLICATION) == [("wedsync_node2", "async")]
    assert Lab(lab.home).config.synchronous is False


def test_make_stop_then_make_run_keeps_the_data(lab):
    token = secrets.token_hex(8)
    primary = lab.primary
    primary.query("CREATE TABLE lifecycle_marker (token text PRIMARY KEY); INSERT INTO lifecycle_marker "
                  f"VALUES ('{token}')", dbname="wedsync")
    counts = "SELECT (SELECT count(*) FROM weddings), (SELECT count(*) FROM payments)"
    before = primary.query(counts, dbname="wedsync")
    config = (lab.home / "lab.json").read_text()
    storage = LocalStorage(lab.home / "backups")
    archived = set(archived_files(storage, "wedsync"))
    backups = set(storage.list("wedsync/base/"))

    stopped = make("stop", lab)
    assert f"lab stopped; data kept in {lab.home}" in stopped.stdout
    assert processes_of(lab.home) == {}
    assert [name for name, port in lab.config.ports.items() if answers(port)] == []

    make("run", lab)
    lab = Lab(lab.home)
    assert (lab.home / "lab.json").read_text() == config  # same ports, passwords and keys
    topology = lab.members.topology()
    assert (topology.primary, topology.streaming) == ("wedsync_node1", ("wedsync_node2",))
    assert lab.primary.query("SELECT token FROM lifecycle_marker", dbname="wedsync") == [(token,)]
    assert lab.primary.query(counts, dbname="wedsync") == before
    deadline = time.monotonic() + 30
    while lab.nodes["wedsync_node2"].query("SELECT to_regclass('lifecycle_marker')", dbname="wedsync") == [(None,)]:
        assert time.monotonic() < deadline, "the standby never replayed the marker"
        time.sleep(0.2)
    assert lab.nodes["wedsync_node2"].query("SELECT token FROM lifecycle_marker", dbname="wedsync") == [(token,)]
    login = httpx.post(f"{lab.api_url}/auth/token", timeout=30,
                       json={"username": lab.config.admin_user, "password": lab.config.admin_password})
    assert login.status_code == 201, login.text
    # The backups and the archive are kept (but for the WAL retention found no kept backup needs: the lab's
    # backup DAG may run meanwhile) and archiving goes on; replication stayed asynchronous, as it was set.
    with contextlib.closing(lab.primary.connect()) as conn:
        name = wait_archived(conn, timeout=60)
    now = set(archived_files(storage, "wedsync"))
    ((needed,),) = lab.control.query(
        "SELECT min(backup_metadata->>'start_wal_file') FROM backup_inventories WHERE data_source = 'wedsync' "
        "AND verification_status IN ('verified', 'pending')", dbname="dr_catalog")
    assert {n for n in archived if not needed or (wal_segment_of(n) or needed) >= needed} | {name} <= now
    assert backups <= set(storage.list("wedsync/base/"))
    assert lab.primary.query("SHOW synchronous_standby_names") == [("",)]


def test_sync_on_makes_replication_synchronous_again(lab):
    proc = lab_cli(lab, "sync", "on")
    assert "replication is now synchronous" in proc.stdout
    assert lab.primary.query("SHOW synchronous_standby_names") == SYNCHRONOUS
    assert lab.primary.query(REPLICATION) == [("wedsync_node2", "quorum")]  # ANY 1: a commit waits for it
    assert Lab(lab.home).config.synchronous is True
