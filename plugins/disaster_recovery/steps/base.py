"""What every step type implements, built-in or custom.

A step type is a class with a ``run(config, ctx) -> StepResult``; it is registered by name in
``disaster_recovery.steps.registry`` (lazily, by "module:Class"), the same way for built-in and custom
types. ``run`` does the I/O through hooks; the orchestration (catalog rows, success criteria, retries)
is done around it by the rendered DAG, not by the step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol


class StepFailed(RuntimeError):
    """The step could not do its job; the message says why, in an operator's words.

    ``output`` keeps what the step found before failing (per-check or per-channel results), so the
    step's catalog row shows it.
    """

    def __init__(self, message: str, *, output: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.output = output


@dataclass(frozen=True, kw_only=True)
class RunTrigger:
    """Why and by whom the run was started (the run's conf, checked): what a step records about its cause."""

    reason: str = "manual trigger"
    trigger_type: str = "manual"  # manual | automated | scheduled | alert_based
    initiated_by: str = "airflow"
    dag_id: str | None = None
    run_id: str | None = None
    incident_id: str | None = None  # the failover_events row the health monitor opened for this incident
    evidence: tuple[str, ...] = ()

    @property
    def automated(self) -> bool:
        return self.trigger_type in ("automated", "alert_based")


@dataclass(frozen=True)
class StepContext:
    plan_name: str
    step_name: str
    dry_run: bool = False
    execution_id: str | None = None
    try_number: int = 1
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("disaster_recovery.steps"))
    trigger: RunTrigger = field(default_factory=RunTrigger)


@dataclass(frozen=True)
class StepResult:
    """The step's JSON-serialisable output (stored as output_data) and one sentence saying what it did."""

    output: dict[str, Any]
    sentence: str
    measured: bool = False
    """In a dry run: True when the output is what really is (read-only checks that ran), so the step's
    success criteria are judged on it; False when it describes what would have been done."""


class Step(Protocol):
    type_name: ClassVar[str]

    def run(self, config: Any, ctx: StepContext) -> StepResult: ...
