"""The DR API and dashboard, mounted by dr_plugin.py inside Airflow's api-server."""
