"""Reports invalid recovery plans, backup sources, clusters and monitored services as an Airflow import error of this file (one line
per problem, naming the file, the plan or source, the step and the field), while recovery_plans.py and
backups.py build the valid ones.

This file defines no DAG; it only validates (the plans once per content: disaster_recovery.parse_cache
keeps their problem lines for the next cycle, and recovery_plans.py's parse stores them too). Airflow
shows its error in the UI's import-errors list, `airflow dags list-import-errors` and GET /api/v2/importErrors.
"""

from airflow.sdk import get_parsing_context

from disaster_recovery.backups.dags import sources_file
from disaster_recovery.backups.sources import load_sources
from disaster_recovery.clusters.model import load_clusters
from disaster_recovery.health.services import load_services
from disaster_recovery.rendering import plan_problems


class InvalidDisasterRecoveryConfig(Exception):
    """Some recovery plans or backup sources are invalid; the message lists each problem."""


# A task's process (of some other DAG) has no reason to validate again. "DAG" marks the file for
# Airflow's safe-mode scan.
if get_parsing_context().dag_id is None:
    _problems = (
        plan_problems()
        + [str(p) for p in load_sources(sources_file()).problems]
        + [str(p) for p in load_clusters().problems]
        + [str(p) for p in load_services().problems]
    )
    if _problems:
        raise InvalidDisasterRecoveryConfig(
            f"{len(_problems)} problem(s) in the DR configuration (the valid ones are unaffected):\n"
            + "\n".join(_problems)
        )
