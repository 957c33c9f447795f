"""Entry point of ``python -m disaster_recovery`` (run with ``plugins/`` on PYTHONPATH)."""

# Airflow's plugin manager may import this file by its bare name "__main__"; only run under ``-m``.
if __name__ == "__main__" and __package__ == "disaster_recovery":
    from disaster_recovery.cli import main

    raise SystemExit(main())
