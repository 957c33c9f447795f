"""Failover events: one ``failover_events`` row per failover, switchover and rejoin (and per incident).

The spec's columns hold the headline (who, from where to where, why, when, how long, status); the rest
is a typed record in ``impact_assessment`` (``FailoverImpact``): the incident's detection, the
decision, the data lost (bytes and seconds, measured or estimated), each phase's duration and the
execution it belongs to. The health monitor opens an incident's row (status ``initiated``) the moment
it detects the failure; the plan's failover step then completes that same row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from disaster_recovery.catalog.records import FailoverEventRecord
    from disaster_recovery.catalog.repository import Catalog
    from disaster_recovery.clusters.actions.common import ActionResult


class FailoverImpact(BaseModel):
    """The ``impact_assessment`` document of a failover event (read back through this model only)."""

    model_config = ConfigDict(extra="ignore")

    cluster: str | None = None
    action: str | None = None  # failover | switchover | rejoin | incident
    execution_id: str | None = None
    dag_id: str | None = None
    run_id: str | None = None
    plan_name: str | None = None
    incident: bool = False
    first_failure_at: datetime | None = None
    detected_at: datetime | None = None
    evidence: list[str] = []
    decision: str | None = None
    promoted_at: datetime | None = None
    timeline_before: int | None = None
    timeline_after: int | None = None
    data_loss_bytes: int | None = None
    data_loss_seconds: float | None = None
    lost_transactions: int | None = None
    data_loss_measured: bool = False
    lasting_fence: bool | None = None
    phases: dict[str, float] = {}
    detection_to_promotion_seconds: float | None = None
    notes: list[str] = []
    refusal: str | None = None

    @classmethod
    def of(cls, record: FailoverEventRecord) -> FailoverImpact:
        return cls.model_validate(record.impact_assessment or {})


TRIGGER_TYPES = {"switchover": "scheduled_maintenance", "rejoin": "scheduled_maintenance"}


def failover_trigger_type(*, action: str, automated: bool, evidence: list[str]) -> str:
    """The spec's failover_trigger_type for an action and how it was triggered."""
    if action in TRIGGER_TYPES:
        return TRIGGER_TYPES[action]
    if not automated:
        return "manual_trigger"
    if evidence and all(("response time" in e or "error rate" in e or "throughput" in e) for e in evidence):
        return "performance_threshold"
    return "health_check_failure"


def open_incident(catalog: Catalog, *, cluster: str | None, plan_name: str, dag_id: str, source: str,
                  reason: str, evidence: list[str], first_failure_at: datetime | None,
                  detected_at: datetime, created_by: str) -> FailoverEventRecord:
    """The monitor's row for a detected incident, before any run exists (status initiated)."""
    impact = FailoverImpact(cluster=cluster, action="incident", plan_name=plan_name, dag_id=dag_id, incident=True,
                            first_failure_at=first_failure_at, detected_at=detected_at, evidence=evidence)
    return catalog.record_failover_event(
        event_name=f"incident: {plan_name}"[:200],
        trigger_type=failover_trigger_type(action="failover", automated=True, evidence=evidence),
        source_system=source[:100],
        target_system="(to be decided)",
        failover_reason=reason,
        automated=True,
        initiated_at=detected_at,
        impact_assessment=impact.model_dump(mode="json"),
        created_by=created_by,
    )


def link_incident(catalog: Catalog, incident_id: str, *, execution_id: str | None, dag_id: str, run_id: str,
                  refusal: str | None = None) -> None:
    """The plan's run admitted (in_progress, naming its execution) or refused (failed, with the reason)
    the incident the monitor opened. An unknown id is ignored: the run may have been started by hand."""
    incident = _incident(catalog, incident_id)
    if incident is None:
        return
    impact = FailoverImpact.of(incident).model_copy(update={
        "execution_id": execution_id, "dag_id": dag_id, "run_id": run_id, "refusal": refusal})
    fields: dict[str, Any] = {"impact_assessment": impact.model_dump(mode="json")}
    if refusal:
        now = datetime.now(UTC)
        fields.update(status="failed", completed_at=now, duration=now - incident.initiated_at,
                      success_validation={"sentence": f"the recovery was refused: {refusal}", "ok": False})
    else:
        fields["status"] = "in_progress"
    catalog.update_failover_event(incident.id, **fields)


def record_action(
    catalog: Catalog, *, result: ActionResult | None, action: str, cluster: str, refusal: str | None,
    trigger_reason: str, automated: bool, initiated_by: str, started_at: datetime,
    execution_id: str | None, dag_id: str | None, run_id: str | None, incident_id: str | None,
) -> FailoverEventRecord:
    """Write (or, for an incident the monitor opened, complete) the event of one action."""
    now = datetime.now(UTC)
    incident = _incident(catalog, incident_id)
    impact = FailoverImpact.of(incident) if incident is not None else FailoverImpact(cluster=cluster)
    impact = impact.model_copy(update={
        "cluster": cluster, "action": action, "execution_id": execution_id, "dag_id": dag_id, "run_id": run_id,
        "refusal": refusal,
    })
    if result is not None:
        loss = result.loss
        impact = impact.model_copy(update={
            "decision": result.decision, "promoted_at": result.promoted_at,
            "timeline_before": result.timeline_before, "timeline_after": result.timeline_after,
            "data_loss_bytes": result.data_loss_bytes, "data_loss_seconds": result.data_loss_seconds,
            "lost_transactions": loss.lost_transactions if loss else None, "data_loss_measured": loss is not None,
            "lasting_fence": result.lasting_fence, "phases": dict(result.phases.seconds),
            "notes": list(result.notes),
        })
        if impact.detected_at and result.promoted_at:
            impact = impact.model_copy(update={
                "detection_to_promotion_seconds": round((result.promoted_at - impact.detected_at).total_seconds(), 3)})
    status = "failed" if refusal or result is None else "completed"
    source = (result.source if result else None) or (incident.source_system if incident else None) or "(unknown)"
    target = (result.target if result else None) or "(none)"
    evidence = impact.evidence
    fields: dict[str, Any] = dict(
        status=status,
        source_system=source[:100],
        target_system=target[:100],
        completed_at=now,
        data_consistency_check=bool(result and result.data_loss_bytes == 0),
        success_validation={"sentence": result.sentence if result else refusal, "ok": status == "completed"},
        impact_assessment=impact.model_dump(mode="json"),
        rollback_plan={"rejoin": "a rejoin action (database_failover action: rejoin) returns the old primary as a "
                                 "standby; a switchover then moves the primary back"} if action == "failover" else None,
    )
    if incident is not None:
        fields["duration"] = now - incident.initiated_at
        return catalog.update_failover_event(incident.id, **fields)
    return catalog.record_failover_event(
        event_name=f"{cluster} {action}: {source} -> {target}"[:200],
        trigger_type=failover_trigger_type(action=action, automated=automated, evidence=evidence),
        failover_reason=trigger_reason or action,
        automated=automated,
        initiated_at=started_at,
        duration=now - started_at,
        created_by=initiated_by,
        **fields,
    )


def _incident(catalog: Catalog, incident_id: str | None) -> FailoverEventRecord | None:
    if not incident_id:
        return None
    from disaster_recovery.catalog.repository import NotFound

    try:
        return catalog.get_failover_event(incident_id)
    except (NotFound, ValueError):
        return None
