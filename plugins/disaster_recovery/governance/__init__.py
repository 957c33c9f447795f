"""Execution governance: admission, outcome, RTO/RPO accounting (pure)."""
