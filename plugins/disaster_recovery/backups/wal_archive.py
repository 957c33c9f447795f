"""Continuous WAL archiving into the backup storage, and fetching it back for point-in-time recovery.

The primary's ``archive_command`` and a restored cluster's ``restore_command`` call this module::

    python -m disaster_recovery.backups.wal_archive push  --config FILE %p %f
    python -m disaster_recovery.backups.wal_archive fetch --config FILE %f %p

Each WAL file is zstd-compressed, sealed (AES-256-GCM, the backups' format) and stored at
``<source>/wal/<timeline>/<file>.zst.drbk``. A push of a file already archived with the same content
succeeds (PostgreSQL retries after a crash); with other content it fails loudly. ``fetch`` exits 1
when the file is not archived (PostgreSQL asks for files that may not exist, e.g. the next timeline's
history), writing nothing.

Both commands run as the server's OS user, outside Airflow: they cannot read Airflow connections. The
config FILE (JSON: source, storage, key_file) and the key file it names (JSON: key_id, key in base64)
are written from the Airflow connection by `write_archive_config` — called by the backup DAG or the
lab — into a folder of the server user's, mode 0700/0600: readable by that user only. For S3 storage
the config also carries the boto3 client settings resolved from the AWS connection when it is written
(keys, region, endpoint), so a segment costs one short Python start there too, not an Airflow import
(seconds: the archive could not keep up with a busy primary). A connection that needs more (a role to
assume, a profile) is used through the S3Hook: put ``AIRFLOW_CONN_<ID>`` in the config's ``environment``.

This module imports nothing of Airflow.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import hashlib
import json
import os
import shlex
import sys
import sysconfig
import time
from pathlib import Path

import zstandard

from disaster_recovery.backups.crypto import SealedReader, SealingWriter
from disaster_recovery.backups.keys import EncryptionKey
from disaster_recovery.backups.storage import ObjectExists, storage_from_config

PLUGINS_DIR = Path(__file__).resolve().parents[2]
SUFFIX = ".zst.drbk"
COMPRESSION_LEVEL = 3


def wal_relpath(source: str, file_name: str) -> str:
    if "/" in file_name or file_name.startswith("."):
        raise ValueError(f"not a WAL file name: {file_name!r}")
    return f"{source}/wal/{file_name[:8]}/{file_name}{SUFFIX}"


def load_config(path: str | Path) -> tuple[dict, EncryptionKey]:
    config = json.loads(Path(path).read_text())
    for name, value in (config.get("environment") or {}).items():
        os.environ[name] = str(value)
    key_doc = json.loads(Path(config["key_file"]).read_text())
    key = EncryptionKey(key_id=key_doc["key_id"], key=base64.b64decode(key_doc["key"]))
    return config, key


def _sealed_plaintext_sha256(storage, relpath: str, *, key: EncryptionKey) -> str:
    digest = hashlib.sha256()
    reader = storage.open_reader(relpath)
    try:
        sealed = SealedReader(reader, key=key)
        dobj = zstandard.ZstdDecompressor().decompressobj()
        while chunk := sealed.read(4 * 1024 * 1024):
            digest.update(dobj.decompress(chunk))
    finally:
        reader.close()
    return digest.hexdigest()


def push(config: dict, key: EncryptionKey, *, path: Path, file_name: str) -> str:
    """Archive one WAL file; returns 'stored' or 'already archived'. Raises on any problem."""
    storage = storage_from_config(config["storage"])
    relpath = wal_relpath(config["source"], file_name)
    data = path.read_bytes()
    if storage.exists(relpath):
        return _same_or_fail(storage, relpath, key=key, data=data, file_name=file_name)
    compressed = zstandard.ZstdCompressor(level=int(config.get("compression_level", COMPRESSION_LEVEL))).compress(data)
    writer = storage.open_writer(relpath)
    try:
        sealer = SealingWriter(writer, key=key)
        sealer.write(compressed)
        sealer.close()
        writer.commit()
    except ObjectExists:  # archived meanwhile by a retry that raced us
        return _same_or_fail(storage, relpath, key=key, data=data, file_name=file_name)
    except BaseException:
        writer.abort()
        raise
    return "stored"


def _same_or_fail(storage, relpath: str, *, key: EncryptionKey, data: bytes, file_name: str) -> str:
    if _sealed_plaintext_sha256(storage, relpath, key=key) == hashlib.sha256(data).hexdigest():
        return "already archived"
    raise RuntimeError(f"{storage.location(relpath)} already holds a different {file_name}: refusing to overwrite")


def fetch(config: dict, key: EncryptionKey, *, file_name: str, destination: Path) -> bool:
    """Restore one archived WAL file to ``destination``; False when it is not archived."""
    storage = storage_from_config(config["storage"])
    relpath = wal_relpath(config["source"], file_name)
    if not storage.exists(relpath):
        return False
    temp = destination.with_name(destination.name + ".dr-fetch")
    reader = storage.open_reader(relpath)
    try:
        sealed = SealedReader(reader, key=key)
        dobj = zstandard.ZstdDecompressor().decompressobj()
        with open(temp, "wb") as out:
            while chunk := sealed.read(4 * 1024 * 1024):
                out.write(dobj.decompress(chunk))
            if not dobj.eof:
                raise RuntimeError(f"{storage.location(relpath)}: the zstd stream ends early")
        os.replace(temp, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    finally:
        reader.close()
    return True


def archived_files(storage, source: str) -> list[str]:
    """The WAL file names archived for ``source`` (without the suffix), sorted."""
    prefix = f"{source}/wal/"
    return sorted(
        rel.rsplit("/", 1)[-1][: -len(SUFFIX)] for rel in storage.list(prefix) if rel.endswith(SUFFIX)
    )


DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
_HEX = frozenset("0123456789ABCDEF")


def is_segment_name(name: str) -> bool:
    """A whole WAL segment (24 hex digits): not a ``.partial``, ``.backup`` or ``.history`` file."""
    return len(name) == 24 and set(name) <= _HEX


def segment_number(name: str, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[int, int]:
    """(timeline, segment number counted from the start of WAL) of a segment name."""
    per_log = 0x100000000 // segment_size
    return int(name[:8], 16), int(name[8:16], 16) * per_log + int(name[16:24], 16)


def segment_name(timeline: int, number: int, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    per_log = 0x100000000 // segment_size
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def first_missing_segment(names: list[str], *, after: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str | None:
    """The first segment after ``after`` that the archive (file ``names``) lacks while it holds later ones.

    A segment number counts as archived on any timeline from ``after``'s on (after a promotion the new
    timeline's copy of the switch segment holds what recovery needs). The missing one is named on the
    timeline of the archived segment before it. None when the archive has no gap after ``after``.
    """
    first_timeline, start = segment_number(after, segment_size=segment_size)
    timelines: dict[int, int] = {}
    for name in names:
        if is_segment_name(name):
            timeline, number = segment_number(name, segment_size=segment_size)
            if timeline >= first_timeline and number > start:
                timelines[number] = max(timeline, timelines.get(number, 0))
    previous = first_timeline
    for number in range(start + 1, max(timelines, default=start)):
        if number not in timelines:
            return segment_name(previous, number, segment_size=segment_size)
        previous = timelines[number]
    return None


# --- set-up (runs in Airflow / the lab, as root or the server user) -----------------------------------


def write_archive_config(
    *,
    folder: Path,
    source: str,
    storage_config: dict,
    key: EncryptionKey,
    environment: dict[str, str] | None = None,
) -> Path:
    """Write ``folder/archive.json`` and ``folder/archive.key`` for the server user only; the config path.

    For local storage it also creates ``<root>/<source>/wal`` for the server user (who writes there); for
    S3 it adds the connection's static client settings (``storage.client``) unless given.
    """
    from disaster_recovery.postgres.cluster import give_to_server_user

    storage_config = dict(storage_config)
    if storage_config.get("kind") == "s3" and "client" not in storage_config:
        settings = storage_from_config(storage_config).static_client_settings()
        if settings is not None:
            storage_config["client"] = settings

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    key_file = folder / "archive.key"
    config_file = folder / "archive.json"
    _write_private(key_file, json.dumps({"key_id": key.key_id, "key": base64.b64encode(key.key).decode()}))
    config = {"source": source, "storage": dict(storage_config), "key_file": str(key_file),
              "compression_level": COMPRESSION_LEVEL}
    if environment:
        config["environment"] = dict(environment)
    _write_private(config_file, json.dumps(config, indent=2))
    give_to_server_user(folder)
    if storage_config.get("kind", "local") == "local":
        wal_dir = Path(storage_config["path"]) / source / "wal"
        wal_dir.mkdir(parents=True, exist_ok=True)
        give_to_server_user(wal_dir)
    return config_file


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


RUNTIME_MODULES = (
    "disaster_recovery/__init__.py",
    "disaster_recovery/backups/__init__.py",
    "disaster_recovery/backups/crypto.py",
    "disaster_recovery/backups/keys.py",
    "disaster_recovery/backups/storage.py",
    "disaster_recovery/backups/wal_archive.py",
)
RUNTIME_PACKAGES = ("zstandard", "cryptography")


def _probe(python: str, pythonpath: str) -> str | None:
    """None when the server user can import this module with that interpreter and path; else why not."""
    from disaster_recovery.postgres.cluster import run_server_command

    try:
        proc = run_server_command(
            [python, "-c", "import disaster_recovery.backups.wal_archive"],
            check=False,
            env=dict(os.environ, PYTHONPATH=pythonpath),
        )
    except OSError as exc:  # e.g. a venv under /root: the server user may not run it
        return f"{python}: {exc.strerror}"
    if proc.returncode == 0:
        return None
    return f"{python}: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}"


def stage_runtime(root: Path | None = None) -> Path:
    """A copy of just what the archive/restore commands import, readable by every user.

    For a checkout the server user cannot reach (say, under /root): this module, the crypto, key and
    storage modules, and the zstandard and cryptography packages of our venv, copied into a folder
    named after their content, so a changed checkout stages anew. It goes in ``root``, else
    $DR_WAL_RUNTIME_DIR, else the temp folder.
    """
    import shutil
    import tempfile

    site = Path(sysconfig.get_paths()["purelib"])
    digest = hashlib.sha256()
    for rel in RUNTIME_MODULES:
        digest.update((PLUGINS_DIR / rel).read_bytes())
    for name in RUNTIME_PACKAGES:
        digest.update(str((site / name).stat().st_mtime_ns).encode())
    root = root or Path(os.environ.get("DR_WAL_RUNTIME_DIR") or tempfile.gettempdir())
    target = root / f"dr-wal-runtime-{digest.hexdigest()[:16]}"
    if (target / ".complete").exists():
        return target
    partial = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    for rel in RUNTIME_MODULES:
        (partial / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PLUGINS_DIR / rel, partial / rel)
    for name in RUNTIME_PACKAGES:
        shutil.copytree(site / name, partial / name, ignore=shutil.ignore_patterns("__pycache__"))
    for folder, _dirs, files in os.walk(partial):
        os.chmod(folder, 0o755)
        for f in files:
            os.chmod(os.path.join(folder, f), 0o644 if not f.endswith(".so") else 0o755)
    (partial / ".complete").touch()
    with contextlib.suppress(OSError):
        partial.rename(target)
    shutil.rmtree(partial, ignore_errors=True)
    return target


@functools.lru_cache(maxsize=1)
def server_python() -> tuple[str, str]:
    """(interpreter, PYTHONPATH) with which the server OS user can import this module.

    Our own interpreter when that user can run it; else the system python3 with our venv's
    site-packages (same Python minor version) — e.g. when the venv's Python lives under /root; else,
    when the checkout itself is out of that user's reach, the system python3 with a staged copy.
    """
    site = sysconfig.get_paths()["purelib"]
    system = [
        p for p in (f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}", "/usr/bin/python3")
        if Path(p).exists()
    ]
    candidates = [(sys.executable, str(PLUGINS_DIR))] + [(p, f"{PLUGINS_DIR}:{site}") for p in system]
    problems = []
    if os.environ.get("DR_WAL_RUNTIME") != "staged":
        for python, pythonpath in candidates:
            if Path(python).exists():
                why = _probe(python, pythonpath)
                if why is None:
                    return python, pythonpath
                problems.append(why)
    if system:
        staged = str(stage_runtime())
        for python in system:
            why = _probe(python, staged)
            if why is None:
                return python, staged
            problems.append(f"{why} (staged copy {staged})")
    raise RuntimeError(f"no Python the PostgreSQL server user can run this module with: {'; '.join(problems)}")


def _command(action: str, config_path: Path, args: str) -> str:
    python, pythonpath = server_python()
    return (
        f"PYTHONPATH={shlex.quote(pythonpath)} {shlex.quote(python)} -m disaster_recovery.backups.wal_archive "
        f"{action} --config {shlex.quote(str(config_path))} {args}"
    )


def archive_command(config_path: Path) -> str:
    """The primary's ``archive_command``."""
    return _command("push", config_path, "%p %f")


def restore_command(config_path: Path) -> str:
    """A restoring cluster's ``restore_command``."""
    return _command("fetch", config_path, "%f %p")


def enable_archiving(conn, *, config_path: Path) -> bool:
    """ALTER SYSTEM the archive settings on a primary; True when a restart is needed (archive_mode was off)."""
    cur = conn.cursor()
    cur.execute("ALTER SYSTEM SET archive_command = %s", (archive_command(config_path),))
    cur.execute("ALTER SYSTEM SET archive_mode = 'on'")
    cur.execute("SELECT pg_reload_conf()")
    cur.execute("SHOW archive_mode")
    return cur.fetchone()[0] == "off"


def wait_archived(conn, *, timeout: float = 60) -> str:
    """Switch to a new WAL file and wait until the one switched away from is archived; its name."""
    cur = conn.cursor()
    cur.execute("SELECT pg_walfile_name(pg_switch_wal())")
    wanted = cur.fetchone()[0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur.execute("SELECT last_archived_wal, last_failed_wal, last_failed_time FROM pg_stat_archiver")
        archived, failed, failed_at = cur.fetchone()
        if archived and archived[:24] >= wanted:
            return wanted
        time.sleep(0.1)
    raise TimeoutError(f"WAL file {wanted} not archived after {timeout} s (last failure: {failed} at {failed_at})")


# --- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m disaster_recovery.backups.wal_archive")
    sub = parser.add_subparsers(dest="action", required=True)
    p_push = sub.add_parser("push", help="archive_command: push %%p %%f")
    p_push.add_argument("--config", required=True)
    p_push.add_argument("path")
    p_push.add_argument("file_name")
    p_fetch = sub.add_parser("fetch", help="restore_command: fetch %%f %%p")
    p_fetch.add_argument("--config", required=True)
    p_fetch.add_argument("file_name")
    p_fetch.add_argument("destination")
    args = parser.parse_args(argv)
    try:
        config, key = load_config(args.config)
        if args.action == "push":
            outcome = push(config, key, path=Path(args.path), file_name=args.file_name)
            if outcome != "stored":
                print(f"wal_archive: {args.file_name} {outcome}", file=sys.stderr)
            return 0
        return 0 if fetch(config, key, file_name=args.file_name, destination=Path(args.destination)) else 1
    except Exception as exc:  # the server logs our stderr; a non-zero exit makes it retry
        print(f"wal_archive {args.action} {args.file_name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
