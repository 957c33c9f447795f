"""The dr_restore DAG's task: its run parameters become a backup_restore step config, run as the step."""

from __future__ import annotations

import logging
from typing import Any

from disaster_recovery.plans.language.step_configs import BackupRestoreConfig
from disaster_recovery.steps.backup_restore import BackupRestoreStep
from disaster_recovery.steps.base import StepContext

log = logging.getLogger("disaster_recovery.restore")


def config_from_params(params: dict[str, Any]) -> BackupRestoreConfig:
    """Validate the run's parameters as a plan step's config (same field names, same errors)."""
    if params.get("conn_id"):
        target: dict[str, Any] = {"conn_id": params["conn_id"]}
    else:
        target = {"data_directory": params.get("data_directory"), "port": params.get("port")}
    return BackupRestoreConfig.model_validate(
        {
            "source": params.get("source"),
            "backup_id": params.get("backup_id") or None,
            "target": target,
            "point_in_time": params.get("point_in_time") or None,
            "force_unverified": bool(params.get("force_unverified")),
            "replace_existing": bool(params.get("replace_existing")),
        }
    )


def restore_from_params(params: dict[str, Any]) -> dict:
    config = config_from_params(params)
    result = BackupRestoreStep().run(
        config, StepContext(plan_name="dr_restore", step_name="restore_backup",
                            dry_run=bool(params.get("dry_run")), log=log)
    )
    log.info("%s", result.sentence)
    return result.output
