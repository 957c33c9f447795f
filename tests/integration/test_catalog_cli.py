"""``python -m disaster_recovery catalog migrate`` against a real empty database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "disaster_recovery", "catalog", "migrate", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO / "plugins"), **(env or {})},
    )


def test_migrate_applies_once_by_dsn_and_by_connection(control_cluster):
    control_cluster.create_database("cli_catalog")
    first = run("--dsn", control_cluster.dsn("cli_catalog"))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied 3 migration(s)")
    again = run("--conn-id", "cli_cat", env={"AIRFLOW_CONN_CLI_CAT": control_cluster.uri("cli_catalog")})
    assert again.returncode == 0, again.stderr
    assert "up to date (3 migrations already applied)" in again.stdout
    assert run().returncode == 2
