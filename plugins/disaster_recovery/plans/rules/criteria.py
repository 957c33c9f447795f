"""Success criteria of a step: ``{"path.to.value": {"operator": ">=", "value": 3}}`` or plain equality.

A path is dotted; a segment that is a whole number indexes a list (``checks.0.ok``).
Equality is strict about booleans: ``true`` does not equal ``1``.
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">": op.gt,
    "<": op.lt,
    ">=": op.ge,
    "<=": op.le,
    "==": op.eq,
    "!=": op.ne,
}


@dataclass(frozen=True)
class CriterionResult:
    criterion: str
    operator: str
    expected: Any
    actual: Any
    ok: bool
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PathNotFound(LookupError):
    pass


def resolve_path(data: Any, path: str) -> Any:
    """The value at a dotted path; raise PathNotFound naming the first missing segment."""
    current = data
    walked: list[str] = []
    for segment in path.split("."):
        if isinstance(current, Mapping):
            if segment not in current:
                raise PathNotFound(_missing(path, walked, f"no key {segment!r}"))
            current = current[segment]
        elif isinstance(current, Sequence) and not isinstance(current, str | bytes):
            if not segment.lstrip("-").isdigit():
                raise PathNotFound(_missing(path, walked, f"{segment!r} is not a list index"))
            index = int(segment)
            if not -len(current) <= index < len(current):
                raise PathNotFound(_missing(path, walked, f"index {index} out of range (length {len(current)})"))
            current = current[index]
        else:
            raise PathNotFound(_missing(path, walked, f"{type(current).__name__} value has no {segment!r}"))
        walked.append(segment)
    return current


def _missing(path: str, walked: list[str], why: str) -> str:
    at = ".".join(walked) or "the result"
    return f"path {path!r} not found: at {at}: {why}"


def split_expectation(expectation: Any) -> tuple[str, Any]:
    """``{"operator": op, "value": v}`` -> ``(op, v)``; anything else -> ``("==", expectation)``."""
    if isinstance(expectation, Mapping) and "operator" in expectation:
        return expectation["operator"], expectation.get("value")
    return "==", expectation


def criteria_spec_problems(criteria: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(criterion, message)`` for each malformed criterion (for plan validation)."""
    problems = []
    for path, expectation in criteria.items():
        if not isinstance(path, str) or not path or any(s == "" for s in path.split(".")):
            problems.append((str(path), f"{path!r} is not a dotted path such as 'result.rows.0'"))
            continue
        if isinstance(expectation, Mapping) and "operator" in expectation:
            extra = set(expectation) - {"operator", "value"}
            if extra:
                problems.append((path, f"unknown keys {sorted(extra)} (a comparison has 'operator' and 'value')"))
            elif "value" not in expectation:
                problems.append((path, "a comparison needs 'value'"))
            elif expectation["operator"] not in OPERATORS:
                problems.append(
                    (path, f"unknown operator {expectation['operator']!r}; use one of {' '.join(OPERATORS)}")
                )
    return problems


def _strict_equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    return actual == expected


def compare(actual: Any, operator: str, expected: Any) -> bool:
    """Apply one operator; raise TypeError when the values cannot be ordered."""
    if operator == "==":
        return _strict_equal(actual, expected)
    if operator == "!=":
        return not _strict_equal(actual, expected)
    if isinstance(actual, bool) or isinstance(expected, bool):
        raise TypeError("booleans cannot be ordered")
    return bool(OPERATORS[operator](actual, expected))


def evaluate_criterion(criterion: str, expectation: Any, result: Any) -> CriterionResult:
    operator, expected = split_expectation(expectation)
    if operator not in OPERATORS:
        return CriterionResult(criterion, str(operator), expected, None, False, f"unknown operator {operator!r}")
    try:
        actual = resolve_path(result, criterion)
    except PathNotFound as exc:
        return CriterionResult(criterion, operator, expected, None, False, str(exc))
    try:
        ok = compare(actual, operator, expected)
    except TypeError:
        return CriterionResult(
            criterion,
            operator,
            expected,
            actual,
            False,
            f"cannot compare {actual!r} {operator} {expected!r}",
        )
    message = "" if ok else f"expected {criterion} {operator} {expected!r}, got {actual!r}"
    return CriterionResult(criterion, operator, expected, actual, ok, message)


def evaluate_criteria(criteria: Mapping[str, Any], result: Any) -> list[CriterionResult]:
    """One result per criterion, in the criteria's order."""
    return [evaluate_criterion(path, expectation, result) for path, expectation in criteria.items()]


def all_criteria_met(results: Iterable[CriterionResult]) -> bool:
    """True when every criterion holds (and trivially for no criteria)."""
    return all(r.ok for r in results)
