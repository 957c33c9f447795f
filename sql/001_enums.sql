-- WS-263 disaster recovery catalog: the eighteen enum types, values in the spec's order.
-- Faithful to the spec's "Database Schema"; auth.users(id) references hold the Airflow user name (TEXT).

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
