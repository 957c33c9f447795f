"""Session-wide test support shared by conftest.py and test modules: the session folder and clusters.

Import it as ``tests.support`` (never import conftest.py from a test: pytest has it loaded already).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from disaster_recovery.postgres.cluster import LocalCluster, free_port

REPO = Path(__file__).resolve().parents[1]
SESSION_DIR = Path(os.environ.get("DR_TEST_SESSION_DIR") or tempfile.mkdtemp(prefix="dr-tests-"))
os.environ["DR_TEST_SESSION_DIR"] = str(SESSION_DIR)
# The clusters run as the unprivileged postgres OS user when we are root: it must reach their folders.
SESSION_DIR.chmod(0o755)
_CLUSTERS: list[LocalCluster] = []


def register_cluster(cluster: LocalCluster) -> LocalCluster:
    """Have the session destroy this cluster at the latest when it ends."""
    _CLUSTERS.append(cluster)
    return cluster


def make_cluster(name: str, *, base: Path | None = None) -> LocalCluster:
    """A new running cluster under the session folder (destroyed at the latest when the session ends)."""
    folder = base or SESSION_DIR / "clusters"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    cluster = register_cluster(
        LocalCluster(data_dir=folder / f"{name}-{secrets.token_hex(3)}", port=free_port(),
                     password=secrets.token_hex(12))
    )
    cluster.initdb()
    cluster.start()
    return cluster


def drop_cluster(cluster: LocalCluster) -> None:
    cluster.destroy()
    if cluster in _CLUSTERS:
        _CLUSTERS.remove(cluster)


def destroy_all() -> None:
    for cluster in list(_CLUSTERS):
        drop_cluster(cluster)
    shutil.rmtree(SESSION_DIR, ignore_errors=True)
