-- WS-263 disaster recovery catalog: the twenty-six indexes.
-- Faithful to the spec's "Database Schema"; auth.users(id) references hold the Airflow user name (TEXT).

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
