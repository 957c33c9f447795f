"""Helpers shared by the test_backup_* modules: keys and connections in the environment, sources, seed data."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from disaster_recovery.backups.keys import EncryptionKey
from disaster_recovery.backups.sources import Source
from disaster_recovery.catalog.repository import Catalog
from disaster_recovery.postgres.cluster import LocalCluster
from tests.support import SESSION_DIR, drop_cluster, make_cluster

KEY_ID = "test-key-1"
KEY_CONN = "dr_backup_key"


def new_key(key_id: str = KEY_ID) -> tuple[EncryptionKey, str]:
    raw = os.urandom(32)
    return EncryptionKey(key_id=key_id, key=raw), base64.b64encode(raw).decode()


def key_conn_json(b64: str, key_id: str = KEY_ID) -> str:
    return json.dumps({"conn_type": "generic", "login": key_id, "password": b64})


def pg_conn_json(cluster: LocalCluster, dbname: str = "postgres") -> str:
    return json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": cluster.port, "login": cluster.superuser,
        "password": cluster.password, "schema": dbname,
    })


def storage_root(name: str) -> Path:
    root = SESSION_DIR / f"{name}-{secrets.token_hex(3)}"
    root.mkdir(parents=True)
    root.chmod(0o755)
    return root


def source_doc(*, name: str, conn_id: str, method: str, root: Path, where: str | None = None,
               backup_type: str = "full", wal: bool = False) -> dict:
    doc = {
        "name": name, "conn_id": conn_id, "method": method, "backup_type": backup_type, "schedule": "@daily",
        "retention": {"keep_last": 7, "recovery_window": "14d"}, "freshness": {"max_age": "26h"},
        "storage": {"kind": "local", "path": str(root)}, "encryption": {"key_conn_id": KEY_CONN},
        "storage_class": "standard", "access_frequency": "frequent",
    }
    if where:
        doc["compression"] = {"algorithm": "zstd", "level": 3, "workers": 2, "where": where}
    if wal:
        doc["wal_archiving"] = {"enabled": True}
    if method == "logical":
        doc["logical"] = {"format": "custom", "jobs": 2}
    return doc


def make_source(**kwargs) -> Source:
    return Source.model_validate(source_doc(**kwargs))


def write_sources_file(path: Path, docs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"sources": docs}, sort_keys=False))
    return path


SEED_SQL = """
CREATE SCHEMA app;
CREATE TABLE public.accounts (id int PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL);
INSERT INTO public.accounts SELECT g, 'owner ' || g, g * 1.5 FROM generate_series(1, 5000) g;
CREATE INDEX accounts_owner ON public.accounts (owner);
CREATE TABLE app.orders (id bigserial PRIMARY KEY, account int REFERENCES public.accounts, placed timestamptz);
INSERT INTO app.orders (account, placed) SELECT 1 + g % 5000, now() - g * interval '1 minute'
  FROM generate_series(1, 3000) g;
CREATE TABLE "MixedCase Table" (x int);
INSERT INTO "MixedCase Table" SELECT generate_series(1, 17);
CREATE TABLE public.empty_one (x int);
CREATE UNLOGGED TABLE public.cache_u (x int);
INSERT INTO public.cache_u SELECT generate_series(1, 50);
"""

SEED_COUNTS = {"public.accounts": 5000, "app.orders": 3000, "public.MixedCase Table": 17, "public.empty_one": 0}


def seed(cluster: LocalCluster, dbname: str = "postgres") -> None:
    conn = cluster.connect(dbname)
    try:
        conn.cursor().execute(SEED_SQL)
    finally:
        conn.close()


def all_files(root: Path) -> list[str]:
    """Every file under ``root``, hidden temp files included (relative paths)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def catalog_for(catalog_cluster_db) -> Catalog:
    cluster, dbname = catalog_cluster_db
    return Catalog.from_dsn(cluster.dsn(dbname))


@contextlib.contextmanager
def backup_env(prefix: str, catalog_cluster_db, docs: Callable[[Path, str], dict[str, dict]]):
    """A seeded source cluster, a key, a storage root, the connections and a sources file for one module.

    ``docs(root, conn_id)`` returns the source documents by label; they come back validated in
    ``.sources`` (and their conn_id is ``<prefix>_source``). Everything is removed afterwards.
    """
    mp = pytest.MonkeyPatch()
    src = make_cluster(prefix.replace("_", "-"))
    seed(src)
    key, b64 = new_key()
    root = storage_root(f"{prefix}-store")
    cat_cluster, cat_db = catalog_cluster_db
    mp.setenv(f"AIRFLOW_CONN_{KEY_CONN.upper()}", key_conn_json(b64))
    mp.setenv(f"AIRFLOW_CONN_{prefix.upper()}_SOURCE", pg_conn_json(src))
    mp.setenv(f"AIRFLOW_CONN_{prefix.upper()}_CATALOG", cat_cluster.uri(cat_db))
    mp.setenv("DR_CATALOG_CONN_ID", f"{prefix}_catalog")
    documents = docs(root, f"{prefix}_source")
    mp.setenv("DR_BACKUPS_FILE", str(write_sources_file(root / "backups.yaml", list(documents.values()))))
    catalog = catalog_for(catalog_cluster_db)
    try:
        yield SimpleNamespace(src=src, key=key, b64=b64, root=root, catalog=catalog, mp=mp,
                              sources={label: Source.model_validate(d) for label, d in documents.items()})
    finally:
        catalog.dispose()
        mp.undo()
        drop_cluster(src)
        shutil.rmtree(root, ignore_errors=True)
