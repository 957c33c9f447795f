"""Backup DAGs from include/backups.yaml (or $DR_BACKUPS_FILE): one dr_backup__<source> per data source,
dr_verify_backups (triggered by every new backup through an Airflow Asset, and daily), and dr_restore.

Parse-time work is reading YAML only; invalid sources are reported by dr_config_errors.py.
"""

from disaster_recovery.backups.dags import build_backup_dags

globals().update(build_backup_dags())
