"""Which plans the health monitor watches, and what their failover criteria say. Pure.

A plan is watched when it has failover criteria and may run without a human pressing the button
(``fully_automated``, or ``semi_automated``, whose approval gate comes later in its own run). Its
services are those its criteria name (every service when it only sets performance thresholds); its
clusters are those its database_failover steps act on, so that a running switchover of the same
cluster holds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from disaster_recovery.health.criteria import CriteriaVerdict, HealthSample, evaluate_failover_criteria
from disaster_recovery.plans import ExecutionMode, Plan
from disaster_recovery.plans.language.criteria_models import FailoverCriteria

WATCHED_MODES = (ExecutionMode.FULLY_AUTOMATED, ExecutionMode.SEMI_AUTOMATED)


@dataclass(frozen=True, kw_only=True)
class PlanWatch:
    plan_name: str
    dag_id: str
    criteria: FailoverCriteria
    services: tuple[str, ...]
    clusters: tuple[str, ...]
    rearm_after: timedelta

    def verdict(self, samples: Mapping[str, Sequence[HealthSample]]) -> CriteriaVerdict:
        return evaluate_failover_criteria(self.criteria, {s: samples.get(s, ()) for s in self.services})


def watches(plans: Iterable[Plan], *, service_names: Iterable[str]) -> list[PlanWatch]:
    """The watches of the plans the monitor may start (see the module docstring)."""
    every = tuple(service_names)
    result = []
    for plan in plans:
        criteria = plan.failover_criteria
        if criteria.is_empty or plan.execution_mode not in WATCHED_MODES:
            continue
        services = tuple(criteria.health_thresholds) or every
        result.append(PlanWatch(plan_name=plan.name, dag_id=plan.dag_id, criteria=criteria, services=services,
                                clusters=plan.clusters(), rearm_after=criteria.rearm_after))
    return result


def unknown_services(watch: PlanWatch, known: Iterable[str]) -> tuple[str, ...]:
    known = set(known)
    return tuple(s for s in watch.services if s not in known)


def clear_since(watch: PlanWatch, samples: Mapping[str, Sequence[HealthSample]]) -> datetime | None:
    """Since when the criteria have been continuously *not* met, judged on the samples (newest first per
    service); None when they are met now or the samples are too few to tell."""
    moments = sorted({s.at for rows in samples.values() for s in rows}, reverse=True)
    since = None
    for moment in moments:
        upto = {name: [s for s in rows if s.at <= moment] for name, rows in samples.items()}
        if watch.verdict(upto).met:
            break
        since = moment
    return since


def conflicting(watch: PlanWatch, active: Iterable[tuple[str, str, tuple[str, ...]]]) -> tuple[str, ...]:
    """Active executions (plan name, execution name, plan's clusters) that act on this watch's clusters,
    or of the plan itself."""
    mine = set(watch.clusters)
    return tuple(name for plan, name, clusters in active
                 if plan == watch.plan_name or (mine and mine & set(clusters)))
