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


def _subschemas(node, path="#"):
    """Every schema object inside a JSON Schema, with a readable path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _subschemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _subschemas(value, f"{path}/{index}")


SCHEMA_FILES = [SCHEMA_FILE, SCHEMA_FILE.parents[1] / "clusters.schema.json", SCHEMA_FILE.parents[1] / "services.schema.json"]


@pytest.mark.parametrize("schema_file", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_default_and_example_is_a_value_the_validator_accepts(schema_file):
    """An editor that fills in a default (or offers an example) must write a valid file: each one matches
    its own schema, and a duration default or example parses as one (no ISO 'PT10M')."""
    from jsonschema import Draft202012Validator

    from disaster_recovery.plans.language.durations import DURATION_PATTERN, parse_duration

    root = json.loads(schema_file.read_text(encoding="utf-8"))
    checked = 0
    for path, sub in _subschemas(root):
        values = ([sub["default"]] if "default" in sub else []) + list(sub.get("examples") or [])
        if not values or not isinstance(sub.get("properties", {}), dict):
            continue
        bare = {k: v for k, v in sub.items() if k not in ("default", "examples")}
        validator = Draft202012Validator({**bare, "$defs": root.get("$defs", {})})
        durations = sub.get("pattern") == DURATION_PATTERN or any(
            alt.get("pattern") == DURATION_PATTERN for alt in sub.get("anyOf", []) if isinstance(alt, dict)
        )
        for value in values:
            errors = [e.message for e in validator.iter_errors(value)]
            assert not errors, f"{schema_file.name} {path}: {value!r}: {errors}"
            if durations and isinstance(value, str):
                parse_duration(value)
            checked += 1
    assert checked > 0
