"""Problems found in plan files, each naming the file, the step (if any) and the field."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

_STEP_SECTIONS = {"steps": "step", "rollback_steps": "rollback step"}
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class PlanProblem:
    file: str
    step: str | None
    field: str | None
    message: str
    section: str = "steps"  # "rollback_steps" when ``step`` is a rollback step

    def __str__(self) -> str:
        parts = [f"{self.file}:"]
        if self.step is not None:
            parts.append(f"{_STEP_SECTIONS.get(self.section, 'step')} {self.step!r}")
        if self.field:
            parts.append(f"field {self.field!r}:")
        elif self.step is not None:
            parts[-1] += ":"
        parts.append(self.message)
        return " ".join(parts)


class PlanValidationError(ValueError):
    """A plan file is not a valid plan; ``problems`` lists why, one line each in ``str()``."""

    def __init__(self, problems: Sequence[PlanProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _field_path(raw: Any, loc: Sequence[str | int]) -> str:
    """``config.checks[0].query`` from a pydantic loc, dropping union tags not present in the input."""
    text = ""
    for position, part in enumerate(loc):
        if isinstance(raw, Mapping):
            key = part if part in raw else next((k for k in raw if str(k) == str(part)), None)
            if key is None and isinstance(part, str) and position < len(loc) - 1:
                continue  # a discriminated-union tag, not a key the author wrote
            raw = raw.get(key) if key is not None else None
            text += f".{part}" if text else str(part)
        elif isinstance(part, int):
            raw = raw[part] if isinstance(raw, list | tuple) and -len(raw) <= part < len(raw) else None
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
            raw = None
    return text


def _message(error: Mapping[str, Any]) -> tuple[str, str | None]:
    """(message, extra field segment) for one pydantic error."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return "required key is missing", None
    if kind == "union_tag_invalid":
        key = ctx.get("discriminator", "").strip("'")
        expected = re.sub(r"<\w+\.\w+: '?([^'>]*)'?>", r"\1", ctx.get("expected_tags", "")).replace("'", "")
        what = "step type" if key == "type" else key
        return f"unknown {what} {ctx.get('tag')!r}; expected one of: {expected}", key
    if kind == "too_short" and "min_length" in ctx:
        return f"needs at least {ctx['min_length']} item(s)", None
    if kind == "string_type" and isinstance(error.get("input"), int | float | bool):
        return f"expected text, got {error['input']!r} (quote it in YAML)", None
    if kind == "union_tag_not_found":
        key = ctx.get("discriminator", "").strip("'")
        return "required key is missing", key
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] in ("plan_rule", "invalid_name", "invalid_duration", "invalid_path", "invalid_target"):
        return message, None
    value = error.get("input")
    if isinstance(value, _SCALARS) and not kind.startswith(("model_", "dict_", "list_", "tuple_")):
        message += f" (got {value!r})"
    return message, None


def problems_from_validation_error(error: ValidationError, *, file: str, data: Any) -> list[PlanProblem]:
    """Translate a pydantic error on plan ``data`` into problems naming step and field."""
    problems = []
    for err in error.errors(include_url=False):
        if _caused_by_invalid_items(err):
            continue
        message, extra = _message(err)
        loc = tuple(err["loc"]) + ((extra,) if extra else ())
        problems.append(_locate(loc, message, file=file, data=data))
    return _unique(problems)


def _caused_by_invalid_items(error: Mapping[str, Any]) -> bool:
    """A "too short" list whose items were given but failed: the items' errors say why."""
    value, ctx = error.get("input"), error.get("ctx") or {}
    return (
        error["type"] == "too_short"
        and isinstance(value, list | tuple)
        and len(value) >= ctx.get("min_length", len(value) + 1)
    )


def _locate(loc: tuple[str | int, ...], message: str, *, file: str, data: Any) -> PlanProblem:
    if len(loc) >= 2 and loc[0] in _STEP_SECTIONS and isinstance(loc[1], int) and isinstance(data, Mapping):
        section, index = str(loc[0]), loc[1]
        steps = data.get(section)
        raw_step = steps[index] if isinstance(steps, list) and 0 <= index < len(steps) else None
        name = raw_step.get("name") if isinstance(raw_step, Mapping) else None
        if isinstance(name, str) and name:
            field = _field_path(raw_step, loc[2:]) or None
            return PlanProblem(file, name, field, message, section)
    return PlanProblem(file, None, _field_path(data, loc) or None, message)


def _unique(problems: Iterable[PlanProblem]) -> list[PlanProblem]:
    return list(dict.fromkeys(problems))
