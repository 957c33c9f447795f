"""The JSON Schema of plan files (checked in as include/plans/plan.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from .model import Plan


def plan_json_schema() -> dict[str, Any]:
    schema = Plan.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Recovery plan",
        "description": (
            "A disaster recovery plan, rendered into the Airflow DAG dr_plan__<name>. "
            "Secrets never appear here: steps name Airflow connection ids."
        ),
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


def plan_json_schema_text() -> str:
    return json.dumps(plan_json_schema(), indent=2, ensure_ascii=False) + "\n"
