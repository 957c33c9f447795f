"""Backup and restore throughput on a pgbench database, against plain pg_basebackup (and pgBackRest).

    .venv/bin/python bench/backup_throughput.py [--scale 50] [--repeat 3]

One fresh cluster (``pgbench -i -s SCALE``, ~800 MB at 50) in a temporary folder; every figure is the
median of ``--repeat`` runs:

- baseline: plain ``pg_basebackup -Ft -X stream -c fast`` to disk (uncompressed, with manifest);
- ours, physical full backup: pg_basebackup → zstd (by PostgreSQL: server-zstd, and client-zstd which
  keeps the manifest) → AES-256-GCM → SHA-256 → local storage, inventory row included;
- ours, restore to a running read-write cluster (and with the row-count validation);
- ours, the verification restore test (read back, scratch cluster, pg_amcheck, row counts);
- pgBackRest full backup (zst, aes-256-cbc, process-max 2) and restore + open, when ``pgbackrest`` exists.

MB/s are the database size (sum of pg_database_size) over the seconds; ratio = seconds / baseline seconds.
Everything it starts is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from disaster_recovery.backups.engines import PgEndpoint  # noqa: E402
from disaster_recovery.backups.keys import EncryptionKey  # noqa: E402
from disaster_recovery.backups.restore import ClusterDestination, restore_backup  # noqa: E402
from disaster_recovery.backups.restored import RestoredCluster  # noqa: E402
from disaster_recovery.backups.runner import take_backup  # noqa: E402
from disaster_recovery.backups.sources import Source  # noqa: E402
from disaster_recovery.backups.verification import verify_backup  # noqa: E402
from disaster_recovery.catalog.migrations import migrate  # noqa: E402
from disaster_recovery.catalog.repository import Catalog  # noqa: E402
from disaster_recovery.postgres.cluster import LocalCluster, free_port, give_to_server_user  # noqa: E402


def timed(fn):
    started = time.monotonic()
    value = fn()
    return time.monotonic() - started, value


def source_for(where: str, root: Path) -> Source:
    return Source.model_validate({
        "name": f"bench_{where}", "conn_id": "unused", "method": "physical", "schedule": "@daily",
        "compression": {"algorithm": "zstd", "level": 3, "workers": 2, "where": where},
        "retention": {"keep_last": 3}, "freshness": {"max_age": "1d"},
        "storage": {"kind": "local", "path": str(root / "store")}, "encryption": {"key_conn_id": "unused"},
    })


def baseline(cluster: LocalCluster, root: Path) -> float:
    target = root / "baseline"
    shutil.rmtree(target, ignore_errors=True)
    argv = [str(cluster.bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
            "-D", str(target), "-Ft", "-X", "stream", "-c", "fast", "--no-password"]
    seconds, _ = timed(lambda: subprocess.run(argv, check=True, env=dict(os.environ, PGPASSWORD=cluster.password)))
    shutil.rmtree(target, ignore_errors=True)
    return seconds


def restore_once(record, key, root: Path) -> tuple[float, float]:
    """(seconds until the restored cluster takes writes, seconds including the row-count validation)."""
    target = root / "restored"
    port = free_port()
    try:
        total, result = timed(lambda: restore_backup(record=record, key=key,
                                                     destination=ClusterDestination(target, port)))
        assert result.row_counts_match, result.details
        return result.details["writable_after_seconds"], total
    finally:
        RestoredCluster(data_dir=target, port=port, password="").destroy()


def pgbackrest_runs(cluster: LocalCluster, root: Path, repeat: int) -> dict[str, list[float]] | None:
    binary = shutil.which("pgbackrest")
    if not binary:
        return None
    repo = root / "pgbackrest"
    repo.mkdir()
    give_to_server_user(repo)
    conf = repo / "pgbackrest.conf"
    conf.write_text(
        f"[global]\nrepo1-path={repo}/repo\ncompress-type=zst\nprocess-max=2\nstart-fast=y\n"
        f"repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={secrets.token_hex(16)}\n"
        f"log-path={repo}\nlock-path={repo}\nspool-path={repo}\n"
        f"[bench]\npg1-path={cluster.data_dir}\npg1-port={cluster.port}\npg1-socket-path={cluster.socket_dir}\n"
        "pg1-user=postgres\n"
    )
    give_to_server_user(repo)
    from disaster_recovery.postgres.cluster import run_server_command

    def brest(*args):
        return run_server_command([binary, f"--config={conf}", "--stanza=bench", *args], timeout=3600)

    cluster.query("ALTER SYSTEM SET archive_mode = 'on'")
    cluster.query("ALTER SYSTEM SET archive_command = %s", (f"{binary} --config={conf} --stanza=bench archive-push %p",))
    cluster.stop()
    cluster.start()
    brest("stanza-create")
    out: dict[str, list[float]] = {"backup": [], "restore": [], "open": []}
    for _ in range(repeat):
        out["backup"].append(timed(lambda: brest("--type=full", "backup"))[0])
        target = root / "pgbr-restore"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(mode=0o700)
        give_to_server_user(target)
        out["restore"].append(timed(lambda t=target: brest(f"--pg1-path={t}", "--type=immediate",
                                                           "--target-action=promote", "--archive-mode=off",
                                                           "restore"))[0])
        copy = LocalCluster(data_dir=target, port=free_port(), password="x", bindir=cluster.bindir)
        (target / "postgresql.auto.conf").write_text(
            (target / "postgresql.auto.conf").read_text()
            + f"\nport = {copy.port}\nunix_socket_directories = '{copy.socket_dir}'\nlisten_addresses = ''\n")
        started = time.monotonic()
        copy.start()
        while True:
            rows = subprocess.run([str(cluster.bindir / "psql"), "-h", str(copy.socket_dir), "-p", str(copy.port),
                                   "-U", "postgres", "-Atc", "SELECT pg_is_in_recovery()"],
                                  capture_output=True, text=True)
            if rows.stdout.strip() == "f":
                break
            time.sleep(0.05)
        out["open"].append(time.monotonic() - started)
        copy.destroy()
    cluster.query("ALTER SYSTEM RESET archive_mode")
    cluster.query("ALTER SYSTEM RESET archive_command")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dr-bench-backup-"))
    work.chmod(0o755)
    cluster = LocalCluster(data_dir=work / "source", port=free_port(), password=secrets.token_hex(8))
    try:
        return run(cluster, work, args)
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


def run(cluster: LocalCluster, work: Path, args) -> int:
    cluster.initdb()
    cluster.start()
    print(f"pgbench -i -s {args.scale} ...", flush=True)
    subprocess.run([str(cluster.bindir / "pgbench"), "-i", "-q", "-s", str(args.scale), "-h", "127.0.0.1", "-p",
                    str(cluster.port), "-U", "postgres", "postgres"], check=True, capture_output=True,
                   env=dict(os.environ, PGPASSWORD=cluster.password))
    cluster.query("CHECKPOINT")
    cluster.create_database("dr_catalog")
    migrate(cluster.dsn("dr_catalog"))
    catalog = Catalog.from_dsn(cluster.dsn("dr_catalog"))
    size = int(cluster.query("SELECT sum(pg_database_size(oid)) FROM pg_database")[0][0])
    key = EncryptionKey("bench", base64.b64decode(base64.b64encode(os.urandom(32))))
    endpoint = PgEndpoint(host="127.0.0.1", port=cluster.port, user="postgres", password=cluster.password)
    rows: dict[str, list[float]] = {}
    stored: dict[str, int] = {}
    records = {}
    for _ in range(args.repeat):
        rows.setdefault("baseline: pg_basebackup -Ft to disk", []).append(baseline(cluster, work))
        for where in ("server", "client"):
            label = f"ours: backup (zstd {where}) + AES-GCM + SHA-256"
            seconds, outcome = timed(lambda w=where: take_backup(source=source_for(w, work), catalog=catalog,
                                                                 endpoint=endpoint, key=key))
            rows.setdefault(label, []).append(seconds)
            stored[label] = outcome.record.compressed_size_bytes
            records[where] = outcome.record
        seconds, result = timed(lambda: verify_backup(catalog=catalog, backup_id=records["server"].id, key=key))
        assert result.status == "verified", result.error
        rows.setdefault("ours: verification restore test (amcheck, counts)", []).append(seconds)
        writable, total = restore_once(result.record, key, work)
        rows.setdefault("ours: restore to read-write", []).append(writable)
        rows.setdefault("ours: restore + row-count validation", []).append(total)
    peer = pgbackrest_runs(cluster, work, args.repeat)
    if peer:
        rows["pgBackRest: full backup (zst, aes, process-max 2)"] = peer["backup"]
        rows["pgBackRest: restore"] = peer["restore"]
        rows["pgBackRest: restore + open read-write"] = [r + o for r, o in zip(peer["restore"], peer["open"],
                                                                               strict=True)]
    print_table(rows, stored, size=size, scale=args.scale, repeat=args.repeat, peer=peer is not None)
    catalog.dispose()
    return 0


def print_table(rows, stored, *, size: int, scale: int, repeat: int, peer: bool) -> None:
    base = statistics.median(rows["baseline: pg_basebackup -Ft to disk"])
    print(f"\npgbench scale {scale}: {size / 1e6:.0f} MB of databases; medians of {repeat} runs; "
          f"{os.cpu_count()} CPUs")
    print(f"{'what':<54} {'seconds':>8} {'MB/s':>8} {'x baseline':>10} {'stored MB':>10}")
    for label, values in rows.items():
        seconds = statistics.median(values)
        kept = f"{stored[label] / 1e6:.1f}" if label in stored else ""
        print(f"{label:<54} {seconds:>8.2f} {size / 1e6 / seconds:>8.0f} {seconds / base:>10.2f} {kept:>10}")
    if not peer:
        print("(pgBackRest: not installed — `apt-get install pgbackrest` to compare)")


if __name__ == "__main__":
    sys.exit(main())
