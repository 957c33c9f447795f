import json

import pytest
from plan_factory import EXAMPLE_PLAN, SCHEMA_FILE

from disaster_recovery.plans import load_plan, plan_json_schema, plan_json_schema_text

REGENERATE = "PYTHONPATH=plugins python -m disaster_recovery plans schema -o include/plans/plan.schema.json"


def test_checked_in_schema_matches_the_models():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == plan_json_schema_text(), f"regenerate it: {REGENERATE}"


def test_schema_shape():
    schema = plan_json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    assert {"name", "disaster_scenario", "objectives", "steps"} <= set(schema["required"])
    mapping = schema["properties"]["steps"]["items"]["discriminator"]["mapping"]
    assert sorted(mapping) == sorted(
        [
            "backup_restore",
            "service_start",
            "dns_update",
            "load_balancer_config",
            "database_failover",
            "validation",
            "notification",
            "cleanup",
        ]
    )
    defs = schema["$defs"]
    assert defs["Objectives"]["properties"]["rto"]["pattern"].startswith("^")
    assert all(
        d.get("additionalProperties") is False for d in defs.values() if d.get("type") == "object" and "properties" in d
    ), "every object forbids unknown keys"
    assert json.loads(plan_json_schema_text()) == schema


def _yaml_as_json(path):
    import yaml

    return json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))


def test_example_plan_and_its_document_satisfy_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(plan_json_schema())
    assert list(validator.iter_errors(_yaml_as_json(EXAMPLE_PLAN))) == []
    assert list(validator.iter_errors(load_plan(EXAMPLE_PLAN).document())) == []


def test_schema_catches_what_editors_should_flag():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(plan_json_schema())
    data = _yaml_as_json(EXAMPLE_PLAN)
    data["steps"][1]["config"]["lag_limit_bytes"] = 5
    data["objectives"]["rto"] = "15 minutes"
    data["steps"][0]["type"] = "dns_updat"
    messages = [e.message for e in validator.iter_errors(data)]
    assert any("lag_limit_bytes" in m for m in messages)
    assert any("15 minutes" in m for m in messages)
    assert any("dns_updat" in m for m in messages)
