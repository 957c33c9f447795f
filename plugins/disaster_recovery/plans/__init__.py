"""Recovery plans: the pure model of the plan language, YAML loading and validation.

Nothing here imports Airflow: ``rendering`` turns a ``Plan`` into a DAG, ``steps`` run its steps.
"""

from .criteria import CriterionResult, all_criteria_met, evaluate_criteria, resolve_path
from .durations import Duration, PositiveDuration, format_duration, parse_duration
from .enums import (
    ApprovalStatus,
    DisasterScenario,
    ExecutionMode,
    HealthStatus,
    NotificationEvent,
    StepType,
)
from .graph import Stage, StepGraph, StepGraphError, build_step_graph, plan_stages
from .loader import PlanSet, load_plan, load_plan_files, load_plans, parse_plan
from .model import Approval, Objectives, Plan
from .problems import PlanProblem, PlanValidationError
from .schema import plan_json_schema, plan_json_schema_text
from .step_configs import CONFIG_MODELS
from .step_models import STEP_MODELS, AnyStep, Step

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
