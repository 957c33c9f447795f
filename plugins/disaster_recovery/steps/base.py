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


@dataclass(frozen=True)
class StepContext:
    plan_name: str
    step_name: str
    dry_run: bool = False
    execution_id: str | None = None
    try_number: int = 1
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("disaster_recovery.steps"))


@dataclass(frozen=True)
class StepResult:
    """The step's JSON-serialisable output (stored as output_data) and one sentence saying what it did."""

    output: dict[str, Any]
    sentence: str


class Step(Protocol):
    type_name: ClassVar[str]

    def run(self, config: Any, ctx: StepContext) -> StepResult: ...
