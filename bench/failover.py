"""Automated failover, end to end, on a lab of its own: kill -9 the primary's postmaster under write load.

A throwaway lab (its own home in the temp folder, free ports; never the user's .lab) with synchronous
replication. A writer commits one row per transaction through a multi-host DSN and records every
acknowledged commit. Each trial: kill -9 the primary's postmaster; the health monitor (a trigger in the
triggerer) detects it and starts the failover plan through Airflow's REST API; Airflow runs it. Measured:
kill -> detection (the incident row), detection -> promotion (the step's promoted_at), kill -> first
acknowledged write on the new primary (the writer), acknowledged writes missing on the new primary, and
whether the old node, started again, refuses writes (split brain otherwise). Where Airflow's seconds go:
detection -> run queued -> promote task started -> promoted. Between trials the old primary is rejoined and
the primary switched back, both through their plans. The baseline, in the same command: the same kill on a
bare pair, promoted at once by a script (no detection, no Airflow).

  .venv/bin/python bench/failover.py [--trials 20] [--async] [--rearm 5]

--async: asynchronous replication; prints the loss the writer saw and checks that the catalog's
measured loss (failover_events / the execution's RPO) equals it. The lab's copy of the plans re-arms the
monitor after --rearm seconds (the shipped plan says 30 s) so that trials follow each other quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

import httpx  # noqa: E402
import yaml  # noqa: E402

from disaster_recovery.lab.stack import Lab  # noqa: E402
from disaster_recovery.postgres.cluster import LocalCluster, create_standby, free_port, wait_streaming  # noqa: E402
from disaster_recovery.postgres.ledger import LedgerWriter, lost_acknowledged, multi_host_dsn  # noqa: E402

FAILOVER_DAG = "dr_plan__wedsync-database-failover"
LOST_BEFORE: set[int] = set()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def kill_postmaster(node: LocalCluster) -> float:
    """SIGKILL the postmaster (its backends are left to die or be fenced); time.monotonic() of the kill."""
    pid = node.postmaster_pid()
    assert pid, f"{node.data_dir} is not running"
    moment = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return moment


def first_ack_after(writer: LedgerWriter, moment: float, port: int) -> float | None:
    times = [t for i, t in list(writer.ledger.acked.items()) if t > moment and writer.ledger.server.get(i) == port]
    return min(times) if times else None


def wait_for(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


def iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


class Api:
    def __init__(self, lab: Lab) -> None:
        self.url = lab.api_url
        token = httpx.post(f"{self.url}/auth/token", timeout=30, json={
            "username": lab.config.admin_user, "password": lab.config.admin_password}).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers=self.headers, timeout=30)

    def trigger(self, dag_id: str, reason: str) -> str:
        resp = httpx.post(f"{self.url}/api/v2/dags/{dag_id}/dagRuns", headers=self.headers, timeout=30,
                          json={"logical_date": None, "conf": {"reason": reason}})
        resp.raise_for_status()
        return resp.json()["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict:
        def done():
            resp = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
            return resp.json() if resp.status_code == 200 and resp.json()["state"] in ("success", "failed") else None

        return wait_for(done, timeout=timeout, what=f"{dag_id} run {run_id}")

    def tasks(self, dag_id: str, run_id: str) -> dict[str, dict]:
        data = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()
        return {t["task_id"]: t for t in data["task_instances"]}


def baseline(home: Path) -> float:
    """Kill -> first acknowledged write when a script promotes the standby at once (no detection, no Airflow)."""
    root = home / "baseline"
    root.mkdir()
    root.chmod(0o755)
    primary = LocalCluster(data_dir=root / "p", port=free_port(), password="bench-baseline")
    primary.initdb()
    primary.start()
    standby = create_standby(primary, data_dir=root / "s", port=free_port(), slot="s")
    standby.start()
    wait_streaming(primary, application_name=standby.name)
    primary.query(f"ALTER SYSTEM SET synchronous_standby_names = '\"{standby.name}\"'")
    primary.query("SELECT pg_reload_conf()")
    writer = LedgerWriter(multi_host_dsn([("127.0.0.1", primary.port), ("127.0.0.1", standby.port)],
                                         user="postgres", password=primary.password, dbname="postgres")).start()
    try:
        writer.wait_for_acks(200)
        killed = kill_postmaster(primary)
        standby.query("ALTER SYSTEM SET synchronous_standby_names = ''")
        standby.query("SELECT pg_promote(true, 60)")
        standby.query("SELECT pg_reload_conf()")
        first = wait_for(lambda: first_ack_after(writer, killed, standby.port), timeout=60, what="baseline write")
        return first - killed
    finally:
        writer.stop()
        standby.destroy()
        primary.destroy()


def prepare_lab(home: Path, *, synchronous: bool, rearm: float) -> Lab:
    plans = home / "plans"
    plans.mkdir(parents=True)
    for source in (REPO / "include" / "plans").glob("*.yaml"):
        shutil.copy(source, plans)
    plan_file = plans / "wedsync-database-failover.yaml"
    plan_file.write_text(plan_file.read_text().replace("rearm_after: 30s", f"rearm_after: {rearm:g}s"))
    clusters = yaml.safe_load((REPO / "include" / "clusters.yaml").read_text())
    clusters["clusters"][0]["synchronous"] = synchronous
    (home / "clusters.yaml").write_text(yaml.safe_dump(clusters))
    lab = Lab(home, auto_ports=True)
    lab.config.synchronous = synchronous
    lab.config.env = {"DR_PLANS_DIR": str(plans), "DR_CLUSTERS_FILE": str(home / "clusters.yaml")}
    lab.config.save()
    from disaster_recovery.plans import load_plan

    plan = load_plan(plan_file)  # the copy re-arms sooner: approve it as it is (it is the lab's own copy)
    text = plan_file.read_text()
    plan_file.write_text(text.replace(plan.approval.fingerprint, plan.fingerprint()))
    return lab


def catalog_row(lab: Lab, sql: str, params: tuple = ()) -> tuple | None:
    rows = lab.control.query(sql, params, dbname="dr_catalog")
    return rows[0] if rows else None


def trial(lab: Lab, api: Api, writer: LedgerWriter, *, number: int, rearm: float) -> dict:
    topology = lab.members.topology()
    old_name = topology.primary
    assert old_name and topology.streaming, topology.sentence
    time.sleep(rearm + 1.5)  # the monitor re-arms once the criteria have been clear for rearm_after
    writer.wait_for_acks(100)
    old = lab.nodes[old_name]
    started = datetime.now(UTC)
    killed_at = time.time()
    killed = kill_postmaster(old)
    incident = wait_for(lambda: catalog_row(
        lab, "SELECT id::text FROM failover_events WHERE automated AND initiated_at > %s", (started,)),
        timeout=60, what="the incident")[0]
    run_id = f"dr_incident__{incident}"
    run = api.wait_run(FAILOVER_DAG, run_id)
    impact = catalog_row(lab, "SELECT impact_assessment FROM failover_events WHERE id::text = %s", (incident,))[0]
    new_name = lab.members.topology().primary
    new = lab.nodes[new_name] if new_name else None
    writable = wait_for(lambda: first_ack_after(writer, killed, new.port), timeout=60, what="a write") if new else None
    lost = [i for i in lost_acknowledged(writer.ledger, new.dsn()) if i not in LOST_BEFORE] if new else []
    LOST_BEFORE.update(lost)  # a write lost in an earlier trial stays missing: count each once
    for write_id in lost:  # say what each lost write was: when, and by which server, it was acknowledged
        print(f"  lost write {write_id}: acknowledged {writer.ledger.acked[write_id] - killed:+.3f} s after the kill "
              f"by port {writer.ledger.server.get(write_id)} (old {old.port}, new {new.port})", flush=True)
    tasks = api.tasks(FAILOVER_DAG, run_id)
    detected = iso(impact.get("detected_at")).timestamp()
    promoted = iso(impact["promoted_at"]).timestamp() if impact.get("promoted_at") else None
    row = {
        "trial": number, "from": old_name, "to": new_name, "state": run["state"],
        "detect": detected - killed_at,
        "queued": iso(run["queued_at"]).timestamp() - detected,
        "validate": iso(tasks["validate_execution"]["end_date"]).timestamp()
        - iso(tasks["validate_execution"]["start_date"]).timestamp(),
        "to_promote_start": iso(tasks["promote_standby"]["start_date"]).timestamp() - iso(run["queued_at"]).timestamp(),
        "step": (promoted - iso(tasks["promote_standby"]["start_date"]).timestamp()) if promoted else None,
        "detect_to_promoted": (promoted - detected) if promoted else None,
        "kill_to_promoted": (promoted - killed_at) if promoted else None,
        "kill_to_writable": (writable - killed) if writable else None,
        "lost_acked": len(lost),
        "catalog_lost_tx": impact.get("lost_transactions"),
        "catalog_loss_s": impact.get("data_loss_seconds"),
    }
    # The old node, started again as an operator or a reboot would: it must refuse writes.
    old.start()
    old.wait_ready()
    refused = old.in_recovery()
    with contextlib.suppress(Exception):
        old.query("CREATE TABLE IF NOT EXISTS split_brain_probe (x int)")
        refused = False
    row["split_brain"] = 0 if refused else 1
    for dag_id in ("dr_plan__wedsync-rejoin", "dr_plan__wedsync-switchover"):
        state = api.wait_run(dag_id, api.trigger(dag_id, f"bench trial {number}"))["state"]
        assert state == "success", f"{dag_id} {state}: see the lab's logs in {lab.home}"
    return row


def print_table(rows: list[dict]) -> None:
    def f(value):
        return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    cols = [("trial", "#"), ("to", "new primary"), ("detect", "kill>detect"), ("queued", "detect>run"),
            ("to_promote_start", "run>promote task"), ("step", "step>promoted"), ("detect_to_promoted", "detect>promoted"),
            ("kill_to_writable", "kill>writable"), ("lost_acked", "lost acked"), ("catalog_lost_tx", "catalog lost tx"),
            ("split_brain", "split")]
    print("  ".join(f"{title:>14}" for _, title in cols))
    for row in rows:
        print("  ".join(f"{f(row[key]):>14}" for key, _ in cols))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--async", dest="asynchronous", action="store_true", help="asynchronous replication")
    parser.add_argument("--rearm", type=float, default=5.0, help="the lab's plan copy re-arms after this (s)")
    parser.add_argument("--keep", action="store_true", help="keep the lab (stopped) for a look afterwards")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="dr-bench-failover-"))
    home.chmod(0o755)
    lab = writer = None
    rows: list[dict] = []
    try:
        raw = baseline(home)
        print(f"baseline: a script promoting the standby at once: kill -> first acknowledged write {raw:.2f} s")
        lab = prepare_lab(home / "lab", synchronous=not args.asynchronous, rearm=args.rearm)
        lab.up(log=lambda line: None)
        api = Api(lab)
        wait_for(lambda: catalog_row(lab, "SELECT 1 FROM system_health_monitoring WHERE service_name = "
                                          "'dr-health-monitor'"), timeout=180, what="the health monitor")
        nodes = [("127.0.0.1", n.port) for n in lab.nodes.values()]
        writer = LedgerWriter(multi_host_dsn(nodes, user="postgres", password=lab.config.pg_password,
                                             dbname="postgres")).start()
        for number in range(1, args.trials + 1):
            rows.append(trial(lab, api, writer, number=number, rearm=args.rearm))
            r = rows[-1]
            print(f"trial {number}: {r['from']} -> {r['to']} kill->writable {r['kill_to_writable']:.2f} s, "
                  f"lost acked {r['lost_acked']}", flush=True)
    finally:
        if writer is not None:
            writer.stop()
        if lab is not None:
            lab.down(log=lambda line: None)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    print_table(rows)
    writable = [r["kill_to_writable"] for r in rows if r["kill_to_writable"] is not None]
    detect = [r["detect"] for r in rows]
    recovered = sum(1 for r in rows if r["state"] == "success" and r["kill_to_writable"] is not None)
    lost = sum(r["lost_acked"] for r in rows)
    split = sum(r["split_brain"] for r in rows)
    median_writable = statistics.median(writable) if writable else float("nan")
    phases = {k: statistics.median([r[k] for r in rows if r[k] is not None] or [float("nan")])
              for k in ("detect", "queued", "to_promote_start", "step", "kill_to_writable")}
    print("medians: kill->detect {detect:.2f} s, detect->run queued {queued:.2f} s, run queued->promote task "
          "started {to_promote_start:.2f} s, promote task->promoted {step:.2f} s; kill->writable "
          "{kill_to_writable:.2f} s".format(**phases))
    print(f"ratio to the baseline (a script promoting at once, {raw:.2f} s): {median_writable / raw:.1f}x; "
          "Patroni measured here (notes): 8.7 s (ttl 10, sync), 23.5 s (defaults)")
    if args.asynchronous:
        for r in rows:
            same = r["catalog_lost_tx"] is not None and r["catalog_lost_tx"] - r["lost_acked"] in (0, 1)
            print(f"trial {r['trial']}: client lost {r['lost_acked']} acknowledged writes; catalog measured "
                  f"{r['catalog_lost_tx']} lost transactions ({r['catalog_loss_s']} s): "
                  f"{'equal' if same else 'DIFFERENT'} (the catalog may count one more: the commit in flight)")
    print(f"failover: trials={len(rows)} recovered={recovered} lost_acked={lost} split_brain={split} "
          f"median_kill_to_writable_s={median_writable:.2f} p95_kill_to_writable_s="
          f"{percentile(writable, 0.95) if writable else float('nan'):.2f} "
          f"median_detect_s={statistics.median(detect) if detect else float('nan'):.2f}")
    return 0 if rows and recovered == len(rows) and not split and (args.asynchronous or not lost) else 1


if __name__ == "__main__":
    sys.exit(main())
