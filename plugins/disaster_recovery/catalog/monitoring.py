"""The catalog's monitoring rows: failover_events and system_health_monitoring (a part of ``Catalog``)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import insert, select, update

from disaster_recovery.catalog.base import NotFound, _check_choice, _prepare, _uuid
from disaster_recovery.catalog.records import FailoverEventRecord, normalize
from disaster_recovery.catalog.tables import FAILOVER_STATUS, failover_events

FAILOVER_UPDATABLE = frozenset(c.name for c in failover_events.columns) - {"id"}


class MonitoringRows:
    """Failover events and health rows; mixed into ``Catalog``, which gives it ``engine``."""

    engine: Any

    # -- failover events ------------------------------------------------------------------------------
    def record_failover_event(
        self,
        *,
        event_name: str,
        trigger_type: str,
        source_system: str,
        target_system: str,
        failover_reason: str,
        automated: bool = False,
        status: str = "initiated",
        initiated_at: dt.datetime | None = None,
        completed_at: dt.datetime | None = None,
        duration: dt.timedelta | None = None,
        data_consistency_check: bool = False,
        traffic_redirected: bool = False,
        dns_updated: bool = False,
        ssl_certificates_migrated: bool = False,
        rollback_plan: dict | None = None,
        success_validation: dict | None = None,
        impact_assessment: dict | None = None,
        notification_sent: bool = False,
        created_by: str | None = None,
    ) -> FailoverEventRecord:
        """Insert a failover_events row (initiated_at defaults to now)."""
        _check_choice("failover status", status, FAILOVER_STATUS)
        values = {k: v for k, v in locals().items() if k != "self"}
        if initiated_at is None:
            values.pop("initiated_at")
        t = failover_events
        with self.engine.begin() as conn:
            row = conn.execute(insert(t).values(**_prepare(t, values)).returning(t)).mappings().one()
        return FailoverEventRecord.from_row(row)

    def get_failover_event(self, event_id: uuid.UUID | str) -> FailoverEventRecord:
        t = failover_events
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == _uuid(event_id))).mappings().one_or_none()
        if row is None:
            raise NotFound(f"no failover event with id {event_id}")
        return FailoverEventRecord.from_row(row)

    def failover_events(
        self, *, statuses: Iterable[str] | None = None, since: dt.datetime | None = None, limit: int = 100
    ) -> list[FailoverEventRecord]:
        """Failover events, newest first (optionally only these statuses, or initiated since a moment)."""
        t = failover_events
        query = select(t).order_by(t.c.initiated_at.desc(), t.c.id).limit(limit)
        if statuses is not None:
            query = query.where(t.c.status.in_(list(statuses)))
        if since is not None:
            query = query.where(t.c.initiated_at >= since)
        with self.engine.connect() as conn:
            return [FailoverEventRecord.from_row(r) for r in conn.execute(query).mappings()]

    def update_failover_event(self, event_id: uuid.UUID | str, **fields: Any) -> FailoverEventRecord:
        """Update columns of a failover_events row (e.g. status, completed_at, duration, dns_updated)."""
        unknown = sorted(set(fields) - FAILOVER_UPDATABLE)
        if unknown or not fields:
            raise ValueError(f"update_failover_event cannot set {', '.join(unknown) or 'nothing'}")
        if "status" in fields:
            _check_choice("failover status", fields["status"], FAILOVER_STATUS)
        t = failover_events
        with self.engine.begin() as conn:
            row = (
                conn.execute(update(t).where(t.c.id == _uuid(event_id)).values(**_prepare(t, fields)).returning(t))
                .mappings()
                .one_or_none()
            )
        if row is None:
            raise NotFound(f"no failover event with id {event_id}")
        return FailoverEventRecord.from_row(row)

    # -- system health --------------------------------------------------------------------------------
    def record_health(self, rows: Iterable[Any]) -> int:
        """Insert system_health_monitoring rows in one multi-row INSERT; returns how many. A row is a mapping
        of column values, or has ``values()`` giving one (``health.evaluation.HealthRow``); columns a row
        leaves out get their defaults."""
        from disaster_recovery.catalog.tables import system_health_monitoring as t

        prepared = [_prepare(t, row if isinstance(row, Mapping) else row.values()) for row in rows]
        if not prepared:
            return 0
        with self.engine.begin() as conn:
            for columns in dict.fromkeys(tuple(sorted(values)) for values in prepared):  # one INSERT per shape
                conn.execute(insert(t).values([v for v in prepared if tuple(sorted(v)) == columns]))
        return len(prepared)

    def recent_health(self, service_names: Iterable[str], *, limit_per_service: int) -> dict[str, list[Any]]:
        """Per service asked for, its newest ``limit_per_service`` samples newest first
        (``health.criteria.HealthSample``; an empty list for a service without rows)."""
        from sqlalchemy import union_all

        from disaster_recovery.catalog.tables import system_health_monitoring as t
        from disaster_recovery.health.criteria import HealthSample

        result: dict[str, list[HealthSample]] = {name: [] for name in service_names}
        if not result or limit_per_service <= 0:
            return result
        newest = [
            select(t).where(t.c.service_name == name)
            .order_by(t.c.monitoring_timestamp.desc(), t.c.id.desc()).limit(limit_per_service)
            for name in result
        ]
        with self.engine.connect() as conn:
            rows = conn.execute(newest[0] if len(newest) == 1 else union_all(*newest)).mappings().all()
        for row in rows:
            result[row["service_name"]].append(HealthSample.from_row({k: normalize(v) for k, v in row.items()}))
        for samples in result.values():
            samples.sort(key=lambda s: s.at, reverse=True)
        return result

    def delete_health_before(self, moment: dt.datetime) -> int:
        """Delete the system_health_monitoring rows older than ``moment`` (retention); returns how many."""
        from sqlalchemy import delete

        from disaster_recovery.catalog.tables import system_health_monitoring as t

        if moment.tzinfo is None:
            raise ValueError(f"naive datetime {moment!r}; pass a timezone-aware one")
        with self.engine.begin() as conn:
            return conn.execute(delete(t).where(t.c.monitoring_timestamp < moment)).rowcount
