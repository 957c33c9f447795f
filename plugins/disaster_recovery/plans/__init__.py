"""Recovery plans: the pure model of the plan language, YAML loading and validation.

Nothing here imports Airflow: ``rendering`` turns a ``Plan`` into a DAG, ``steps`` run its steps.
"""

from disaster_recovery.plans.language.durations import Duration, PositiveDuration, format_duration, parse_duration
from disaster_recovery.plans.language.enums import (
    ApprovalStatus,
    DisasterScenario,
    ExecutionMode,
    HealthStatus,
    NotificationEvent,
    StepType,
)
from disaster_recovery.plans.language.step_configs import CONFIG_MODELS
from disaster_recovery.plans.language.step_models import STEP_MODELS, AnyStep, Step
from disaster_recovery.plans.model import Approval, Objectives, Plan
from disaster_recovery.plans.reading.loader import PlanSet, load_plan, load_plan_files, load_plans, parse_plan
from disaster_recovery.plans.reading.problems import PlanProblem, PlanValidationError
from disaster_recovery.plans.rules.criteria import CriterionResult, all_criteria_met, evaluate_criteria, resolve_path
from disaster_recovery.plans.rules.graph import Stage, StepGraph, StepGraphError, build_step_graph, plan_stages
from disaster_recovery.plans.schema import plan_json_schema, plan_json_schema_text

__all__ = [
    "CONFIG_MODELS",
    "STEP_MODELS",
    "AnyStep",
    "Approval",
    "ApprovalStatus",
    "CriterionResult",
    "DisasterScenario",
    "Duration",
    "ExecutionMode",
    "HealthStatus",
    "NotificationEvent",
    "Objectives",
    "Plan",
    "PlanProblem",
    "PlanSet",
    "PlanValidationError",
    "PositiveDuration",
    "Stage",
    "Step",
    "StepGraph",
    "StepGraphError",
    "StepType",
    "all_criteria_met",
    "build_step_graph",
    "evaluate_criteria",
    "format_duration",
    "load_plan",
    "load_plan_files",
    "load_plans",
    "parse_duration",
    "parse_plan",
    "plan_json_schema",
    "plan_json_schema_text",
    "plan_stages",
    "resolve_path",
]
