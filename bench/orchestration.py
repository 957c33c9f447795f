"""Orchestration latency: REST trigger -> success of an 8-step no-op plan (dry run), on a lab of its own.

A throwaway lab (its own home in the temp folder, free ports; never the user's .lab) whose plans folder
($DR_PLANS_DIR) holds a copy of the shipped failover plan and `bench-noop-8`: eight steps that change
nothing and cost next to nothing (SELECT 1 on the catalog and on each wedsync member by connection, TCP and
HTTP probes of the lab's ports, one webhook), three of them a parallel group, so ten tasks in eight levels.
What is left is Airflow's and our runtime's own cost. The shipped failover plan's dry run is the
realistic counterpart (its checks find the primary among the members first). Each run is triggered through
the REST API (conf dry_run true) and waited for with the API's /wait; measured from the client side, broken down
from the API's task instances and the catalog's step rows:

  trig>1st   POST sent -> first task instance scheduled (run created, its first scheduling loop)
  sched      time inside the run when no task was queued or running (the scheduler noticing an end and
             scheduling + queueing the next task)
  start      queued -> running, not overlapped by a running task (executor pick-up, process start)
  run        union of the tasks' start -> end (a task process: DAG parse, our runtime, the step, reporting)
  finish     last task end -> the client seeing success (run state, the /wait's next check)
  lab cpu    CPU seconds the whole lab used during the run (all its processes); load1 the machine's
             1-minute load average after it. The machine is shared: compare wall times at similar load,
             CPU seconds at any.

Configurations, in the same command: the no-op plan on the lab's LATENCY_SETTINGS (the target), the
shipped failover plan (dry run) on them, and the no-op plan on Airflow's defaults (the baseline; the lab
restarted with `latency_settings` off). One warm-up run each is printed but not counted.

  .venv/bin/python bench/orchestration.py [--runs 5] [--no-baseline] [--keep] [--json FILE]

The last line says whether the median trigger -> success of the no-op plan on the lab's settings met the
8 s target (`target_met`); the exit status is 1 only when a run failed or the bench could not run, so a
busy machine does not fail `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

import httpx  # noqa: E402

from disaster_recovery.lab.stack import AIRFLOW_COMPONENTS, Lab  # noqa: E402

NOOP = "bench-noop-8"
FAILOVER = "wedsync-database-failover"
TARGET_S = 8.0
POLL_S = 0.1

NOOP_PLAN = """\
name: {name}
description: Eight steps that change nothing, to time Airflow's path through a plan (bench/orchestration.py).
disaster_scenario: hardware_failure
version: "1.0"
tags: [bench]
objectives:
  rto: 5m
  rpo: 1m
execution_mode: manual
approval:
  status: approved
  approved_by: bench
  approved_at: 2026-01-01T00:00:00Z
  fingerprint: "{fingerprint}"
effective_date: 2025-01-01
review_frequency: 365d
steps:
  - name: check_catalog
    type: validation
    config:
      checks: [{{kind: sql, conn_id: dr_catalog, query: SELECT true, expected: true}}]
  - name: probe_api
    type: validation
    parallel_group: probes
    config:
      checks: [{{kind: tcp, host: 127.0.0.1, port: {api}}}]
  - name: probe_webhook
    type: validation
    parallel_group: probes
    config:
      checks: [{{kind: http, http_conn_id: dr_webhook}}]
  - name: probe_smtp
    type: validation
    parallel_group: probes
    config:
      checks: [{{kind: tcp, host: 127.0.0.1, port: {smtp}}}]
  - name: check_node1
    type: validation
    config:
      checks: [{{kind: sql, conn_id: wedsync_node1, query: SELECT 1, expected: 1}}]
  - name: check_node2
    type: validation
    config:
      checks: [{{kind: sql, conn_id: wedsync_node2, query: SELECT 1, expected: 1}}]
  - name: check_api
    type: validation
    config:
      checks: [{{kind: http, url: "http://127.0.0.1:{api}/api/v2/monitor/health"}}]
  - name: notify
    type: notification
    config:
      message: "bench {{{{ plan_name }}}} ran (execution {{{{ execution_id }}}})"
      channels:
        - kind: webhook
          http_conn_id: dr_webhook
"""


def write_plans(lab: Lab, folder: Path) -> None:
    """The no-op plan, approved as written, and an unchanged copy of the shipped failover plan."""
    from disaster_recovery.plans import load_plan
    from disaster_recovery.steps.registry import implemented_step_types

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "include" / "plans" / f"{FAILOVER}.yaml", folder)
    path = folder / f"{NOOP}.yaml"
    fields = {"name": NOOP, "api": lab.config.ports["api"], "smtp": lab.config.ports["smtp"]}
    path.write_text(NOOP_PLAN.format(fingerprint="0" * 64, **fields))
    plan = load_plan(path, implemented_step_types=implemented_step_types())
    path.write_text(NOOP_PLAN.format(fingerprint=plan.fingerprint(), **fields))
    assert load_plan(path).fingerprint() == plan.fingerprint()


def ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


class Api:
    def __init__(self, lab: Lab) -> None:
        self.client = httpx.Client(base_url=lab.api_url, timeout=30)
        token = self.client.post("/auth/token", json={
            "username": lab.config.admin_user, "password": lab.config.admin_password}).json()["access_token"]
        self.client.headers["Authorization"] = f"Bearer {token}"

    def wait_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while self.client.get(f"/api/v2/dags/{dag_id}").status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} did not appear in {timeout:g} s")
            time.sleep(1)

    def run(self, dag_id: str, reason: str, timeout: float = 300) -> dict:
        """Trigger a dry run and poll it to its end: client times, the run, its task instances."""
        body = {"logical_date": None, "conf": {"dry_run": True, "reason": reason}}
        sent = time.time()
        resp = self.client.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        resp.raise_for_status()
        run_id = resp.json()["dag_run_id"]
        # The API's own wait: it checks the run's state every POLL_S seconds and streams one JSON line per
        # check, so the client learns of the end within POLL_S without a request (auth, serialization) each
        # time: polling GET .../dagRuns/{id} at that rate cost the api-server ~1 s of CPU per run.
        state = None
        with self.client.stream("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/wait",
                                params={"interval": POLL_S}, timeout=timeout) as stream:
            for line in stream.iter_lines():
                if line.strip():
                    state = json.loads(line)["state"]
        seen = time.time()
        if state not in ("success", "failed"):
            raise TimeoutError(f"{dag_id} run {run_id}: the wait ended in state {state}")
        run = self.client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
        tis = self.client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        return {"dag_id": dag_id, "run_id": run_id, "sent": sent, "seen": seen, "run": run, "tis": tis}


def lab_cpu(lab: Lab) -> Counter:
    """CPU seconds used so far by each part of the lab: every process under its roots (the Airflow
    components' groups, the sinks, each postmaster), its own time plus that of the children it reaped (so
    a task process or a backend that ended between two readings is counted by its parent)."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
            fields = text[text.rindex(")") + 2:].split()
            stats[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    stack = [(pid, name.removeprefix("airflow-")) for name in ("sinks", *(f"airflow-{c}" for c in AIRFLOW_COMPONENTS))
             for pid in lab.processes.members(name)]
    stack += [(pid, "postgres") for c in (lab.control, *lab.nodes.values()) if (pid := c.postmaster_pid())]
    totals: Counter = Counter()
    seen: set[int] = set()
    while stack:
        pid, name = stack.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        totals[name] += stats[pid][1]
        stack += [(child, name) for child in children.get(pid, ())]
    return totals


def step_rows(lab: Lab, run_id: str) -> dict[str, tuple[float, float]]:
    """Catalog started_at/completed_at of each step of the run's execution (inside the task process)."""
    rows = lab.control.query(
        "SELECT s.step_name, extract(epoch FROM s.started_at), extract(epoch FROM s.completed_at) "
        "FROM recovery_step_executions s JOIN recovery_executions e ON e.id = s.execution_id "
        "WHERE e.trigger_event->>'run_id' = %s", (run_id,), dbname="dr_catalog")
    return {name: (float(a), float(b)) for name, a, b in rows if a is not None and b is not None}


def analyse(lab: Lab, raw: dict) -> dict:
    sent, seen, run = raw["sent"], raw["seen"], raw["run"]
    tis = [t for t in raw["tis"] if t.get("start_date") and t.get("end_date")]
    sched = [ts(t["scheduled_when"]) or ts(t["queued_when"]) for t in tis]
    queued = [(ts(t["queued_when"]) or ts(t["start_date"]), ts(t["end_date"])) for t in tis]
    running = [(ts(t["start_date"]), ts(t["end_date"])) for t in tis]
    first, last = min(sched), max(b for _, b in running)
    busy, run_time = union_length(queued), union_length(running)
    steps = step_rows(lab, raw["run_id"])
    tasks = {}
    for t, (q, end) in zip(tis, queued, strict=True):
        start = ts(t["start_date"])
        before = [b for _, b in running if b <= q]
        row = {"at": q - sent, "wait": q - max(before) if before else q - sent, "start": start - q,
               "run": end - start}
        if t["task_id"] in steps:
            a, b = steps[t["task_id"]]
            row |= {"pre": a - start, "step": b - a, "post": end - b}
        tasks[t["task_id"]] = row
    return {
        "state": run["state"], "total": seen - sent, "trig>1st": first - sent, "sched": (last - first) - busy,
        "start": busy - run_time, "run": run_time, "finish": seen - last,
        "queued>end": ts(run["end_date"]) - (ts(run["queued_at"]) or sent), "tasks": tasks, "raw": raw,
    }


def measure(lab: Lab, api: Api, *, label: str, plan: str, runs: int) -> list[dict]:
    dag_id = f"dr_plan__{plan}"
    api.wait_dag(dag_id)
    rows = []
    for number in range(runs + 1):  # run 0 warms up
        before = lab_cpu(lab)
        raw = api.run(dag_id, f"bench/orchestration.py {label} run {number}")
        cpu = lab_cpu(lab)
        cpu.subtract(before)
        row = analyse(lab, raw)
        row |= {"config": label, "n": number, "cpu": dict(cpu), "lab cpu": sum(cpu.values()),
                "load1": os.getloadavg()[0]}
        print(f"  {label} run {number}{' (warm-up)' if number == 0 else ''}: {row['state']} "
              f"{row['total']:.2f} s", flush=True)
        if row["state"] != "success":
            raise RuntimeError(f"{dag_id} run {number} {row['state']}: see the lab's logs in {lab.home}")
        rows.append(row)
    return rows


COLUMNS = ("total", "trig>1st", "sched", "start", "run", "finish", "lab cpu", "load1")
CPU_PARTS = ("scheduler", "api-server", "postgres", "triggerer", "dag-processor", "sinks")


def print_runs(rows: list[dict]) -> None:
    print(f"{'config':<22} {'run':>4} " + " ".join(f"{c:>9}" for c in COLUMNS))
    for r in rows:
        n = "warm" if r["n"] == 0 else str(r["n"])
        print(f"{r['config']:<22} {n:>4} " + " ".join(f"{r[c]:>9.2f}" for c in COLUMNS))


def print_summary(groups: dict[str, list[dict]]) -> None:
    print(f"{'config':<22} {'stat':>6} " + " ".join(f"{c:>9}" for c in COLUMNS))
    for label, rows in groups.items():
        counted = [r for r in rows if r["n"] > 0]
        for stat, fn in (("median", statistics.median), ("min", min), ("max", max)):
            print(f"{label:<22} {stat:>6} " + " ".join(f"{fn([r[c] for r in counted]):>9.2f}" for c in COLUMNS))


def print_cpu(groups: dict[str, list[dict]]) -> None:
    """Medians of the CPU seconds each part of the lab used per run (scheduler: with its executor's
    workers, i.e. the task supervisors, and the task processes)."""
    print(f"lab CPU seconds per run, medians: {'config':<18} " + " ".join(f"{c:>13}" for c in CPU_PARTS))
    for label, rows in groups.items():
        counted = [r for r in rows if r["n"] > 0]
        print(f"{'':<34}{label:<18} " + " ".join(
            f"{statistics.median(r['cpu'].get(c, 0.0) for r in counted):>13.2f}" for c in CPU_PARTS))


def print_tasks(label: str, rows: list[dict]) -> None:
    """Medians per task: wait = upstream end -> queued; start = queued -> running; run = running -> end;
    pre/step/post split run at the catalog's step started_at/completed_at (step tasks only)."""
    counted = [r for r in rows if r["n"] > 0]
    names = sorted(counted[0]["tasks"], key=lambda n: statistics.median(r["tasks"][n]["at"] for r in counted))
    cols = ("wait", "start", "run", "pre", "step", "post")
    print(f"per task, medians ({label}):")
    print(f"  {'task':<20} " + " ".join(f"{c:>7}" for c in cols))
    for name in names:
        values = []
        for c in cols:
            got = [r["tasks"][name][c] for r in counted if c in r["tasks"].get(name, {})]
            values.append(f"{statistics.median(got):>7.2f}" if got else f"{'-':>7}")
        print(f"  {name:<20} " + " ".join(values))


def cleanup(lab: Lab | None, home: Path, *, keep: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave the lab running
    try:
        if lab is not None:
            lab.down(log=lambda line: None)
    finally:
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="counted runs per configuration (after one warm-up)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the lab restart on Airflow's defaults")
    parser.add_argument("--keep", action="store_true", help="keep the lab's folder (stopped) for a look afterwards")
    parser.add_argument("--json", type=Path, help="also write every run (task instances included) to this file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # make bench/CI kills clean up like Ctrl-C
    home = Path(tempfile.mkdtemp(prefix="dr-bench-orchestration-"))
    home.chmod(0o755)
    lab = None
    groups: dict[str, list[dict]] = {}
    try:
        lab = Lab(home / "lab", auto_ports=True)
        write_plans(lab, home / "plans")
        lab.config.env = {"DR_PLANS_DIR": str(home / "plans")}
        lab.config.save()
        print(f"lab in {lab.home} (api {lab.api_url}); plans in {home / 'plans'}", flush=True)
        lab.up(log=lambda line: None)
        api = Api(lab)
        groups["noop-8 tuned"] = measure(lab, api, label="noop-8 tuned", plan=NOOP, runs=args.runs)
        groups["failover tuned"] = measure(lab, api, label="failover tuned", plan=FAILOVER, runs=args.runs)
        if not args.no_baseline:
            lab.down(log=lambda line: None)
            lab.config.latency_settings = False
            lab.config.save()
            lab.up(log=lambda line: None)
            api = Api(lab)
            groups["noop-8 defaults"] = measure(lab, api, label="noop-8 defaults", plan=NOOP, runs=args.runs)
    finally:
        cleanup(lab, home, keep=args.keep)
        if args.json:
            args.json.write_text(json.dumps(groups, indent=1, default=str))
    print()
    print_runs([r for rows in groups.values() for r in rows])
    print()
    print_summary(groups)
    print()
    print_cpu(groups)
    for label, rows in groups.items():
        print()
        print_tasks(label, rows)
    tuned = [r["total"] for r in groups["noop-8 tuned"] if r["n"] > 0]
    median = statistics.median(tuned)
    extra = {label.replace(" ", "_").replace("-", ""): statistics.median([r["total"] for r in rows if r["n"] > 0])
             for label, rows in groups.items() if label != "noop-8 tuned"}
    print()
    counted = [r for r in groups["noop-8 tuned"] if r["n"] > 0]
    print(f"orchestration: runs={len(tuned)} median_trigger_to_success_s={median:.2f} target_s={TARGET_S:.2f} "
          f"min_s={min(tuned):.2f} max_s={max(tuned):.2f} "
          + " ".join(f"median_{k}_s={v:.2f}" for k, v in extra.items())
          + f" median_lab_cpu_s={statistics.median(r['lab cpu'] for r in counted):.2f}"
          f" median_load1={statistics.median(r['load1'] for r in counted):.2f} cores={os.cpu_count()}"
          f" target_met={'yes' if median <= TARGET_S else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
