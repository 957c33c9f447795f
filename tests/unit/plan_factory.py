"""Building small valid plans (as data) for the plan tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PLAN = REPO / "include" / "plans" / "wedsync-database-failover.yaml"
SCHEMA_FILE = REPO / "include" / "plans" / "plan.schema.json"

TCP_CHECK = {"kind": "tcp", "host": "db.example", "port": 5432}


def validation_step(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "validation", "config": {"checks": [dict(TCP_CHECK)]}, **extra}


def base_plan(**overrides: Any) -> dict[str, Any]:
    plan = {
        "name": "sample-plan",
        "disaster_scenario": "hardware_failure",
        "objectives": {"rto": "15m", "rpo": "1m"},
        "steps": [
            validation_step("check"),
            {
                "name": "promote",
                "type": "database_failover",
                "config": {"primary_conn_id": "pg_primary", "standby_conn_id": "pg_standby"},
            },
        ],
    }
    plan.update(copy.deepcopy(overrides))
    return plan


def write_plan(directory: Path, data: Any, filename: str = "plan.yaml") -> Path:
    path = directory / filename
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
