"""YAML files that hold a list of named items (``clusters:``, ``services:``): one loader, one kind of error.

Each item is validated by its pydantic model; a bad item never hides the good ones, and every problem
names the file, the item (by name, or by position when it has no usable name) and the field, the same
way plan problems do. Duplicate names drop every holder and say where the other one is. Pure: no Airflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from disaster_recovery.plans.reading.problems import PlanValidationError, problems_from_validation_error
from disaster_recovery.plans.reading.yaml_reader import read_yaml_file

ItemT = TypeVar("ItemT", bound=BaseModel)


@dataclass(frozen=True)
class ItemProblem:
    """One problem of a file of named items: ``FILE: cluster 'x' field 'members[0].conn_id': MESSAGE``."""

    file: str
    kind: str
    item: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [f"{self.file}:"]
        if self.item is not None:
            parts.append(f"{self.kind} {self.item!r}")
        if self.field:
            parts.append(f"field {self.field!r}:")
        elif self.item is not None:
            parts[-1] += ":"
        parts.append(self.message)
        return " ".join(parts)


class ItemsFileError(ValueError):
    """A file of named items has problems (or lacks the item asked for); one line per problem."""

    def __init__(self, problems: Sequence[ItemProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class ItemSet(Generic[ItemT]):
    """The valid items of a file by name, the file's other settings, and every problem found."""

    kind: str
    items: dict[str, ItemT] = field(default_factory=dict)
    problems: list[ItemProblem] = field(default_factory=list)
    file: Path | None = None
    settings: Any = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def require(self, name: str) -> ItemT:
        """The named item; ItemsFileError (with the file's problems) when there is no valid one."""
        if name in self.items:
            return self.items[name]
        known = ", ".join(sorted(self.items)) or "none"
        missing = ItemProblem(str(self.file), self.kind, name, None, f"no valid {self.kind} of this name (valid: {known})")
        raise ItemsFileError([missing, *self.problems])


def load_items(
    path: str | Path,
    *,
    key: str,
    kind: str,
    model: type[ItemT],
    settings_model: type[BaseModel] | None = None,
) -> ItemSet[ItemT]:
    """Read ``path``: a mapping whose ``key`` lists items of ``model`` (each with a ``name``), and whose
    other top-level keys, if ``settings_model`` is given, are validated as one ``settings_model``."""
    file = str(path)
    try:
        data = read_yaml_file(path)
    except PlanValidationError as exc:
        return ItemSet(kind, problems=[ItemProblem(file, kind, None, None, p.message) for p in exc.problems],
                       file=Path(path))
    if not isinstance(data, Mapping):
        found = "nothing" if data is None else type(data).__name__
        return ItemSet(kind, problems=[ItemProblem(file, kind, None, None,
                                                   f"expected a mapping with a {key!r} list but found {found}")],
                       file=Path(path))
    problems: list[ItemProblem] = []
    settings = None
    others = {k: v for k, v in data.items() if k != key}
    if settings_model is not None:
        try:
            settings = settings_model.model_validate(others)
        except ValidationError as exc:
            problems += [ItemProblem(file, kind, None, p.field, p.message)
                         for p in problems_from_validation_error(exc, file=file, data=others)]
    else:
        problems += [ItemProblem(file, kind, None, str(k), f"unknown key {k!r}; allowed keys: {key}") for k in others]
    raw_items = data.get(key)
    if not isinstance(raw_items, list) or not raw_items:
        problems.append(ItemProblem(file, kind, None, key, f"needs a list of at least one {kind}"))
        return ItemSet(kind, problems=problems, file=Path(path), settings=settings)
    parsed: list[tuple[int, ItemT]] = []
    for index, raw in enumerate(raw_items):
        item, item_problems = _parse_item(raw, file=file, key=key, kind=kind, index=index, model=model)
        problems += item_problems
        if item is not None:
            parsed.append((index, item))
    items, duplicates = _unique(parsed, file=file, key=key, kind=kind)
    return ItemSet(kind, items=items, problems=problems + duplicates, file=Path(path), settings=settings)


def _parse_item(raw: Any, *, file: str, key: str, kind: str, index: int, model: type[ItemT]):
    if not isinstance(raw, Mapping):
        return None, [ItemProblem(file, kind, None, f"{key}[{index}]", "expected a mapping of keys")]
    name = raw.get("name")
    label = name if isinstance(name, str) and name else None
    try:
        return model.model_validate(raw), []
    except ValidationError as exc:
        problems = problems_from_validation_error(exc, file=file, data=raw)
        return None, [
            ItemProblem(file, kind, label, _qualified(p.field, label=label, key=key, index=index), p.message)
            for p in problems
        ]


def _qualified(field_path: str | None, *, label: str | None, key: str, index: int) -> str | None:
    if label is not None:
        return field_path
    return f"{key}[{index}]" + (f".{field_path}" if field_path else "")


def _unique(parsed: list[tuple[int, ItemT]], *, file: str, key: str, kind: str):
    positions: dict[str, list[int]] = {}
    for index, item in parsed:
        positions.setdefault(item.name, []).append(index)
    items: dict[str, ItemT] = {}
    problems = []
    for index, item in parsed:
        holders = positions[item.name]
        if len(holders) == 1:
            items[item.name] = item
            continue
        others = ", ".join(f"{key}[{i}]" for i in holders if i != index)
        problems.append(ItemProblem(file, kind, item.name, "name", f"{kind} name {item.name!r} is also used by {others}"))
    return items, problems


def file_json_schema(model: type[BaseModel], *, title: str, description: str) -> dict[str, Any]:
    """The JSON Schema of a whole configuration file whose top level is ``model`` (editors use it)."""
    from disaster_recovery.plans.schema import PlanJsonSchema

    schema = model.model_json_schema(mode="validation", schema_generator=PlanJsonSchema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": description,
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }
