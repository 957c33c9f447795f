"""The local DR lab (`make run`): clusters, notification sinks and Airflow on loopback."""
