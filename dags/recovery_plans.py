"""One DAG per recovery plan in include/plans/ (or $DR_PLANS_DIR): dr_plan__<name>.

Parse-time work is reading local files only: the plans, or what an earlier parse judged of exactly these
contents (disaster_recovery.parse_cache). A task's process builds just its own DAG (get_parsing_context).
Invalid plans are reported by dr_config_errors.py, so they never hide the valid ones.
"""

from airflow.sdk import get_parsing_context

from disaster_recovery.rendering import build_dags

globals().update(build_dags(only_dag_id=get_parsing_context().dag_id))
