"""``database_failover``: fail a cluster over, switch it over, or rejoin a member (``action``).

The work is ``clusters.actions`` (failover, switchover, rejoin: each decides on one snapshot and says
why); this module resolves the cluster the step names — or, in the older form, makes a two-member
cluster of ``primary_conn_id`` and ``standby_conn_id`` (with the host control clusters.yaml declares for
those connections, if any) — runs the action, and writes its ``failover_events`` row: a dry run writes
none, a refusal writes a failed one, and an incident the health monitor opened is completed, not
duplicated. A refusal or failure raises ``StepFailed`` with the action's sentence.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import ClassVar

from disaster_recovery.clusters.actions.common import ActionFailed, ActionRefused, ActionResult
from disaster_recovery.clusters.actions.failover import FailoverOptions, failover
from disaster_recovery.clusters.actions.rejoin import RejoinOptions, rejoin
from disaster_recovery.clusters.actions.switchover import SwitchoverOptions, switchover
from disaster_recovery.clusters.model import Cluster, Member, RejoinMethod, cluster_of_conn, load_clusters
from disaster_recovery.config_files import ItemsFileError
from disaster_recovery.plans.language.step_configs import DatabaseFailoverConfig, FailoverAction
from disaster_recovery.steps.base import StepContext, StepFailed, StepResult


def adhoc_cluster(cfg: DatabaseFailoverConfig) -> Cluster:
    """A cluster of the step's two connections (the form without ``cluster``)."""
    clusters = load_clusters()
    members = []
    for conn_id in (cfg.primary_conn_id, cfg.standby_conn_id):
        if conn_id is None:
            continue
        declared = cluster_of_conn(clusters, conn_id)
        members.append(declared[1] if declared else Member(conn_id=conn_id, name=_member_name(conn_id)))
    return Cluster(name="-".join(m.member_name for m in members)[:63].replace("_", "-") or "pair",
                   members=tuple(members), synchronous=False)


def _member_name(conn_id: str) -> str:
    name = "".join(c if c.isalnum() else "_" for c in conn_id.lower())
    return name if name[:1].isalpha() else f"m_{name}"[:63]


def resolve_cluster(cfg: DatabaseFailoverConfig) -> Cluster:
    if cfg.cluster is None:
        return adhoc_cluster(cfg)
    try:
        return load_clusters().require(cfg.cluster)
    except ItemsFileError as exc:
        raise StepFailed(f"Cannot use cluster {cfg.cluster!r}: {exc}") from exc


def _catalog():
    from disaster_recovery.catalog.repository import catalog_from_connection

    return catalog_from_connection(os.environ.get("DR_CATALOG_CONN_ID", "dr_catalog"))


class DatabaseFailoverStep:
    type_name: ClassVar[str] = "database_failover"
    record_events: ClassVar[bool] = True

    def run(self, config: DatabaseFailoverConfig | dict, ctx: StepContext) -> StepResult:
        cfg = config if isinstance(config, DatabaseFailoverConfig) else DatabaseFailoverConfig.model_validate(config)
        cluster = resolve_cluster(cfg)
        started = datetime.now(UTC)
        result: ActionResult | None = None
        refusal: str | None = None
        try:
            result = self._act(cluster, cfg, ctx)
        except (ActionRefused, ActionFailed, KeyError) as exc:
            refusal = str(exc).strip("'\"")
            raise StepFailed(refusal) from exc
        finally:
            if not ctx.dry_run and self.record_events:
                self._record(cluster, cfg, ctx, result=result, refusal=refusal, started=started)
        ctx.log.info("%s: %s", cfg.action.value, result.sentence)
        return StepResult(output=result.output(), sentence=result.sentence)

    @staticmethod
    def _act(cluster: Cluster, cfg: DatabaseFailoverConfig, ctx: StepContext) -> ActionResult:
        timeout = cfg.wait_writable_timeout.total_seconds()
        if cfg.action is FailoverAction.SWITCHOVER:
            return switchover(cluster, SwitchoverOptions(
                candidate=cfg.candidate, max_lag_bytes=cfg.max_lag_bytes, timeout=timeout, dry_run=ctx.dry_run,
                reason=ctx.trigger.reason, execution_id=ctx.execution_id))
        if cfg.action is FailoverAction.REJOIN:
            method = RejoinMethod(cfg.rejoin_method.value) if cfg.rejoin_method else None
            return rejoin(cluster, RejoinOptions(member=cfg.member, method=method, timeout=max(timeout, 120),
                                                 dry_run=ctx.dry_run))
        candidate = cfg.candidate
        if cfg.cluster is None and cfg.standby_conn_id is not None:
            candidate = cluster.member(cfg.standby_conn_id).member_name
        return failover(cluster, FailoverOptions(
            candidate=candidate, max_lag_bytes=cfg.max_lag_bytes, max_lag_seconds=cfg.max_lag_seconds,
            fence_old_primary=cfg.fence_old_primary, require_lasting_fence=cfg.require_lasting_fence,
            keep_synchronous_names=not cfg.synchronous_standby_names_reset, timeout=timeout, dry_run=ctx.dry_run,
            reason=ctx.trigger.reason, execution_id=ctx.execution_id,
            expected_primary=cfg.primary_conn_id if cfg.cluster is None else None,
            # A retry must never fail over a second time: an earlier try may have promoted already.
            allow_primary_alive=ctx.try_number == 1,
        ))

    @staticmethod
    def _record(cluster: Cluster, cfg: DatabaseFailoverConfig, ctx: StepContext, *, result, refusal, started) -> None:
        from disaster_recovery.clusters.events import record_action

        catalog = None
        try:
            catalog = _catalog()
            record_action(
                catalog, result=result, action=cfg.action.value, cluster=cluster.name, refusal=refusal,
                trigger_reason=ctx.trigger.reason, automated=ctx.trigger.automated,
                initiated_by=ctx.trigger.initiated_by, started_at=started, execution_id=ctx.execution_id,
                dag_id=ctx.trigger.dag_id, run_id=ctx.trigger.run_id, incident_id=ctx.trigger.incident_id,
            )
        except Exception as exc:  # the event row must never turn a done failover into a failed step
            ctx.log.error("could not record the %s event of cluster %s: %s", cfg.action.value, cluster.name, exc)
        finally:
            if catalog is not None:
                catalog.dispose()
