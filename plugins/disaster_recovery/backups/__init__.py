"""Backups: engines (pg_basebackup, pg_dump, WAL archiving, pgBackRest), the streaming pipeline
(producer → zstd → AES-256-GCM chunks → SHA-256 → storage), object storage (local folder, S3), keys,
verification by restoring, retention.

- ``crypto``: the sealed format (authenticated, streaming, chunked AES-256-GCM) and its writer/readers.
- ``keys``: encryption keys from Airflow connections; only the key id is ever stored.
- ``storage``: local and S3 object storage with atomic commit, locations, progress logging.
"""
