"""README: verification brings the backup up as a scratch cluster, runs pg_amcheck, compares row counts, "and
remove[s] the scratch cluster whatever happens" — also when the restore test fails, and when the task is
interrupted (Airflow's execution timeout raises a BaseException) while the scratch cluster runs.

Each case checks that the scratch cluster really ran, then that no process of it is left and its folder
is gone; the inventory row says failed, or (interrupted) is left as it was.
"""

from __future__ import annotations

import logging
import os

import pytest
from airflow.sdk.exceptions import AirflowTaskTimeout

from disaster_recovery.backups.inventory import get_backup, update_backup
from disaster_recovery.backups.runner import take_backup
from disaster_recovery.backups.verification import verify_backup
from tests.integration.backup_support import SEED_COUNTS, backup_env, source_doc, storage_root
from tests.integration.claims_support import processes_using
from tests.support import SCRATCH_DIR

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def env(catalog_cluster_db):
    def docs(root, conn_id):
        return {method: source_doc(name=f"claims_verify_{method}", conn_id=conn_id, method=method, root=root)
                for method in ("physical", "logical")}

    with backup_env("claims_verify", catalog_cluster_db, docs) as env:
        yield env


def backup_with_wrong_counts(env, method: str, *, exact: bool):
    """A real backup whose recorded row counts say one row more than the source had: its restore test fails."""
    record = take_backup(source=env.sources[method], catalog=env.catalog).record
    counts = dict(record.metadata["row_counts"])
    assert counts["public.accounts"] == SEED_COUNTS["public.accounts"]
    counts["public.accounts"] += 1
    return update_backup(env.catalog, record.id, metadata={"row_counts": counts, "row_counts_exact": exact})


def scratch_folders(root) -> list[str]:
    return sorted(name for name in os.listdir(root) if name.startswith("dr-verify-"))


class InterruptOnCountWarning(logging.LoggerAdapter):
    """The task's logger, until verification warns about the row counts: there the task's execution timeout
    fires (AirflowTaskTimeout is a BaseException, like the SIGTERM Airflow sends to a task it stops)."""

    def warning(self, msg, *args, **kwargs):
        if "row counts differ" in msg:
            raise AirflowTaskTimeout("execution_timeout reached while verifying")
        super().warning(msg, *args, **kwargs)


@pytest.mark.parametrize("method", ["physical", "logical"])
def test_a_failed_restore_test_removes_the_scratch_cluster(env, method):
    scratch = storage_root(f"claims-scratch-{method}")  # a folder the server user can reach
    record = backup_with_wrong_counts(env, method, exact=True)
    result = verify_backup(catalog=env.catalog, backup_id=record.id, key=env.key, scratch_root=scratch)
    assert result.status == "failed"
    assert "row counts differ from those recorded at backup time" in result.error
    assert "public.accounts" in result.error
    assert result.restore_test["amcheck"]["ok"]  # the scratch cluster ran: amcheck passed on it
    assert scratch_folders(scratch) == [] and processes_using(scratch) == {}
    assert get_backup(env.catalog, record.id).verification_status == "failed"


def test_an_interrupted_verification_removes_the_scratch_cluster(env):
    """In the session's scratch folder (on /dev/shm, as in production) with the product's default placement."""
    record = backup_with_wrong_counts(env, "physical", exact=False)
    assert os.environ["DR_SCRATCH_DIR"] == str(SCRATCH_DIR)
    before = scratch_folders(SCRATCH_DIR)
    logger = InterruptOnCountWarning(logging.getLogger("claims.verification"), {})
    with pytest.raises(AirflowTaskTimeout, match="execution_timeout reached while verifying"):
        verify_backup(catalog=env.catalog, backup_id=record.id, key=env.key, logger=logger)
    assert scratch_folders(SCRATCH_DIR) == before
    assert processes_using(SCRATCH_DIR) == {}
    after = get_backup(env.catalog, record.id)
    assert (after.verification_status, after.verified_at) == ("pending", None)
