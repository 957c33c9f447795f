"""Plan -> Airflow DAG. No hooks, no catalog, no network: only the plan model and the operators' classes.

Shape of a rendered plan `x` (DAG `dr_plan__x`):

  validate_execution -> <steps in plan order; a parallel group at its first member's position;
                         depends_on adds edges> -> finalize_execution
                     -> rollback_gate -> <rollback steps> -> finalize_execution   (only with rollback_steps)

`finalize_execution` runs whatever happened (all_done), writes the outcome and fails the run unless the
execution completed, so the DAG run's state agrees with the catalog.

The folder's plans are read and judged once per content: `parse_cache` keeps the result on local disk
for the other DAG file and the next dag-processor cycle (bench/parse_plans.py measures it).
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, BaseOperator, Param, TriggerRule
from airflow.sdk.definitions.param import ParamsDict

from disaster_recovery.orchestration.operators import (
    FinalizeExecutionOperator,
    RecoveryStepOperator,
    RollbackGateOperator,
    ValidateExecutionOperator,
)
from disaster_recovery.parse_cache import cached_plan_set, cached_problem_lines
from disaster_recovery.plans import Plan, PlanProblem, PlanSet, StepGraph, format_duration, load_plan_files
from disaster_recovery.plans.reading.bounds import MAX_FILE_BYTES
from disaster_recovery.plans.reading.loader import plan_files, skipped_file_problems
from disaster_recovery.steps.registry import implemented_step_types

DAG_ID_PREFIX = "dr_plan__"
REPO = Path(__file__).resolve().parents[2]
VALIDATE_TASK = "validate_execution"
FINALIZE_TASK = "finalize_execution"
ROLLBACK_GATE_TASK = "rollback_gate"
MAX_ACTIVE_RUNS = 16


def _warnings_of(plan_set: PlanSet, name: str) -> list[PlanProblem]:
    source = str(plan_set.sources[name])
    return [w for w in plan_set.warnings if w.file == source]


def plans_dir() -> Path:
    return Path(os.environ.get("DR_PLANS_DIR") or REPO / "include" / "plans")


def _doc_md(plan: Plan, source: Path | None, graph: StepGraph, warnings: Sequence[PlanProblem] = ()) -> str:
    lines = [
        f"# Recovery plan `{plan.name}` (v{plan.version})",
        "",
        plan.description or "",
        "",
        f"- **Scenario:** {plan.disaster_scenario.value}",
        f"- **Objectives:** RTO {format_duration(plan.objectives.rto)}, RPO {format_duration(plan.objectives.rpo)}",
        f"- **Approval:** {plan.approval.status.value}"
        + (f" by {plan.approval.approved_by} at {plan.approval.approved_at}" if plan.approval.approved_by else ""),
        f"- **Source:** `{source}`" if source else "",
        "",
        "| # | step | type | after | group | retries |",
        "|---|---|---|---|---|---|",
    ]
    steps = {step.name: step for step in plan.steps}
    for i, name in enumerate(graph.order, 1):
        step = steps[name]
        lines.append(
            f"| {i} | `{name}` | {step.type.value} | {', '.join(graph.upstream[name]) or '—'} | "
            f"{step.parallel_group or ''} | {step.retries} |"
        )
    if warnings:
        lines += ["", "## Warnings (`plans validate` prints them too)", ""]
        lines += [f"- {str(w).removeprefix(f'{w.file}: ')}" for w in warnings]
    return "\n".join(lines)


def _step_task(plan: Plan, step, *, rollback: bool) -> RecoveryStepOperator:
    return RecoveryStepOperator.for_step(
        plan,
        task_id=step.name,
        step_name=step.name,
        rollback=rollback,
        retries=step.retries,
        retry_delay=step.retry_delay,
        retry_exponential_backoff=2.0 if step.retry_exponential_backoff else 0,
        max_retry_delay=step.max_retry_delay,
        execution_timeout=step.timeout,
        doc_md=step.description or None,
    )


def _run_params(plan: Plan) -> dict[str, Param]:
    return {
        "reason": Param("manual trigger", type="string", minLength=1, description="why this recovery runs"),
        "execution_mode": Param(
            plan.execution_mode.value,
            enum=["manual", "semi_automated", "fully_automated", "test"],
            description="test: every step runs as a dry run",
        ),
        "trigger_type": Param("manual", enum=["manual", "automated", "scheduled", "alert_based"]),
        "dry_run": Param(False, type="boolean", description="check preconditions, change nothing"),
        "allow_duplicate": Param(
            False, type="boolean",
            description="run even if an execution of this plan was running when this run was triggered "
            "(never while one still runs); off: such a run is refused as its duplicate",
        ),
    }


def dag_config_defaults() -> dict[str, Any]:
    """DAG arguments Airflow would otherwise read from its configuration once per DAG (about 1 ms each
    time); a DAG file rendering many plans reads them once. Configuration, not I/O."""
    from airflow.configuration import conf

    return {
        "max_active_tasks": conf.getint("core", "max_active_tasks_per_dag"),
        "max_consecutive_failed_dag_runs": conf.getint("core", "max_consecutive_failed_dag_runs_per_dag"),
        "disable_bundle_versioning": conf.getboolean("dag_processor", "disable_bundle_versioning"),
    }


def render_plan(
    plan: Plan,
    *,
    source: Path | None = None,
    dag_defaults: dict[str, Any] | None = None,
    warnings: Sequence[PlanProblem] = (),
) -> DAG:
    """The DAG of one valid plan (its warnings, if any, in the DAG's documentation)."""
    tags = sorted({"disaster-recovery", "recovery-plan", plan.disaster_scenario.value, *plan.tags})
    graph = plan.graph()
    with DAG(
        dag_id=plan.dag_id,
        description=(plan.description or f"Recovery plan {plan.name}")[:200],
        schedule=None,
        start_date=datetime(2024, 1, 1),
        catchup=False,
        # Simultaneous triggers all start, so validate_execution refuses the duplicates at once (one
        # execution per plan is the catalog's rule, under the plan's lock) instead of queueing them.
        max_active_runs=MAX_ACTIVE_RUNS,
        tags=tags,
        doc_md=_doc_md(plan, source, graph, warnings),
        default_args={"retries": 0, "owner": "disaster-recovery"},
        render_template_as_native_obj=False,
        **(dag_defaults or {}),
    ) as dag:
        validate = ValidateExecutionOperator.for_plan(
            plan, task_id=VALIDATE_TASK, retries=0, params=_run_params(plan)
        )
        finalize = FinalizeExecutionOperator.for_plan(
            plan, task_id=FINALIZE_TASK, trigger_rule=TriggerRule.ALL_DONE, retries=1
        )
        tasks = {step.name: _step_task(plan, step, rollback=False) for step in plan.steps}
        # One set_upstream per task rather than one `>>` per edge: Airflow hashes the DAG of every task an
        # edge call touches (DAG.__hash__ walks the DAG's attributes and task ids), so the edges cost
        # per call and per task named, and a plan file renders thousands of them.
        _link(tasks, graph, entry=validate)
        finalize.set_upstream([*(tasks[leaf] for leaf in graph.leaves), validate])
        if plan.rollback_steps:
            gate = RollbackGateOperator.for_plan(
                plan, task_id=ROLLBACK_GATE_TASK, trigger_rule=TriggerRule.ALL_DONE, retries=0
            )
            gate.set_upstream([tasks[name] for name in graph.order])
            rollback_tasks = {s.name: _step_task(plan, s, rollback=True) for s in plan.rollback_steps}
            rgraph = plan.rollback_graph()
            _link(rollback_tasks, rgraph, entry=gate)
            finalize.set_upstream([*(rollback_tasks[leaf] for leaf in rgraph.leaves), gate])
    # The run's parameters belong to the DAG (the trigger form) and to validate_execution, which records
    # them; the other tasks read them from the run (runtime.run_info). They are set on the DAG only now:
    # Airflow deep-copies a DAG's params into every task it builds and validates each copy's schema
    # again when serialising, which for 1000 plans cost more than all the rest of the DAG processing.
    dag.params = ParamsDict(_run_params(plan))
    return dag


def _link(tasks: dict[str, RecoveryStepOperator], graph: StepGraph, *, entry: BaseOperator) -> None:
    """Each step task after its upstream steps; a step with none after ``entry``."""
    for name in graph.order:
        ups = graph.upstream[name]
        tasks[name].set_upstream([tasks[up] for up in ups] if ups else entry)


def load_valid_plans(files: Iterable[Path]) -> PlanSet:
    return load_plan_files(files, implemented_step_types=implemented_step_types())


def _judged_by() -> tuple[str]:
    """What validation depends on besides the files and the code (parse_cache's key)."""
    return (",".join(sorted(implemented_step_types())),)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Building thousands of operators allocates millions of long-lived objects; Python's cyclic GC would
    rescan them again and again (the parse time grew faster than the number of plans). Nothing built
    here is garbage, so collection waits until the DAGs are built.

    In a process that already runs with a frozen heap (a dag-processor child: its manager calls
    gc.freeze() before forking), the DAGs join the frozen objects instead: they live until the child
    exits, and re-enabling the collector would otherwise make it scan them all, two or three times over,
    while Airflow serializes them (a third of the serialization time for 1000 plans). Elsewhere (tests,
    the CLI, any long-lived process) nothing is frozen that a later collection might need to free."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc_was_enabled:
            if gc.get_freeze_count():
                gc.freeze()
            gc.enable()


def build_dags(directory: Path | None = None, *, only_dag_id: str | None = None) -> dict[str, DAG]:
    """Every valid plan of the folder as a DAG (invalid ones are reported by `plan_problems`).

    With ``only_dag_id`` (a task's process, from get_parsing_context) just that DAG is built (see
    `_build_one`).
    """
    directory = directory or plans_dir()
    if not directory.is_dir():
        return {}
    files = plan_files(directory)
    if only_dag_id and only_dag_id.startswith(DAG_ID_PREFIX):
        dag = _build_one(directory, files, only_dag_id[len(DAG_ID_PREFIX):])
        if dag is not None:
            return {only_dag_id: dag}
    with _collector_paused():
        plan_set = cached_plan_set(directory, files, load_valid_plans, extra=_judged_by())
        defaults = dag_config_defaults()
        warnings: dict[str, list[PlanProblem]] = {}  # by file, once: every plan may have one
        for warning in plan_set.warnings:
            warnings.setdefault(warning.file, []).append(warning)
        dags = {
            plan.dag_id: render_plan(plan, source=plan_set.sources[name], dag_defaults=defaults,
                                     warnings=warnings.get(str(plan_set.sources[name]), ()))
            for name, plan in plan_set.plans.items()
        }
    if only_dag_id and only_dag_id in dags:
        return {only_dag_id: dags[only_dag_id]}
    return dags


def _build_one(directory: Path, files: Sequence[Path], name: str) -> DAG | None:
    """The DAG of plan ``name`` alone, or None when the folder has no such valid plan.

    Its file is read alone when it is named after the plan and no file before it (in path order) can
    hold a plan of that name: the loader keeps the first valid holder of a name, so a later file named
    after the plan is not necessarily the one deployed. Otherwise the folder's plans (parse_cache) say
    where the plan comes from, and only its DAG is rendered.
    """
    named = next((f for f in files if f.stem == name), None)
    if named is not None and not _may_hold_before(name, named, files):
        plan_set = load_valid_plans([named])
        if name in plan_set.plans:
            return render_plan(plan_set.plans[name], source=plan_set.sources[name],
                               warnings=_warnings_of(plan_set, name))
    plan_set = cached_plan_set(directory, files, load_valid_plans, extra=_judged_by())
    if name not in plan_set.plans:
        return None
    return render_plan(plan_set.plans[name], source=plan_set.sources[name], warnings=_warnings_of(plan_set, name))


def _may_hold_before(name: str, file: Path, files: Sequence[Path]) -> bool:
    """Whether a file before ``file`` may hold a valid plan called ``name``. YAML spells a plan name as
    its own text (plain, quoted, anchored or merged) unless a double-quoted escape writes some of it, so
    a file holding neither the name nor a backslash cannot hold it; nor can one the loader refuses unread."""
    spelled = re.compile(rb"(?<![\w-])" + re.escape(name.encode()) + rb"(?![\w-])|\\")
    for other in files:
        if other == file:
            return False
        try:
            with open(other, "rb") as handle:
                content = handle.read(MAX_FILE_BYTES + 1)
        except OSError:
            continue
        if len(content) <= MAX_FILE_BYTES and spelled.search(content):
            return True
    return False


def plan_problems(directory: Path | None = None) -> list[str]:
    """One line per problem of the folder's plans (file, step, field), and one per file of the folder that
    is not read as a plan (``x.YAML``), for Airflow's import errors."""
    directory = directory or plans_dir()
    if not directory.is_dir():
        return [f"{directory}: the plans folder does not exist (set DR_PLANS_DIR)"]
    lines = cached_problem_lines(directory, plan_files(directory), load_valid_plans, extra=_judged_by())
    return lines + [str(p) for p in skipped_file_problems(directory)]
