"""The final status of an execution from its step rows (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StepState:
    name: str
    status: str
    rollback: bool = False


@dataclass(frozen=True)
class Outcome:
    status: str  # completed | failed | rolled_back
    steps_completed: int
    steps_total: int
    failed_steps: tuple[str, ...]
    rollback_initiated: bool
    rollback_completed: bool
    sentence: str

    @property
    def succeeded(self) -> bool:
        return self.status == "completed"


def decide_outcome(steps: Sequence[StepState]) -> Outcome:
    main = [s for s in steps if not s.rollback]
    rollback = [s for s in steps if s.rollback]
    done = sum(1 for s in main if s.status == "completed")
    failed = tuple(s.name for s in main if s.status == "failed")
    unfinished = tuple(s.name for s in main if s.status not in ("completed", "failed", "skipped"))
    rollback_ran = any(s.status not in ("pending", "skipped") for s in rollback)
    rollback_ok = rollback_ran and all(s.status == "completed" for s in rollback)
    if not failed and not unfinished:
        status, sentence = "completed", f"all {len(main)} steps completed"
    elif rollback_ok:
        status, sentence = "rolled_back", f"step(s) {', '.join(failed or unfinished)} failed; rollback completed"
    else:
        status = "failed"
        parts = []
        if failed:
            parts.append(f"failed: {', '.join(failed)}")
        if unfinished:
            parts.append(f"did not run: {', '.join(unfinished)}")
        if rollback_ran:
            parts.append("rollback did not complete")
        sentence = "; ".join(parts)
    return Outcome(
        status=status,
        steps_completed=done,
        steps_total=len(main),
        failed_steps=failed,
        rollback_initiated=rollback_ran,
        rollback_completed=rollback_ok,
        sentence=sentence,
    )
