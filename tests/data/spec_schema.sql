-- Verbatim copy of the three SQL blocks of the WS-263 spec's "Database Schema" section (the spec is
-- ../shared/spec/WS-263-disaster-recovery-spec.md from the repo root). Used by the catalog schema tests;
-- tests/integration/test_catalog_schema.py checks it still equals the spec when the spec is reachable.

-- spec block: Core Tables
-- Disaster Recovery Configurations
CREATE TABLE disaster_recovery_configurations (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    config_name VARCHAR(200) NOT NULL UNIQUE,
    recovery_type recovery_type_enum NOT NULL,
    priority_level priority_level_enum NOT NULL DEFAULT 'medium',
    scope_definition JSONB NOT NULL,
    recovery_targets JSONB NOT NULL,
    automation_enabled BOOLEAN DEFAULT true,
    notification_config JSONB NOT NULL DEFAULT '{}',
    failover_criteria JSONB NOT NULL,
    rollback_criteria JSONB NOT NULL DEFAULT '{}',
    is_active BOOLEAN DEFAULT true,
    last_tested TIMESTAMPTZ,
    next_test_date DATE,
    created_by UUID REFERENCES auth.users(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

-- Disaster Recovery Plans
CREATE TABLE disaster_recovery_plans (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    plan_name VARCHAR(200) NOT NULL,
    disaster_scenario disaster_scenario_enum NOT NULL,
    plan_version VARCHAR(20) NOT NULL DEFAULT '1.0',
    plan_document JSONB NOT NULL,
    recovery_procedures JSONB NOT NULL,
    resource_requirements JSONB NOT NULL,
    dependencies JSONB DEFAULT '{}',
    estimated_rto INTERVAL NOT NULL, -- Recovery Time Objective
    estimated_rpo INTERVAL NOT NULL, -- Recovery Point Objective
    approval_status approval_status_enum DEFAULT 'draft',
    approved_by UUID REFERENCES auth.users(id),
    approved_at TIMESTAMPTZ,
    effective_date DATE,
    review_frequency INTERVAL DEFAULT '6 months',
    next_review_date DATE,
    created_by UUID REFERENCES auth.users(id),
    created_at TIMESTAMPTZ DEFAULT NOW(),
    updated_at TIMESTAMPTZ DEFAULT NOW()
);

-- Recovery Executions
CREATE TABLE recovery_executions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    execution_name VARCHAR(200) NOT NULL,
    plan_id UUID REFERENCES disaster_recovery_plans(id),
    trigger_type trigger_type_enum NOT NULL,
    trigger_event JSONB NOT NULL,
    execution_mode execution_mode_enum DEFAULT 'manual',
    status execution_status DEFAULT 'initiated',
    initiated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    failed_at TIMESTAMPTZ,
    total_duration INTERVAL,
    actual_rto INTERVAL,
    actual_rpo INTERVAL,
    data_loss_amount BIGINT DEFAULT 0,
    affected_services TEXT[] DEFAULT '{}',
    recovery_steps_completed INTEGER DEFAULT 0,
    recovery_steps_total INTEGER DEFAULT 0,
    success_criteria_met BOOLEAN,
    execution_log JSONB DEFAULT '{}',
    error_details JSONB,
    rollback_initiated BOOLEAN DEFAULT false,
    rollback_completed BOOLEAN DEFAULT false,
    initiated_by UUID REFERENCES auth.users(id),
    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- Recovery Step Executions
CREATE TABLE recovery_step_executions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    execution_id UUID REFERENCES recovery_executions(id) ON DELETE CASCADE,
    step_name VARCHAR(200) NOT NULL,
    step_order INTEGER NOT NULL,
    step_type step_type_enum NOT NULL,
    step_config JSONB NOT NULL,
    status step_status DEFAULT 'pending',
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    duration INTERVAL,
    retry_count INTEGER DEFAULT 0,
    max_retries INTEGER DEFAULT 3,
    success_criteria JSONB,
    validation_results JSONB,
    output_data JSONB,
    error_message TEXT,
    dependencies TEXT[] DEFAULT '{}',
    parallel_group VARCHAR(50),
    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- Backup Inventories
CREATE TABLE backup_inventories (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    backup_name VARCHAR(200) NOT NULL,
    backup_type backup_type_enum NOT NULL,
    data_source VARCHAR(200) NOT NULL,
    backup_location VARCHAR(500) NOT NULL,
    backup_format backup_format_enum NOT NULL,
    compression_type VARCHAR(50),
    encryption_enabled BOOLEAN DEFAULT true,
    backup_size_bytes BIGINT,
    compressed_size_bytes BIGINT,
    backup_checksum VARCHAR(128),
    backup_metadata JSONB DEFAULT '{}',
    retention_policy JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    verified_at TIMESTAMPTZ,
    verification_status verification_status_enum DEFAULT 'pending',
    restore_tested BOOLEAN DEFAULT false,
    restore_test_date TIMESTAMPTZ,
    storage_class storage_class_enum DEFAULT 'standard',
    access_frequency access_frequency_enum DEFAULT 'frequent'
);

-- System Health Monitoring
CREATE TABLE system_health_monitoring (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    monitoring_timestamp TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    service_name VARCHAR(100) NOT NULL,
    health_status health_status_enum NOT NULL,
    response_time_ms INTEGER,
    cpu_usage DECIMAL(5,2),
    memory_usage DECIMAL(5,2),
    disk_usage DECIMAL(5,2),
    network_latency_ms INTEGER,
    error_rate DECIMAL(5,2),
    throughput_rps DECIMAL(10,3),
    active_connections INTEGER,
    custom_metrics JSONB DEFAULT '{}',
    alerts_triggered TEXT[] DEFAULT '{}',
    anomalies_detected JSONB DEFAULT '{}',
    geographical_region VARCHAR(50),
    availability_zone VARCHAR(50)
);

-- Failover Events
CREATE TABLE failover_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_name VARCHAR(200) NOT NULL,
    trigger_type failover_trigger_type NOT NULL,
    source_system VARCHAR(100) NOT NULL,
    target_system VARCHAR(100) NOT NULL,
    failover_reason TEXT NOT NULL,
    automated BOOLEAN DEFAULT false,
    initiated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    completed_at TIMESTAMPTZ,
    duration INTERVAL,
    status failover_status DEFAULT 'initiated',
    data_consistency_check BOOLEAN DEFAULT false,
    traffic_redirected BOOLEAN DEFAULT false,
    dns_updated BOOLEAN DEFAULT false,
    ssl_certificates_migrated BOOLEAN DEFAULT false,
    rollback_plan JSONB,
    success_validation JSONB,
    impact_assessment JSONB,
    notification_sent BOOLEAN DEFAULT false,
    created_by UUID REFERENCES auth.users(id)
);

-- Recovery Testing Results
CREATE TABLE recovery_testing_results (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    test_name VARCHAR(200) NOT NULL,
    test_type test_type_enum NOT NULL,
    plan_id UUID REFERENCES disaster_recovery_plans(id),
    test_date DATE NOT NULL,
    test_duration INTERVAL,
    test_scope JSONB NOT NULL,
    objectives_met BOOLEAN DEFAULT false,
    actual_rto INTERVAL,
    target_rto INTERVAL,
    actual_rpo INTERVAL,
    target_rpo INTERVAL,
    data_integrity_validated BOOLEAN DEFAULT false,
    service_availability DECIMAL(5,2),
    issues_identified TEXT[],
    recommendations TEXT[],
    test_results JSONB NOT NULL,
    participants TEXT[],
    test_lead UUID REFERENCES auth.users(id),
    next_test_date DATE,
    created_at TIMESTAMPTZ DEFAULT NOW()
);

-- Recovery Metrics
CREATE TABLE recovery_metrics (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    metric_date DATE NOT NULL,
    total_recovery_events INTEGER DEFAULT 0,
    successful_recoveries INTEGER DEFAULT 0,
    failed_recoveries INTEGER DEFAULT 0,
    average_rto INTERVAL,
    average_rpo INTERVAL,
    total_downtime INTERVAL DEFAULT '0',
    data_loss_incidents INTEGER DEFAULT 0,
    automated_recoveries INTEGER DEFAULT 0,
    manual_recoveries INTEGER DEFAULT 0,
    backup_success_rate DECIMAL(5,2) DEFAULT 0,
    restore_success_rate DECIMAL(5,2) DEFAULT 0,
    system_availability DECIMAL(5,2) DEFAULT 0,
    cost_impact DECIMAL(12,2) DEFAULT 0,
    affected_users INTEGER DEFAULT 0,
    created_at TIMESTAMPTZ DEFAULT NOW(),
    UNIQUE(metric_date)
);

-- spec block: Enums and Custom Types
-- Custom types for disaster recovery system
CREATE TYPE recovery_type_enum AS ENUM ('hot_standby', 'warm_standby', 'cold_standby', 'active_active', 'backup_restore', 'cloud_migration');
CREATE TYPE priority_level_enum AS ENUM ('critical', 'high', 'medium', 'low');
CREATE TYPE disaster_scenario_enum AS ENUM ('hardware_failure', 'software_corruption', 'cyber_attack', 'natural_disaster', 'power_outage', 'network_failure', 'human_error', 'data_center_outage');
CREATE TYPE approval_status_enum AS ENUM ('draft', 'under_review', 'approved', 'rejected', 'expired');
CREATE TYPE trigger_type_enum AS ENUM ('manual', 'automated', 'scheduled', 'alert_based');
CREATE TYPE execution_mode_enum AS ENUM ('manual', 'semi_automated', 'fully_automated', 'test');
CREATE TYPE execution_status AS ENUM ('initiated', 'in_progress', 'completed', 'failed', 'cancelled', 'rolled_back');
CREATE TYPE step_type_enum AS ENUM ('backup_restore', 'service_start', 'dns_update', 'load_balancer_config', 'database_failover', 'validation', 'notification', 'cleanup');
CREATE TYPE step_status AS ENUM ('pending', 'running', 'completed', 'failed', 'skipped', 'retrying');
CREATE TYPE backup_type_enum AS ENUM ('full', 'incremental', 'differential', 'transaction_log', 'snapshot', 'continuous');
CREATE TYPE backup_format_enum AS ENUM ('sql_dump', 'binary', 'compressed_archive', 'vm_image', 'container_image', 'file_archive');
CREATE TYPE verification_status_enum AS ENUM ('pending', 'verified', 'failed', 'corrupted', 'expired');
CREATE TYPE storage_class_enum AS ENUM ('standard', 'infrequent_access', 'archive', 'deep_archive');
CREATE TYPE access_frequency_enum AS ENUM ('frequent', 'infrequent', 'rare', 'archive');
CREATE TYPE health_status_enum AS ENUM ('healthy', 'degraded', 'unhealthy', 'unknown');
CREATE TYPE failover_trigger_type AS ENUM ('health_check_failure', 'performance_threshold', 'manual_trigger', 'scheduled_maintenance', 'capacity_limit');
CREATE TYPE failover_status AS ENUM ('initiated', 'in_progress', 'completed', 'failed', 'rolled_back');
CREATE TYPE test_type_enum AS ENUM ('tabletop_exercise', 'walkthrough', 'simulation', 'parallel_test', 'full_interruption');

-- spec block: Indexes for Performance
-- Recovery execution indexes
CREATE INDEX idx_recovery_executions_status ON recovery_executions(status);
CREATE INDEX idx_recovery_executions_initiated_at ON recovery_executions(initiated_at DESC);
CREATE INDEX idx_recovery_executions_plan_id ON recovery_executions(plan_id);

-- Recovery step execution indexes
CREATE INDEX idx_recovery_step_executions_execution_id ON recovery_step_executions(execution_id);
CREATE INDEX idx_recovery_step_executions_status ON recovery_step_executions(status);
CREATE INDEX idx_recovery_step_executions_order ON recovery_step_executions(execution_id, step_order);

-- Backup inventory indexes
CREATE INDEX idx_backup_inventories_type ON backup_inventories(backup_type);
CREATE INDEX idx_backup_inventories_created_at ON backup_inventories(created_at DESC);
CREATE INDEX idx_backup_inventories_expires_at ON backup_inventories(expires_at);
CREATE INDEX idx_backup_inventories_verification_status ON backup_inventories(verification_status);

-- System health monitoring indexes
CREATE INDEX idx_system_health_monitoring_timestamp ON system_health_monitoring(monitoring_timestamp DESC);
CREATE INDEX idx_system_health_monitoring_service ON system_health_monitoring(service_name);
CREATE INDEX idx_system_health_monitoring_status ON system_health_monitoring(health_status);
CREATE INDEX idx_system_health_monitoring_region ON system_health_monitoring(geographical_region);

-- Failover events indexes
CREATE INDEX idx_failover_events_initiated_at ON failover_events(initiated_at DESC);
CREATE INDEX idx_failover_events_status ON failover_events(status);
CREATE INDEX idx_failover_events_source_system ON failover_events(source_system);

-- Recovery testing results indexes
CREATE INDEX idx_recovery_testing_results_test_date ON recovery_testing_results(test_date DESC);
CREATE INDEX idx_recovery_testing_results_plan_id ON recovery_testing_results(plan_id);
CREATE INDEX idx_recovery_testing_results_test_type ON recovery_testing_results(test_type);

-- Recovery metrics indexes
CREATE INDEX idx_recovery_metrics_date ON recovery_metrics(metric_date DESC);

-- DR configuration indexes
CREATE INDEX idx_disaster_recovery_configurations_active ON disaster_recovery_configurations(is_active) WHERE is_active = true;
CREATE INDEX idx_disaster_recovery_configurations_priority ON disaster_recovery_configurations(priority_level);

-- DR plan indexes
CREATE INDEX idx_disaster_recovery_plans_scenario ON disaster_recovery_plans(disaster_scenario);
CREATE INDEX idx_disaster_recovery_plans_status ON disaster_recovery_plans(approval_status);
CREATE INDEX idx_disaster_recovery_plans_review_date ON disaster_recovery_plans(next_review_date);

