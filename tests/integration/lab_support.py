"""What the lab tests share: running `python -m disaster_recovery.lab`, waiting on Airflow's REST API, reading
the catalog, and finding a lab's processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def lab_plans_dir(home: Path) -> Path:
    """The plans folder of the lab at ``home`` when a test gave it one (beside the home)."""
    return home.parent / f"{home.name}-plans"


def lab_command(home: Path, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    if lab_plans_dir(home).is_dir():  # every `up` of this lab reads the same plans
        env["DR_PLANS_DIR"] = str(lab_plans_dir(home))
    env.update(env_extra or {})
    env["PYTHONPATH"] = str(REPO / "plugins")
    return subprocess.run(
        [sys.executable, "-m", "disaster_recovery.lab", "--home", str(home), "--auto-ports", *args],
        env=env, capture_output=True, text=True, timeout=600, cwd=REPO,
    )


def wait_for_dag(lab, headers, dag_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{lab.api_url}/api/v2/dags/{dag_id}", headers=headers, timeout=10).status_code != 200:
        assert time.monotonic() < deadline, f"{dag_id} never appeared"
        time.sleep(1)


def wait_for_run(lab, headers, dag_id: str, run_id: str, timeout: float = 300) -> str:
    """The run's final state. A run that does not exist yet is waited for too: the health monitor writes
    its incident row first and creates the run a moment later (longer on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{lab.api_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}", headers=headers, timeout=10)
        if response.status_code != 404:
            assert response.status_code == 200, response.text
            if response.json()["state"] in ("success", "failed"):
                return response.json()["state"]
        time.sleep(1)
    return "timeout"


def catalog_rows(lab, sql: str, params: tuple = ()) -> list[tuple]:
    return lab.control.query(sql, params, dbname="dr_catalog")


def wait_until(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.5)


def trigger(lab, headers, dag_id: str, reason: str, **conf) -> str:
    wait_for_dag(lab, headers, dag_id)
    resp = httpx.post(f"{lab.api_url}/api/v2/dags/{dag_id}/dagRuns", headers=headers,
                      json={"logical_date": None, "conf": {"reason": reason, **conf}}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()["dag_run_id"]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def processes_of(lab) -> dict[int, str]:
    """Every running process started with this lab's environment (DR_LAB_HOME): {pid: command line}."""
    marker = f"DR_LAB_HOME={lab.home}".encode()
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ and running(int(entry)):
            found[int(entry)] = command_line(int(entry))
    return found
