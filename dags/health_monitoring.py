"""dr_health_monitor: the long-running health monitor (services in include/services.yaml).

One task, deferred to a trigger in the triggerer for as long as it runs: it probes every service every
second or two, records each result in system_health_monitoring, and starts a plan's recovery when the
plan's failover criteria hold (see plugins/disaster_recovery/health/). @continuous: if the monitor ever
ends, the next run starts at once. Parse time reads nothing.
"""

from datetime import datetime

from airflow.sdk import DAG

from disaster_recovery.orchestration.operators import HealthMonitorOperator

with DAG(
    dag_id="dr_health_monitor",
    description="Probes the protected services every second or two and starts recoveries when plans' criteria hold",
    schedule="@continuous",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["disaster-recovery", "health"],
    default_args={"owner": "disaster-recovery", "retries": 0},
    doc_md=__doc__,
):
    HealthMonitorOperator(task_id="monitor")
