"""The long-running health monitor: its loop, the Airflow trigger it lives in, incident guards, plan watches."""
