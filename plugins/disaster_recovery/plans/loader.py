"""Reading plan files: YAML in, validated ``Plan`` (or problems naming file, step and field) out."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .graph import step_graph_problems
from .model import Plan
from .problems import PlanProblem, PlanValidationError, problems_from_validation_error
from .step_models import IMPLEMENTED_STEP_TYPES_CONTEXT

PLAN_FILE_SUFFIXES = (".yaml", ".yml")


# libyaml's parser when PyYAML was built with it (about 10x faster: DAG files parse every plan).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class PlanSet:
    """The valid plans of a directory by name, where each came from, and every problem found."""

    plans: dict[str, Plan] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    problems: list[PlanProblem] = field(default_factory=list)
    files: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def parse_plan(
    data: Any, *, source: str | Path = "<plan>", implemented_step_types: Collection[str] | None = None
) -> Plan:
    """Validate already-parsed plan data; raise PlanValidationError."""
    file = str(source)
    if not isinstance(data, Mapping):
        kind = "nothing" if data is None else type(data).__name__
        raise PlanValidationError(
            [PlanProblem(file, None, None, f"expected a plan (a mapping of keys) but found {kind}")]
        )
    context = {
        IMPLEMENTED_STEP_TYPES_CONTEXT: None if implemented_step_types is None else frozenset(implemented_step_types)
    }
    try:
        return Plan.model_validate(data, context=context)
    except ValidationError as exc:
        problems = problems_from_validation_error(exc, file=file, data=data)
        # The model checks names and depends_on only once every step is valid; report them now too.
        seen = set(problems)
        problems += [p for p in _raw_graph_problems(data, file=file) if p not in seen]
        raise PlanValidationError(problems) from None


@dataclass(frozen=True)
class _RawStep:
    name: str
    depends_on: tuple[str, ...]
    parallel_group: str | None


def _raw_graph_problems(data: Mapping[str, Any], *, file: str) -> list[PlanProblem]:
    """Duplicate names and bad depends_on among raw steps, when every step has its name and edges right."""
    problems = []
    for section in ("steps", "rollback_steps"):
        raw_steps = data.get(section)
        if not isinstance(raw_steps, list):
            continue
        steps = []
        for raw in raw_steps:
            if not isinstance(raw, Mapping):
                break
            name, deps, group = raw.get("name"), raw.get("depends_on", []), raw.get("parallel_group")
            if not isinstance(name, str) or not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                break
            steps.append(_RawStep(name, tuple(deps), group if isinstance(group, str) else None))
        else:
            problems += [PlanProblem(file, p.step, p.field, p.message, section) for p in step_graph_problems(steps)]
    return problems


def read_plan_data(path: str | Path) -> Any:
    """The YAML content of a plan file; raise PlanValidationError for unreadable or invalid YAML."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanValidationError([PlanProblem(file, None, None, f"cannot read the file: {exc}")]) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PlanValidationError([PlanProblem(file, None, None, _yaml_message(exc))]) from None


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = ", ".join(p for p in (exc.context, exc.problem) if p)
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {what}"
    return f"invalid YAML: {exc}"


def load_plan(path: str | Path, *, implemented_step_types: Collection[str] | None = None) -> Plan:
    """Read and validate one plan file; raise PlanValidationError listing every problem."""
    return parse_plan(read_plan_data(path), source=path, implemented_step_types=implemented_step_types)


def plan_files(directory: str | Path) -> tuple[Path, ...]:
    """The plan files directly inside a directory, sorted (hidden files skipped)."""
    return tuple(
        sorted(
            p
            for p in Path(directory).iterdir()
            if p.suffix in PLAN_FILE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
    )


def load_plan_files(paths: Iterable[str | Path], *, implemented_step_types: Collection[str] | None = None) -> PlanSet:
    """Load each file; one invalid plan never hides the valid ones. Duplicate names drop all holders."""
    paths = tuple(Path(p) for p in paths)
    loaded: list[tuple[Path, Plan]] = []
    problems: list[PlanProblem] = []
    for path in paths:
        try:
            loaded.append((path, load_plan(path, implemented_step_types=implemented_step_types)))
        except PlanValidationError as exc:
            problems.extend(exc.problems)
    by_name: dict[str, list[Path]] = {}
    for path, plan in loaded:
        by_name.setdefault(plan.name, []).append(path)
    plans: dict[str, Plan] = {}
    sources: dict[str, Path] = {}
    for path, plan in loaded:
        holders = by_name[plan.name]
        if len(holders) > 1:
            others = ", ".join(str(p) for p in holders if p != path)
            problems.append(PlanProblem(str(path), None, "name", f"plan name {plan.name!r} is also used by {others}"))
            continue
        plans[plan.name] = plan
        sources[plan.name] = path
    order = {str(p): i for i, p in enumerate(paths)}
    problems.sort(key=lambda p: order.get(p.file, len(order)))
    return PlanSet(plans=plans, sources=sources, problems=problems, files=paths)


def load_plans(directory: str | Path, *, implemented_step_types: Collection[str] | None = None) -> PlanSet:
    """Load every ``*.yaml``/``*.yml`` plan directly inside ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        problem = PlanProblem(str(directory), None, None, "not a directory")
        return PlanSet(problems=[problem])
    return load_plan_files(plan_files(directory), implemented_step_types=implemented_step_types)
