# The DR system's Airflow image: Airflow 3.3.2 plus PostgreSQL 15's server and client tools
# (pg_basebackup, pg_dump, pg_restore, pg_amcheck, initdb/pg_ctl for restore tests) and zstd.
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       postgresql-15 postgresql-client-15 zstd \
    && apt-get clean && rm -rf /var/lib/apt/lists/*
ENV DR_PG_BINDIR=/usr/lib/postgresql/15/bin

USER airflow
# The image already carries Airflow and its providers; add what the DR library needs on top.
RUN pip install --no-cache-dir "zstandard==0.25.0" "cryptography>=44"
