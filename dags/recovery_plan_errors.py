"""Reports invalid recovery plans as an Airflow import error of this file (one line per problem,
naming the plan file, the step and the field), while recovery_plans.py renders the valid ones.

This file defines no DAG; it only validates. Airflow shows its error in the UI's import-errors list,
`airflow dags list-import-errors` and GET /api/v2/importErrors.
"""

from airflow.sdk import get_parsing_context

from disaster_recovery.rendering import plan_problems


class InvalidRecoveryPlans(Exception):
    """Some recovery plans are invalid; the message lists each problem."""


# A task's process (of some other DAG) has no reason to validate the plans again. "DAG" marks the file
# for Airflow's safe-mode scan.
if get_parsing_context().dag_id is None:
    _problems = plan_problems()
    if _problems:
        raise InvalidRecoveryPlans(
            f"{len(_problems)} problem(s) in recovery plans (valid plans are unaffected):\n" + "\n".join(_problems)
        )
