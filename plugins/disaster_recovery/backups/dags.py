"""Backup sources -> DAGs (dr_backup__<source>, dr_verify_backups, dr_restore). No I/O here.

Each task calls into `backups.tasks` (or the backup_restore step) only when it runs.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, TriggerRule

from disaster_recovery.backups.sources import DEFAULT_SOURCES_FILE, Source, SourceSet, load_sources

START = datetime(2024, 1, 1)
VERIFY_DAG_ID = "dr_verify_backups"
RESTORE_DAG_ID = "dr_restore"
REVERIFY_SCHEDULE = "0 5 * * *"


def sources_file() -> Path:
    return Path(os.environ.get("DR_BACKUPS_FILE") or DEFAULT_SOURCES_FILE)


def backup_asset(source_name: str) -> Asset:
    return Asset(name=f"dr_backup__{source_name}", uri=f"dr-backup://{source_name}", group="disaster-recovery")


def _run_backup(source_name: str) -> dict:
    from disaster_recovery.backups import tasks

    return tasks.backup(source_name)


def _expire(source_name: str) -> dict:
    from disaster_recovery.backups import tasks

    return tasks.expire(source_name)


def _freshness(source_name: str) -> dict:
    from disaster_recovery.backups import tasks

    return tasks.check_freshness([source_name])


def _verify(**context) -> dict:
    from disaster_recovery.backups import tasks

    params = context.get("params") or {}
    scheduled = not (context.get("triggering_asset_events") or {})
    return tasks.verify(source_names=params.get("sources") or None, include_verified=scheduled)


def _restore(**context) -> dict:
    from disaster_recovery.backups.restore_task import restore_from_params

    return restore_from_params(dict(context["params"]))


def backup_dag(source: Source) -> DAG:
    with DAG(
        dag_id=source.dag_id,
        description=(source.description or f"Backups of {source.name}")[:200],
        schedule=source.schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["disaster-recovery", "backup", source.method.value],
        default_args={"owner": "disaster-recovery", "retries": 1, "retry_delay": timedelta(minutes=5)},
        doc_md=f"Backs up `{source.name}` ({source.method.value}, {source.backup_type.value}) from "
        f"{source.server_words}; each new backup triggers `{VERIFY_DAG_ID}` through the asset "
        f"`{backup_asset(source.name).uri}`; then expires what the retention policy no longer keeps.",
    ) as dag:
        take = PythonOperator(
            task_id="take_backup", python_callable=_run_backup, op_args=[source.name],
            outlets=[backup_asset(source.name)], retries=0,
        )
        expire = PythonOperator(task_id="apply_retention", python_callable=_expire, op_args=[source.name])
        fresh = PythonOperator(
            task_id="check_freshness", python_callable=_freshness, op_args=[source.name],
            trigger_rule=TriggerRule.ALL_DONE,
        )
        take >> expire >> fresh
    return dag


def verify_dag(sources: list[Source]) -> DAG:
    assets = [backup_asset(s.name) for s in sources]
    condition = assets[0]
    for asset in assets[1:]:
        condition = condition | asset
    with DAG(
        dag_id=VERIFY_DAG_ID,
        description="Verify new backups by restoring them; re-verify the newest of each source daily",
        schedule=AssetOrTimeSchedule(
            timetable=CronTriggerTimetable(REVERIFY_SCHEDULE, timezone="UTC"), assets=condition
        ),
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["disaster-recovery", "backup", "verification"],
        default_args={"owner": "disaster-recovery", "retries": 1, "retry_delay": timedelta(minutes=5)},
        params={"sources": Param([], type="array", description="source names (empty: all)")},
    ) as dag:
        PythonOperator(task_id="verify_backups", python_callable=_verify)
    return dag


def restore_dag() -> DAG:
    with DAG(
        dag_id=RESTORE_DAG_ID,
        description="Restore a backup (by id, or a source's newest verified one), optionally to a point in time",
        schedule=None,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        tags=["disaster-recovery", "restore"],
        default_args={"owner": "disaster-recovery", "retries": 0},
        params={
            "source": Param("wedsync", type="string", description="data source name"),
            "backup_id": Param(None, type=["null", "string"], description="default: newest verified"),
            "data_directory": Param(None, type=["null", "string"], description="new cluster folder"),
            "port": Param(None, type=["null", "integer"], description="port of the restored cluster"),
            "conn_id": Param(None, type=["null", "string"], description="existing database (logical dumps)"),
            "point_in_time": Param(None, type=["null", "string"], description="ISO time with zone"),
            "force_unverified": Param(False, type="boolean"),
            "replace_existing": Param(False, type="boolean"),
            "dry_run": Param(False, type="boolean"),
        },
    ) as dag:
        PythonOperator(task_id="restore_backup", python_callable=_restore)
    return dag


def build_backup_dags(source_set: SourceSet | None = None) -> dict[str, DAG]:
    source_set = source_set or load_sources(sources_file())
    sources = sorted(source_set.sources.values(), key=lambda s: s.name)
    dags = {s.dag_id: backup_dag(s) for s in sources}
    if sources:
        dags[VERIFY_DAG_ID] = verify_dag(sources)
    dags[RESTORE_DAG_ID] = restore_dag()
    return dags
