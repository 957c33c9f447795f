"""What each step type's result holds: the fields success criteria may name, with their JSON kinds.

Used to refuse criteria that can never hold (``promoted: 1`` on a boolean, ``data_loss_bytes: {operator:
">", value: true}``) and to warn about a path no result has (a typo). A step type whose result also holds
free-form details is ``open``: an unknown path there is only a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from disaster_recovery.plans.language.enums import StepType

BOOL, NUMBER, TEXT, LIST, MAPPING, NULL = "boolean", "number", "text", "list", "mapping", "null"


def kind_of(value: Any) -> str:
    """The JSON kind of a value as written in a plan."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return TEXT
    if value is None:
        return NULL
    if isinstance(value, list | tuple):
        return LIST
    return MAPPING


@dataclass(frozen=True)
class StepOutputs:
    fields: dict[str, frozenset[str]] = field(default_factory=dict)
    open: bool = False  # the result may hold other keys than these


def _f(*kinds: str) -> frozenset[str]:
    return frozenset(kinds)


_DRY = {"dry_run": _f(BOOL)}
STEP_OUTPUTS: dict[StepType, StepOutputs] = {
    StepType.DATABASE_FAILOVER: StepOutputs(
        {
            **_DRY, "action": _f(TEXT), "cluster": _f(TEXT), "promoted": _f(BOOL), "promoted_at": _f(TEXT, NULL),
            "old_primary": _f(TEXT, NULL), "new_primary": _f(TEXT, NULL), "member": _f(TEXT, NULL),
            "decision": _f(TEXT), "previous_timeline": _f(NUMBER, NULL), "timeline": _f(NUMBER, NULL),
            "lag_bytes": _f(NUMBER, NULL), "lag_seconds": _f(NUMBER, NULL), "data_loss_bytes": _f(NUMBER, NULL),
            "data_loss_seconds": _f(NUMBER, NULL), "data_loss": _f(MAPPING, NULL), "lasting_fence": _f(BOOL),
            "fenced": _f(BOOL), "phases": _f(MAPPING), "duration_seconds": _f(NUMBER), "notes": _f(LIST),
        },
        open=True,
    ),
    StepType.VALIDATION: StepOutputs(
        {**_DRY, "checks": _f(LIST), "passed": _f(NUMBER), "failed": _f(NUMBER), "all_passed": _f(BOOL, NULL)}
    ),
    StepType.NOTIFICATION: StepOutputs(
        {**_DRY, "deliveries": _f(LIST), "delivered": _f(NUMBER), "failed": _f(NUMBER)}
    ),
    StepType.BACKUP_RESTORE: StepOutputs(
        {
            **_DRY, "backup_id": _f(TEXT, NUMBER), "backup_name": _f(TEXT), "target": _f(TEXT),
            "restored_bytes": _f(NUMBER, NULL), "duration_seconds": _f(NUMBER, NULL),
            "point_in_time": _f(TEXT, NULL), "recovered_to": _f(TEXT, NULL),
            "achieved_rpo_seconds": _f(NUMBER, NULL), "row_counts_match": _f(BOOL, NULL), "details": _f(MAPPING),
        }
    ),
}


_ORDERED = frozenset({"<", ">", "<=", ">="})


def _kinds(kinds: frozenset[str]) -> str:
    return " or ".join(sorted(kinds))


def criteria_kind_problems(step_type: StepType, criteria: dict[str, Any]) -> list[tuple[str, str]]:
    """``(criterion, message)`` for each criterion whose value can never be compared as written."""
    from disaster_recovery.plans.rules.criteria import OPERATORS, split_expectation

    outputs = STEP_OUTPUTS.get(step_type, StepOutputs(open=True))
    problems = []
    for path, expectation in criteria.items():
        operator, expected = split_expectation(expectation)
        if not isinstance(path, str) or operator not in OPERATORS:
            continue  # criteria_spec_problems reports these
        got = kind_of(expected)
        declared = outputs.fields.get(path)
        if operator in _ORDERED and got not in (NUMBER, TEXT):
            problems.append((path, f"{operator} orders numbers or text, not the {got} {expected!r}"))
        elif declared is None:
            continue
        elif operator in _ORDERED and not declared & {NUMBER, TEXT}:
            problems.append(
                (path, f"a {step_type.value} step's {path!r} is a {_kinds(declared)}: it cannot be ordered with {operator}")
            )
        elif got not in declared:
            verdict = "never holds" if operator in ("==", *_ORDERED) else "always holds"
            problems.append(
                (path, f"a {step_type.value} step's {path!r} is a {_kinds(declared)}, so comparing it with the "
                       f"{got} {expected!r} {verdict}")
            )
    return problems


def criteria_unknown_paths(step_type: StepType, criteria: dict[str, Any]) -> list[tuple[str, str]]:
    """``(criterion, message)`` for criteria naming a field no result of this step type has (a typo?)."""
    outputs = STEP_OUTPUTS.get(step_type)
    if outputs is None or outputs.open:
        return []
    found = []
    for path in criteria:
        first = str(path).split(".")[0]
        if first not in outputs.fields:
            found.append((str(path), f"a {step_type.value} step's result has no {first!r}; it has: "
                                     f"{', '.join(sorted(outputs.fields))}"))
    return found
