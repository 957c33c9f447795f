"""How long Airflow takes to parse our recovery-plan DAG file, against a naive generator, in one run.

For N = 10, 100, 1000 generated plans (8 steps each, with parallel groups) it prints:
  - file execution: a DagBag over dags/recovery_plans.py (YAML read + validation + rendering)
  - serialization: Airflow's own serialization of the resulting DAGs
  - per plan: file execution / N
  - single DAG: a task's process building only its own DAG (get_parsing_context)
and the same for a baseline: a plain TaskFlow generator (YAML -> one @task per step, no validation).

  .venv/bin/python bench/parse_plans.py [--sizes 10,100,1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
if "AIRFLOW_HOME" not in os.environ:
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-airflow-")
    atexit.register(shutil.rmtree, os.environ["AIRFLOW_HOME"], True)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"

import yaml  # noqa: E402

BASELINE_DAG_FILE = '''
import os
from pathlib import Path
import yaml
from datetime import datetime
from airflow.sdk import dag, task

for path in sorted(Path(os.environ["DR_PLANS_DIR"]).glob("*.yaml")):
    spec = yaml.safe_load(path.read_text())

    @dag(dag_id="naive__" + spec["name"], schedule=None, start_date=datetime(2024, 1, 1), catchup=False,
         tags=["naive"])
    def plan_dag():
        previous = None
        for step in spec["steps"]:
            @task(task_id=step["name"], retries=step.get("retries", 0))
            def run_step(config=step["config"]):
                return config
            current = run_step()
            if previous is not None:
                previous >> current
            previous = current

    globals()["naive__" + spec["name"]] = plan_dag()
'''


def plan(i: int) -> dict:
    def sql(name: str, **extra) -> dict:
        return {
            "name": name,
            "type": "validation",
            "retries": 2,
            "config": {"checks": [{"kind": "sql", "name": "c", "conn_id": "db", "query": "SELECT 1", "expected": 1}]},
            **extra,
        }

    return {
        "name": f"plan-{i:04d}",
        "description": "generated for the parse benchmark",
        "disaster_scenario": "hardware_failure",
        "objectives": {"rto": "15m", "rpo": "1m"},
        "approval": {"status": "approved", "approved_by": "bench", "approved_at": "2025-01-01T00:00:00Z"},
        "steps": [
            sql("check"),
            {"name": "promote", "type": "database_failover", "retries": 1,
             "config": {"primary_conn_id": "p", "standby_conn_id": "s", "max_lag_bytes": 1024}},
            sql("verify_a", parallel_group="verify"),
            sql("verify_b", parallel_group="verify"),
            sql("verify_c", parallel_group="verify"),
            sql("smoke_a", parallel_group="smoke"),
            sql("smoke_b", parallel_group="smoke"),
            {"name": "notify", "type": "notification",
             "config": {"channels": [{"kind": "webhook", "url": "https://hooks.example.com/dr"}]}},
        ],
    }


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    import disaster_recovery.rendering  # noqa: F401  (import cost is paid once per process, not per parse)

    ours = REPO / "dags" / "recovery_plans.py"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-plans-") as tmp:
        baseline_file = Path(tmp) / "naive_plans.py"
        baseline_file.write_text(BASELINE_DAG_FILE)
        for n in [int(s) for s in args.sizes.split(",")]:
            folder = Path(tmp) / f"plans-{n}"
            folder.mkdir()
            for i in range(n):
                (folder / f"plan-{i:04d}.yaml").write_text(yaml.safe_dump(plan(i), sort_keys=False))
            os.environ["DR_PLANS_DIR"] = str(folder)
            for label, file in (("ours", ours), ("naive", baseline_file)):
                parse_s, bag = timed(lambda f=file: DagBag(dag_folder=str(f), safe_mode=False), args.repeat)
                assert not bag.import_errors, bag.import_errors
                assert len(bag.dags) == n, (label, len(bag.dags))
                ser_s, _ = timed(lambda b=bag: [DagSerialization.to_dict(d) for d in b.dags.values()], 1)
                dag_id = next(iter(sorted(bag.dags)))
                os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = dag_id
                one_s, one = timed(lambda f=file: DagBag(dag_folder=str(f), safe_mode=False), args.repeat)
                del os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"]
                one_count = len(one.dags)
                rows.append((label, n, parse_s, ser_s, parse_s / n, one_s, one_count))
    print(f"{'generator':<8} {'plans':>6} {'file exec s':>12} {'serialize s':>12} {'ms/plan':>8} "
          f"{'single DAG s':>13} {'DAGs built':>10}")
    for label, n, parse_s, ser_s, per, one_s, one_count in rows:
        print(f"{label:<8} {n:>6} {parse_s:>12.3f} {ser_s:>12.3f} {per * 1000:>8.2f} {one_s:>13.3f} {one_count:>10}")
    print()
    for n in sorted({r[1] for r in rows}):
        o = next(r for r in rows if r[0] == "ours" and r[1] == n)
        b = next(r for r in rows if r[0] == "naive" and r[1] == n)
        print(f"N={n}: ours/naive file execution {o[2] / b[2]:.2f}x; single DAG ours {o[5]:.3f}s vs naive {b[5]:.3f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
