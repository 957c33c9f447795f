"""A corpus of hostile plan files: each a variation of the shipped failover plan whose only fault is the
hostile part, with the text its one problem line must contain. Used by the loader's unit tests and by
the DagBag test that puts each one beside the production plan."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_PLAN = Path(__file__).resolve().parents[1] / "include" / "plans" / "wedsync-database-failover.yaml"
GOOD = EXAMPLE_PLAN.read_text(encoding="utf-8")
PAYLOAD = "          payload:\n"


def _bomb(levels: int = 9) -> str:
    lines = ["            l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"]
    lines += [f"            l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, levels)]
    return PAYLOAD + "".join(lines)


def _merge_bomb(levels: int = 40) -> str:
    lines = ["            m0: &m0 {a: 1, b: 2}\n"]
    lines += [f"            m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}\n" for i in range(1, levels)]
    return PAYLOAD + "".join(lines)


def variant(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


HOSTILE = {
    # name: (file text, text the single problem line must contain)
    "impossible_date": (variant("effective_date: 2025-01-15", "effective_date: 2025-13-45"),
                        "field 'effective_date': Input should be a valid date"),
    "impossible_time": (variant("approved_at: 2026-12-02T09:00:00Z", "approved_at: 2026-12-02T29:00:00Z"),
                        "field 'approval.approved_at': Input should be a valid datetime"),
    "explicit_timestamp_tag": (variant("effective_date: 2025-01-15", "effective_date: !!timestamp 2025-02-30"),
                               "field 'effective_date'"),
    "deep_nesting": (variant("      max_lag_bytes: 16777216", "      max_lag_bytes: " + "[" * 990 + "]" * 990),
                     "refused: steps[0].config.max_lag_bytes[0]"),
    "alias_bomb_in_payload": (variant(PAYLOAD, _bomb()), "expands to more than"),
    "alias_bomb_in_expected": (variant("          expected: true\n", "          expected: *l8\n").replace(
        "tags: [wedsync, database, failover]", "tags: [wedsync, database, failover]\nx-bomb:\n" + _bomb()[len(PAYLOAD):]
    ), "expands to more than"),
    "merge_key_bomb": (variant(PAYLOAD, _merge_bomb()), "expands to more than"),
    "recursive_alias": (variant(PAYLOAD, PAYLOAD + "            loop: &loop [*loop]\n"), "refers to itself"),
    "huge_integer": (variant("max_lag_bytes: 16777216", "max_lag_bytes: " + "9" * 5000), "invalid YAML value"),
    "list_as_key": (variant("tags: [wedsync, database, failover]", "? [a, b]\n: 1"), "a key must be text"),
    "python_tag": (variant("description: >-", "description: !!python/object/apply:os.system ['true']\nx: >-"),
                   "invalid YAML"),
    "duplicate_key": (variant("version: \"2.0\"", "version: \"2.0\"\nversion: \"3.0\""), "found duplicate key 'version'"),
    "rto_zero": (variant("rto: 15m", "rto: 0s"), "field 'objectives.rto': duration must be greater than zero"),
    "rpo_zero": (variant("rpo: 1m", "rpo: 0s"), "field 'objectives.rpo': duration must be greater than zero"),
    "number_for_boolean": (variant("      promoted: true", "      promoted: 1"),
                           "'promoted' is a boolean, so comparing it with the number 1 never holds"),
    "ordering_a_boolean": (variant("      promoted: true", "      promoted: {operator: '>', value: true}"),
                           "> orders numbers or text, not the boolean True"),
    "text_for_number": (variant("{operator: \"<=\", value: 16777216}", "{operator: \"<=\", value: \"16MB\"}"),
                        "'data_loss_bytes' is a null or number, so comparing it with the text '16MB' never holds"),
    "jinja_syntax_error": (variant("({{ plan_name }})", "({{ plan_name }"),
                           "step 'notify_team' field 'config.message': the template does not parse"),
    "jinja_unknown_name": (variant("({{ plan_name }})", "({{ plan_nmae }})"),
                           "the template uses unknown name(s) plan_nmae"),
    "jinja_in_payload": (variant("plan: \"{{ plan_name }}\"", "plan: \"{% if %}\""),
                         "field 'config.channels[0].payload.plan': the template does not parse"),
    "not_a_mapping": ("- just\n- a list\n", "expected a plan (a mapping of keys) but found list"),
    "empty": ("", "expected a plan (a mapping of keys) but found nothing"),
    "binary_garbage": (b"\xff\xfe\x00name: x".decode("latin-1"), "cannot read the file: not UTF-8"),
}
