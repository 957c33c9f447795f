"""SQLAlchemy Core description of the catalog: the nine tables, eighteen enums and twenty-six indexes.

`sql/` is the source of truth (it is what gets applied); this module mirrors it exactly, column for
column, so that queries are built with Core expressions. The integration tests check both directions:
reflecting a database migrated from `sql/` agrees with this metadata, and `metadata.create_all` on a
database holding only the enum types yields the same catalog as `sql/` (types, defaults, constraints,
indexes). Enum types are owned by `sql/001_enums.sql`, hence ``create_type=False``.

Constraint names are those PostgreSQL gives the unnamed constraints of `sql/` (``<table>_pkey``,
``<table>_<column>_key``, ``<table>_<column>_fkey``).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, ENUM, INTERVAL, JSONB, TIMESTAMP, UUID

# -- enum values, in the spec's order ---------------------------------------------------------------
RECOVERY_TYPE = ("hot_standby", "warm_standby", "cold_standby", "active_active", "backup_restore", "cloud_migration")
PRIORITY_LEVEL = ("critical", "high", "medium", "low")
DISASTER_SCENARIO = (
    "hardware_failure",
    "software_corruption",
    "cyber_attack",
    "natural_disaster",
    "power_outage",
    "network_failure",
    "human_error",
    "data_center_outage",
)
APPROVAL_STATUS = ("draft", "under_review", "approved", "rejected", "expired")
TRIGGER_TYPE = ("manual", "automated", "scheduled", "alert_based")
EXECUTION_MODE = ("manual", "semi_automated", "fully_automated", "test")
EXECUTION_STATUS = ("initiated", "in_progress", "completed", "failed", "cancelled", "rolled_back")
STEP_TYPE = (
    "backup_restore",
    "service_start",
    "dns_update",
    "load_balancer_config",
    "database_failover",
    "validation",
    "notification",
    "cleanup",
)
STEP_STATUS = ("pending", "running", "completed", "failed", "skipped", "retrying")
BACKUP_TYPE = ("full", "incremental", "differential", "transaction_log", "snapshot", "continuous")
BACKUP_FORMAT = ("sql_dump", "binary", "compressed_archive", "vm_image", "container_image", "file_archive")
VERIFICATION_STATUS = ("pending", "verified", "failed", "corrupted", "expired")
STORAGE_CLASS = ("standard", "infrequent_access", "archive", "deep_archive")
ACCESS_FREQUENCY = ("frequent", "infrequent", "rare", "archive")
HEALTH_STATUS = ("healthy", "degraded", "unhealthy", "unknown")
FAILOVER_TRIGGER_TYPE = (
    "health_check_failure",
    "performance_threshold",
    "manual_trigger",
    "scheduled_maintenance",
    "capacity_limit",
)
FAILOVER_STATUS = ("initiated", "in_progress", "completed", "failed", "rolled_back")
TEST_TYPE = ("tabletop_exercise", "walkthrough", "simulation", "parallel_test", "full_interruption")

# Execution statuses that count as "running" (a second run of the same plan conflicts with them).
ACTIVE_EXECUTION_STATUSES = ("initiated", "in_progress")


def _enum(name: str, values: tuple[str, ...]) -> ENUM:
    return ENUM(*values, name=name, create_type=False)


recovery_type_enum = _enum("recovery_type_enum", RECOVERY_TYPE)
priority_level_enum = _enum("priority_level_enum", PRIORITY_LEVEL)
disaster_scenario_enum = _enum("disaster_scenario_enum", DISASTER_SCENARIO)
approval_status_enum = _enum("approval_status_enum", APPROVAL_STATUS)
trigger_type_enum = _enum("trigger_type_enum", TRIGGER_TYPE)
execution_mode_enum = _enum("execution_mode_enum", EXECUTION_MODE)
execution_status = _enum("execution_status", EXECUTION_STATUS)
step_type_enum = _enum("step_type_enum", STEP_TYPE)
step_status = _enum("step_status", STEP_STATUS)
backup_type_enum = _enum("backup_type_enum", BACKUP_TYPE)
backup_format_enum = _enum("backup_format_enum", BACKUP_FORMAT)
verification_status_enum = _enum("verification_status_enum", VERIFICATION_STATUS)
storage_class_enum = _enum("storage_class_enum", STORAGE_CLASS)
access_frequency_enum = _enum("access_frequency_enum", ACCESS_FREQUENCY)
health_status_enum = _enum("health_status_enum", HEALTH_STATUS)
failover_trigger_type = _enum("failover_trigger_type", FAILOVER_TRIGGER_TYPE)
failover_status = _enum("failover_status", FAILOVER_STATUS)
test_type_enum = _enum("test_type_enum", TEST_TYPE)

# All eighteen, in the order of sql/001_enums.sql (name -> type).
ENUMS: dict[str, ENUM] = {
    e.name: e
    for e in (
        recovery_type_enum,
        priority_level_enum,
        disaster_scenario_enum,
        approval_status_enum,
        trigger_type_enum,
        execution_mode_enum,
        execution_status,
        step_type_enum,
        step_status,
        backup_type_enum,
        backup_format_enum,
        verification_status_enum,
        storage_class_enum,
        access_frequency_enum,
        health_status_enum,
        failover_trigger_type,
        failover_status,
        test_type_enum,
    )
}

# -- column helpers -----------------------------------------------------------------------------------
TIMESTAMPTZ = TIMESTAMP(timezone=True)
# Python None is stored as SQL NULL, never as the JSON value 'null'.
JSON_DOC = JSONB(none_as_null=True)
TEXT_ARRAY = ARRAY(Text)
NOW = text("now()")
TRUE = text("true")
FALSE = text("false")
ZERO = text("0")
EMPTY_JSON = text("'{}'")
EMPTY_ARRAY = text("'{}'")


def _id() -> Column:
    return Column("id", UUID(as_uuid=True), nullable=False, server_default=text("gen_random_uuid()"))


def _pk(table: str) -> PrimaryKeyConstraint:
    return PrimaryKeyConstraint("id", name=f"{table}_pkey")


metadata = MetaData()

disaster_recovery_configurations = Table(
    "disaster_recovery_configurations",
    metadata,
    _id(),
    Column("config_name", String(200), nullable=False),
    Column("recovery_type", recovery_type_enum, nullable=False),
    Column("priority_level", priority_level_enum, nullable=False, server_default=text("'medium'")),
    Column("scope_definition", JSON_DOC, nullable=False),
    Column("recovery_targets", JSON_DOC, nullable=False),
    Column("automation_enabled", Boolean, server_default=TRUE),
    Column("notification_config", JSON_DOC, nullable=False, server_default=EMPTY_JSON),
    Column("failover_criteria", JSON_DOC, nullable=False),
    Column("rollback_criteria", JSON_DOC, nullable=False, server_default=EMPTY_JSON),
    Column("is_active", Boolean, server_default=TRUE),
    Column("last_tested", TIMESTAMPTZ),
    Column("next_test_date", Date),
    Column("created_by", Text),
    Column("created_at", TIMESTAMPTZ, server_default=NOW),
    Column("updated_at", TIMESTAMPTZ, server_default=NOW),
    _pk("disaster_recovery_configurations"),
    UniqueConstraint("config_name", name="disaster_recovery_configurations_config_name_key"),
)

disaster_recovery_plans = Table(
    "disaster_recovery_plans",
    metadata,
    _id(),
    Column("plan_name", String(200), nullable=False),
    Column("disaster_scenario", disaster_scenario_enum, nullable=False),
    Column("plan_version", String(20), nullable=False, server_default=text("'1.0'")),
    Column("plan_document", JSON_DOC, nullable=False),
    Column("recovery_procedures", JSON_DOC, nullable=False),
    Column("resource_requirements", JSON_DOC, nullable=False),
    Column("dependencies", JSON_DOC, server_default=EMPTY_JSON),
    Column("estimated_rto", INTERVAL, nullable=False),
    Column("estimated_rpo", INTERVAL, nullable=False),
    Column("approval_status", approval_status_enum, server_default=text("'draft'")),
    Column("approved_by", Text),
    Column("approved_at", TIMESTAMPTZ),
    Column("effective_date", Date),
    Column("review_frequency", INTERVAL, server_default=text("'6 months'")),
    Column("next_review_date", Date),
    Column("created_by", Text),
    Column("created_at", TIMESTAMPTZ, server_default=NOW),
    Column("updated_at", TIMESTAMPTZ, server_default=NOW),
    _pk("disaster_recovery_plans"),
)

recovery_executions = Table(
    "recovery_executions",
    metadata,
    _id(),
    Column("execution_name", String(200), nullable=False),
    Column("plan_id", UUID(as_uuid=True)),
    Column("trigger_type", trigger_type_enum, nullable=False),
    Column("trigger_event", JSON_DOC, nullable=False),
    Column("execution_mode", execution_mode_enum, server_default=text("'manual'")),
    Column("status", execution_status, server_default=text("'initiated'")),
    Column("initiated_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("started_at", TIMESTAMPTZ),
    Column("completed_at", TIMESTAMPTZ),
    Column("failed_at", TIMESTAMPTZ),
    Column("total_duration", INTERVAL),
    Column("actual_rto", INTERVAL),
    Column("actual_rpo", INTERVAL),
    Column("data_loss_amount", BigInteger, server_default=ZERO),
    Column("affected_services", TEXT_ARRAY, server_default=EMPTY_ARRAY),
    Column("recovery_steps_completed", Integer, server_default=ZERO),
    Column("recovery_steps_total", Integer, server_default=ZERO),
    Column("success_criteria_met", Boolean),
    Column("execution_log", JSON_DOC, server_default=EMPTY_JSON),
    Column("error_details", JSON_DOC),
    Column("rollback_initiated", Boolean, server_default=FALSE),
    Column("rollback_completed", Boolean, server_default=FALSE),
    Column("initiated_by", Text),
    Column("created_at", TIMESTAMPTZ, server_default=NOW),
    _pk("recovery_executions"),
    ForeignKeyConstraint(["plan_id"], ["disaster_recovery_plans.id"], name="recovery_executions_plan_id_fkey"),
)

recovery_step_executions = Table(
    "recovery_step_executions",
    metadata,
    _id(),
    Column("execution_id", UUID(as_uuid=True)),
    Column("step_name", String(200), nullable=False),
    Column("step_order", Integer, nullable=False),
    Column("step_type", step_type_enum, nullable=False),
    Column("step_config", JSON_DOC, nullable=False),
    Column("status", step_status, server_default=text("'pending'")),
    Column("started_at", TIMESTAMPTZ),
    Column("completed_at", TIMESTAMPTZ),
    Column("duration", INTERVAL),
    Column("retry_count", Integer, server_default=ZERO),
    Column("max_retries", Integer, server_default=text("3")),
    Column("success_criteria", JSON_DOC),
    Column("validation_results", JSON_DOC),
    Column("output_data", JSON_DOC),
    Column("error_message", Text),
    Column("dependencies", TEXT_ARRAY, server_default=EMPTY_ARRAY),
    Column("parallel_group", String(50)),
    Column("created_at", TIMESTAMPTZ, server_default=NOW),
    _pk("recovery_step_executions"),
    ForeignKeyConstraint(
        ["execution_id"],
        ["recovery_executions.id"],
        name="recovery_step_executions_execution_id_fkey",
        ondelete="CASCADE",
    ),
)

backup_inventories = Table(
    "backup_inventories",
    metadata,
    _id(),
    Column("backup_name", String(200), nullable=False),
    Column("backup_type", backup_type_enum, nullable=False),
    Column("data_source", String(200), nullable=False),
    Column("backup_location", String(500), nullable=False),
    Column("backup_format", backup_format_enum, nullable=False),
    Column("compression_type", String(50)),
    Column("encryption_enabled", Boolean, server_default=TRUE),
    Column("backup_size_bytes", BigInteger),
    Column("compressed_size_bytes", BigInteger),
    Column("backup_checksum", String(128)),
    Column("backup_metadata", JSON_DOC, server_default=EMPTY_JSON),
    Column("retention_policy", JSON_DOC, nullable=False),
    Column("created_at", TIMESTAMPTZ, nullable=False),
    Column("expires_at", TIMESTAMPTZ),
    Column("verified_at", TIMESTAMPTZ),
    Column("verification_status", verification_status_enum, server_default=text("'pending'")),
    Column("restore_tested", Boolean, server_default=FALSE),
    Column("restore_test_date", TIMESTAMPTZ),
    Column("storage_class", storage_class_enum, server_default=text("'standard'")),
    Column("access_frequency", access_frequency_enum, server_default=text("'frequent'")),
    _pk("backup_inventories"),
)

system_health_monitoring = Table(
    "system_health_monitoring",
    metadata,
    _id(),
    Column("monitoring_timestamp", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("service_name", String(100), nullable=False),
    Column("health_status", health_status_enum, nullable=False),
    Column("response_time_ms", Integer),
    Column("cpu_usage", Numeric(5, 2)),
    Column("memory_usage", Numeric(5, 2)),
    Column("disk_usage", Numeric(5, 2)),
    Column("network_latency_ms", Integer),
    Column("error_rate", Numeric(5, 2)),
    Column("throughput_rps", Numeric(10, 3)),
    Column("active_connections", Integer),
    Column("custom_metrics", JSON_DOC, server_default=EMPTY_JSON),
    Column("alerts_triggered", TEXT_ARRAY, server_default=EMPTY_ARRAY),
    Column("anomalies_detected", JSON_DOC, server_default=EMPTY_JSON),
    Column("geographical_region", String(50)),
    Column("availability_zone", String(50)),
    _pk("system_health_monitoring"),
)

failover_events = Table(
    "failover_events",
    metadata,
    _id(),
    Column("event_name", String(200), nullable=False),
    Column("trigger_type", failover_trigger_type, nullable=False),
    Column("source_system", String(100), nullable=False),
    Column("target_system", String(100), nullable=False),
    Column("failover_reason", Text, nullable=False),
    Column("automated", Boolean, server_default=FALSE),
    Column("initiated_at", TIMESTAMPTZ, nullable=False, server_default=NOW),
    Column("completed_at", TIMESTAMPTZ),
    Column("duration", INTERVAL),
    Column("status", failover_status, server_default=text("'initiated'")),
    Column("data_consistency_check", Boolean, server_default=FALSE),
    Column("traffic_redirected", Boolean, server_default=FALSE),
    Column("dns_updated", Boolean, server_default=FALSE),
    Column("ssl_certificates_migrated", Boolean, server_default=FALSE),
    Column("rollback_plan", JSON_DOC),
    Column("success_validation", JSON_DOC),
    Column("impact_assessment", JSON_DOC),
    Column("notification_sent", Boolean, server_default=FALSE),
    Column("created_by", Text),
    _pk("failover_events"),
)

recovery_testing_results = Table(
    "recovery_testing_results",
    metadata,
    _id(),
    Column("test_name", String(200), nullable=False),
    Column("test_type", test_type_enum, nullable=False),
    Column("plan_id", UUID(as_uuid=True)),
    Column("test_date", Date, nullable=False),
    Column("test_duration", INTERVAL),
    Column("test_scope", JSON_DOC, nullable=False),
    Column("objectives_met", Boolean, server_default=FALSE),
    Column("actual_rto", INTERVAL),
    Column("target_rto", INTERVAL),
    Column("actual_rpo", INTERVAL),
    Column("target_rpo", INTERVAL),
    Column("data_integrity_validated", Boolean, server_default=FALSE),
    Column("service_availability", Numeric(5, 2)),
    Column("issues_identified", TEXT_ARRAY),
    Column("recommendations", TEXT_ARRAY),
    Column("test_results", JSON_DOC, nullable=False),
    Column("participants", TEXT_ARRAY),
    Column("test_lead", Text),
    Column("next_test_date", Date),
    Column("created_at", TIMESTAMPTZ, server_default=NOW),
    _pk("recovery_testing_results"),
    ForeignKeyConstraint(["plan_id"], ["disaster_recovery_plans.id"], name="recovery_testing_results_plan_id_fkey"),
)

recovery_metrics = Table(
    "recovery_metrics",
    metadata,
    _id(),
    Column("metric_date", Date, nullable=False),
    Column("total_recovery_events", Integer, server_default=ZERO),
    Column("successful_recoveries", Integer, server_default=ZERO),
    Column("failed_recoveries", Integer, server_default=ZERO),
    Column("average_rto", INTERVAL),
    Column("average_rpo", INTERVAL),
    Column("total_downtime", INTERVAL, server_default=text("'0'")),
    Column("data_loss_incidents", Integer, server_default=ZERO),
    Column("automated_recoveries", Integer, server_default=ZERO),
    Column("manual_recoveries", Integer, server_default=ZERO),
    Column("backup_success_rate", Numeric(5, 2), server_default=ZERO),
    Column("restore_success_rate", Numeric(5, 2), server_default=ZERO),
    Column("system_availability", Numeric(5, 2), server_default=ZERO),
    Column("cost_impact", Numeric(12, 2), server_default=ZERO),
    Column("affected_users", Integer, server_default=ZERO),
    Column("created_at", TIMESTAMPTZ, server_default=NOW),
    _pk("recovery_metrics"),
    UniqueConstraint("metric_date", name="recovery_metrics_metric_date_key"),
)

# -- the twenty-six indexes of sql/003_indexes.sql ----------------------------------------------------
_ex, _st = recovery_executions.c, recovery_step_executions.c
_bi, _hm = backup_inventories.c, system_health_monitoring.c
_fe, _tr = failover_events.c, recovery_testing_results.c
_rm, _dc, _pl = recovery_metrics.c, disaster_recovery_configurations.c, disaster_recovery_plans.c

INDEXES: tuple[Index, ...] = (
    Index("idx_recovery_executions_status", _ex.status),
    Index("idx_recovery_executions_initiated_at", _ex.initiated_at.desc()),
    Index("idx_recovery_executions_plan_id", _ex.plan_id),
    Index("idx_recovery_step_executions_execution_id", _st.execution_id),
    Index("idx_recovery_step_executions_status", _st.status),
    Index("idx_recovery_step_executions_order", _st.execution_id, _st.step_order),
    Index("idx_backup_inventories_type", _bi.backup_type),
    Index("idx_backup_inventories_created_at", _bi.created_at.desc()),
    Index("idx_backup_inventories_expires_at", _bi.expires_at),
    Index("idx_backup_inventories_verification_status", _bi.verification_status),
    Index("idx_system_health_monitoring_timestamp", _hm.monitoring_timestamp.desc()),
    Index("idx_system_health_monitoring_service", _hm.service_name),
    Index("idx_system_health_monitoring_status", _hm.health_status),
    Index("idx_system_health_monitoring_region", _hm.geographical_region),
    Index("idx_failover_events_initiated_at", _fe.initiated_at.desc()),
    Index("idx_failover_events_status", _fe.status),
    Index("idx_failover_events_source_system", _fe.source_system),
    Index("idx_recovery_testing_results_test_date", _tr.test_date.desc()),
    Index("idx_recovery_testing_results_plan_id", _tr.plan_id),
    Index("idx_recovery_testing_results_test_type", _tr.test_type),
    Index("idx_recovery_metrics_date", _rm.metric_date.desc()),
    Index(
        "idx_disaster_recovery_configurations_active",
        _dc.is_active,
        postgresql_where=text("is_active = true"),
    ),
    Index("idx_disaster_recovery_configurations_priority", _dc.priority_level),
    Index("idx_disaster_recovery_plans_scenario", _pl.disaster_scenario),
    Index("idx_disaster_recovery_plans_status", _pl.approval_status),
    Index("idx_disaster_recovery_plans_review_date", _pl.next_review_date),
)

TABLES: dict[str, Table] = dict(metadata.tables)
