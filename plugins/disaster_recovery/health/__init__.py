"""Service health: probes, thresholds, failover criteria."""
