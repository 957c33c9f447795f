"""One version of a plan per run: the one ``validate_execution`` admitted, whatever the file says later.

Every task of a plan DAG is built from the plan file as it is when the task starts, so a file edited
during a run would otherwise give later steps another version than the one admitted (approved,
fingerprinted, recorded). ``validate_execution`` stores the admitted document in its XCom; each later
task runs that version. When the edit changed the plan's shape (steps added, removed, re-wired) the
tasks Airflow now has no longer match the admitted steps, so a step task fails clearly instead of
mixing versions. Task-level settings Airflow read from the new file (retries, timeout) are the only
part of the new version a run can see.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from pydantic import ValidationError

from disaster_recovery.plans import Plan

log = logging.getLogger("disaster_recovery.orchestration")
VALIDATE_TASK = "validate_execution"
ADMITTED_PLAN_KEY = "admitted_plan"


@dataclass(frozen=True)
class AdmittedPlan:
    """What validate_execution pushes to XCom (key ``admitted_plan``)."""

    fingerprint: str
    document: dict[str, Any]

    @classmethod
    def of(cls, plan: Plan) -> AdmittedPlan:
        return cls(fingerprint=plan.fingerprint(), document=plan.document())

    def as_xcom(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "document": self.document}

    @classmethod
    def from_xcom(cls, value: Any) -> AdmittedPlan | None:
        if not isinstance(value, dict) or not isinstance(value.get("document"), dict):
            return None
        return cls(fingerprint=str(value.get("fingerprint")), document=value["document"])


def _differences(admitted: Plan, current: Plan) -> str:
    def names(plan: Plan) -> list[str]:
        return [s.name for s in (*plan.steps, *plan.rollback_steps)]

    gone = [n for n in names(admitted) if n not in names(current)]
    new = [n for n in names(current) if n not in names(admitted)]
    parts = [f"removed {', '.join(gone)}" if gone else "", f"added {', '.join(new)}" if new else ""]
    return "; ".join(p for p in parts if p) or "steps re-wired (types, dependencies or groups)"


def admitted_plan(current: Plan, context, *, same_shape: bool = True) -> Plan:
    """The plan version admitted for this run (``current`` when the file did not change since).

    ``same_shape``: refuse (AirflowFailException) when the file's steps no longer match the admitted
    ones; finalize and the rollback gate pass False and judge the run by the admitted version.
    """
    admitted = AdmittedPlan.from_xcom(context["ti"].xcom_pull(task_ids=VALIDATE_TASK, key=ADMITTED_PLAN_KEY))
    if admitted is None or admitted.fingerprint == current.fingerprint():
        return current
    try:
        plan = Plan.model_validate(admitted.document)
    except ValidationError as exc:
        raise AirflowFailException(f"the plan version admitted for this run no longer validates: {exc}") from None
    changed = (f"the plan file of {current.name!r} changed during this run (admitted version "
               f"{admitted.fingerprint[:12]}…, the file now {current.fingerprint()[:12]}…)")
    if same_shape and plan.shape() != current.shape():
        raise AirflowFailException(
            f"{changed} and its steps differ ({_differences(plan, current)}): this run keeps to the admitted "
            "version and cannot run the new steps; finish or fail this run, then trigger a new one"
        )
    log.warning("%s: running the admitted version", changed)
    return plan
