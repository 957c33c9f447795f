"""A test run killed halfway leaves nothing behind once the next one starts (tests/sweeper.py).

A real pytest session (our conftest, as a plugin) makes a running cluster, a SIGKILLed one, a stray
subprocess and a scratch restore folder, and is then SIGKILLed itself. The sweep the next session starts
with stops the server, releases the dead one's shared memory, ends the process and removes the folders:
and leaves this live session's clusters, and a cluster no session registered, alone.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from disaster_recovery.postgres import ipc
from disaster_recovery.postgres.cluster import LocalCluster, free_port
from tests.sweeper import REGISTRY, TMP_ROOT, SessionRecord, alive, registry_lock, sweep_dead_sessions

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]

KILLED_SESSION = '''
import json, os, subprocess, time
from pathlib import Path
from disaster_recovery.postgres import ipc
from tests.support import SCRATCH_DIR, SESSION_DIR, make_cluster

def test_killed_halfway():
    running = make_cluster("left-running")
    crashed = make_cluster("left-crashed")
    shmid = ipc.server_sysv_id(crashed.data_dir)
    control = f"PostgreSQL.{ipc.sysv_control_handle(shmid)}"
    crashed.kill()
    stray = subprocess.Popen(["sleep", "600"])
    (SCRATCH_DIR / "dr-verify-left").mkdir()
    Path(os.environ["READY_FILE"]).write_text(json.dumps({
        "pid": os.getpid(), "session_dir": str(SESSION_DIR), "scratch_dir": str(SCRATCH_DIR),
        "running": str(running.data_dir), "postmaster": running.postmaster_pid(), "stray": stray.pid,
        "crashed_shm": [control, *(ipc.control_items(control) or [])], "crashed_sysv": shmid,
    }))
    time.sleep(600)
'''


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the session to be killed ended by itself: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the session to be killed never got ready")
        time.sleep(0.1)
    return json.loads(path.read_text())


def _bystander() -> LocalCluster:
    """A running cluster like the developer's lab: in a folder of its own that no session registered."""
    folder = Path(tempfile.mkdtemp(prefix="bystander-", dir=TMP_ROOT))
    folder.chmod(0o755)
    cluster = LocalCluster(data_dir=folder / "pg", port=free_port(), password=secrets.token_hex(8))
    cluster.initdb()
    cluster.start()
    return cluster


def test_the_next_session_clears_what_a_killed_one_left(tmp_path, control_cluster):
    (tmp_path / "test_killed.py").write_text(KILLED_SESSION)
    ready = tmp_path / "ready.json"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DR_", "AIRFLOW", "PYTEST_")) and k != "TMPDIR"}
    env.update(PYTHONPATH=f"{REPO / 'plugins'}:{REPO}", READY_FILE=str(ready))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(tmp_path / "test_killed.py")],
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    left = _wait_for(ready, proc)
    bystander = _bystander()
    done = None
    try:
        # Under the registry's lock, so that no other session starting meanwhile clears the dead one first.
        with registry_lock():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            proc.stdout.close()
            # What the kill left: a running server, a dead one's shared memory, a process, the folders, the record.
            assert alive(left["postmaster"]) and alive(left["stray"])
            assert all((ipc.SHM / name).exists() for name in left["crashed_shm"])
            assert left["crashed_sysv"] in ipc.sysv_segments()
            assert Path(left["session_dir"]).is_dir() and (Path(left["scratch_dir"]) / "dr-verify-left").is_dir()
            record = SessionRecord(**json.loads((REGISTRY / f"{left['pid']}.json").read_text()))
            assert left["running"] in record.clusters and not record.owner_alive()
            done = sweep_dead_sessions()
        assert bystander.query("SELECT 1") == [(1,)]  # in no session's folders: never touched
    finally:
        if done is None:  # an assertion failed first: still leave nothing behind
            with registry_lock():
                sweep_dead_sessions()
        bystander.destroy()
        shutil.rmtree(bystander.data_dir.parent, ignore_errors=True)

    assert any(f"stopped the postmaster {left['postmaster']}" in line for line in done), done
    assert not alive(left["postmaster"]) and not alive(left["stray"])
    assert not any((ipc.SHM / name).exists() for name in left["crashed_shm"])
    assert left["crashed_sysv"] not in ipc.sysv_segments()
    assert not Path(left["session_dir"]).exists() and not Path(left["scratch_dir"]).exists()
    assert not (REGISTRY / f"{left['pid']}.json").exists()
    # This session, alive, is not another's leftovers.
    assert control_cluster.query("SELECT 1") == [(1,)]
