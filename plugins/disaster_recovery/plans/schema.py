"""The JSON Schema of plan files (checked in as include/plans/plan.schema.json)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from disaster_recovery.plans.language.durations import format_duration
from disaster_recovery.plans.model import Plan


class PlanJsonSchema(GenerateJsonSchema):
    """Defaults written the way a plan writes them: a duration default is ``10m``, not ISO's ``PT10M``
    (which the validator refuses, so an editor filling defaults in would write an invalid file)."""

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def plan_json_schema() -> dict[str, Any]:
    schema = Plan.model_json_schema(mode="validation", schema_generator=PlanJsonSchema)
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
