"""Reading plan files: YAML in, validated ``Plan`` (or problems naming file, step and field) out."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from disaster_recovery.plans.language.step_models import IMPLEMENTED_STEP_TYPES_CONTEXT
from disaster_recovery.plans.model import Plan
from disaster_recovery.plans.reading.bounds import BoundsExceeded, check_data
from disaster_recovery.plans.reading.problems import PlanProblem, PlanValidationError, problems_from_validation_error
from disaster_recovery.plans.reading.yaml_reader import read_yaml_file
from disaster_recovery.plans.rules.graph import step_graph_problems
from disaster_recovery.plans.rules.plan_warnings import plan_warnings

PLAN_FILE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class PlanSet:
    """The valid plans of a directory by name, where each came from, and every problem found."""

    plans: dict[str, Plan] = field(default_factory=dict)
    sources: dict[str, Path] = field(default_factory=dict)
    problems: list[PlanProblem] = field(default_factory=list)
    files: tuple[Path, ...] = ()
    warnings: list[PlanProblem] = field(default_factory=list)
    """Valid but questionable (RPO above RTO, review overdue, ...): shown, never refused."""

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
    try:
        check_data(data)
    except BoundsExceeded as exc:
        raise PlanValidationError([PlanProblem(file, None, exc.path or None, f"refused: {exc}")]) from None
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
    except RecursionError:
        raise PlanValidationError([PlanProblem(file, None, None, "refused: nested too deeply to validate")]) from None
    except Exception as exc:  # noqa: BLE001 - a validator bug must not take the other plans down with it
        raise PlanValidationError(
            [PlanProblem(file, None, None, f"the plan could not be validated ({type(exc).__name__}: {exc})")]
        ) from None


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


read_plan_data = read_yaml_file  # the name other modules used before yaml_reader existed


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


# What may sit beside the plans without being one: the schema editors use, and documentation.
_COMPANION_NAMES = ("plan.schema.json",)
_COMPANION_SUFFIXES = (".md", ".txt", ".rst")


def skipped_file_problems(directory: str | Path) -> list[PlanProblem]:
    """A problem for each file of the plans folder that is not read as a plan, so none is silently ignored
    (``failover.YAML``, ``plan.yaml.bak``, ``plan.json``); hidden files and documentation are left alone."""
    problems = []
    for path in sorted(Path(directory).iterdir()):
        if path.name.startswith(".") or path.suffix in PLAN_FILE_SUFFIXES or path.name in _COMPANION_NAMES:
            continue
        if path.suffix.lower() in _COMPANION_SUFFIXES or not path.is_file():
            continue
        if path.suffix.lower() in PLAN_FILE_SUFFIXES:
            why = f"not read: plan files end in lower-case {' or '.join(PLAN_FILE_SUFFIXES)}; rename it"
        else:
            why = (f"not read: only {' and '.join(PLAN_FILE_SUFFIXES)} files are plans; rename it or move it out "
                   "of the plans folder")
        problems.append(PlanProblem(str(path), None, None, why))
    return problems


def load_plan_files(
    paths: Iterable[str | Path], *, implemented_step_types: Collection[str] | None = None, today: date | None = None
) -> PlanSet:
    """Load each file in order; one invalid plan never hides the valid ones.

    A plan name already taken by an earlier valid file (in the given order, which is path order for a
    folder) keeps that plan: the newcomer is the problem, so adding a file never removes a working DAG.
    """
    paths = tuple(Path(p) for p in paths)
    plans: dict[str, Plan] = {}
    sources: dict[str, Path] = {}
    problems: list[PlanProblem] = []
    warnings: list[PlanProblem] = []
    for path in paths:
        try:
            plan = load_plan(path, implemented_step_types=implemented_step_types)
        except PlanValidationError as exc:
            problems.extend(exc.problems)
            continue
        if plan.name in plans:
            problems.append(PlanProblem(
                str(path), None, "name",
                f"plan name {plan.name!r} is already used by {sources[plan.name]}, which stays deployed; "
                "this file is ignored until it has a name of its own",
            ))
            continue
        plans[plan.name] = plan
        sources[plan.name] = path
        try:
            warnings += plan_warnings(plan, file=str(path), today=today or date.today())
        except Exception as exc:  # noqa: BLE001 - advice must never cost a valid plan its DAG
            warnings.append(PlanProblem(str(path), None, None, f"warnings could not be computed: {exc!r}"))
    return PlanSet(plans=plans, sources=sources, problems=problems, files=paths, warnings=warnings)


def load_plans(directory: str | Path, *, implemented_step_types: Collection[str] | None = None) -> PlanSet:
    """Load every ``*.yaml``/``*.yml`` plan directly inside ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        problem = PlanProblem(str(directory), None, None, "not a directory")
        return PlanSet(problems=[problem])
    plan_set = load_plan_files(plan_files(directory), implemented_step_types=implemented_step_types)
    plan_set.problems.extend(skipped_file_problems(directory))
    return plan_set
