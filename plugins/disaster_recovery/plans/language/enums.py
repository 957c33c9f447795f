"""The closed vocabularies of the plan language (they mirror the catalog's enum types)."""

from __future__ import annotations

from enum import StrEnum


class DisasterScenario(StrEnum):
    HARDWARE_FAILURE = "hardware_failure"
    SOFTWARE_CORRUPTION = "software_corruption"
    CYBER_ATTACK = "cyber_attack"
    NATURAL_DISASTER = "natural_disaster"
    POWER_OUTAGE = "power_outage"
    NETWORK_FAILURE = "network_failure"
    HUMAN_ERROR = "human_error"
    DATA_CENTER_OUTAGE = "data_center_outage"


class ExecutionMode(StrEnum):
    MANUAL = "manual"
    SEMI_AUTOMATED = "semi_automated"
    FULLY_AUTOMATED = "fully_automated"
    TEST = "test"


class ApprovalStatus(StrEnum):
    DRAFT = "draft"
    UNDER_REVIEW = "under_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class StepType(StrEnum):
    BACKUP_RESTORE = "backup_restore"
    SERVICE_START = "service_start"
    DNS_UPDATE = "dns_update"
    LOAD_BALANCER_CONFIG = "load_balancer_config"
    DATABASE_FAILOVER = "database_failover"
    VALIDATION = "validation"
    NOTIFICATION = "notification"
    CLEANUP = "cleanup"


class HealthStatus(StrEnum):
    """Health states a failover threshold can name (the catalog's health_status_enum)."""

    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class NotificationEvent(StrEnum):
    """Moments of a recovery execution at which plan-level notifications are sent."""

    STARTED = "started"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
