"""README claims about the backup DAGs, through the DAGs themselves (dag.test) on real clusters and the catalog:

- ``dr_verify_backups`` runs daily (05:00 UTC) as well as on every new backup, and a scheduled run re-verifies
  each source's newest verified backup (and only that one);
- ``dr_restore`` restores a source's newest verified backup into a new cluster folder and port; refuses an
  unverified backup unless forced and a non-empty target unless told to replace it; a dry run changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from airflow.serialization.decoders import decode_timetable
from airflow.serialization.encoders import encode_timetable
from airflow.timetables.base import TimeRestriction

from disaster_recovery.backups.dags import build_backup_dags
from disaster_recovery.backups.inventory import get_backup, list_backups
from disaster_recovery.postgres.cluster import LocalCluster, free_port
from tests.integration.backup_support import SEED_COUNTS, backup_env, source_doc
from tests.support import SESSION_DIR, drop_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab(airflow_db, catalog_cluster_db):
    def docs(root, conn_id):
        return {
            "physical": source_doc(name="dag_physical", conn_id=conn_id, method="physical", root=root),
            "logical": source_doc(name="dag_logical", conn_id=conn_id, method="logical", root=root),
        }

    with backup_env("bk_dags", catalog_cluster_db, docs) as env:
        env.dags = build_backup_dags()
        yield env


def run(lab, dag_id: str, **conf):
    # A DAG object per run, as each Airflow run gets: dag.test() on one object carries one run's conf into
    # the params of the next.
    return build_backup_dags()[dag_id].test(run_conf=conf or None)


def backups(lab, source: str):
    return {str(r.id): r for r in list_backups(lab.catalog, data_source=source)}


def test_verification_is_scheduled_daily_and_on_every_new_backup(lab):
    timetable = decode_timetable(encode_timetable(lab.dags["dr_verify_backups"].timetable))  # the scheduler's view
    since = TimeRestriction(earliest=datetime(2026, 3, 1, 6, tzinfo=UTC), latest=None, catchup=True)
    first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=since)
    second = timetable.next_dagrun_info(last_automated_data_interval=first.data_interval, restriction=since)
    assert (first.run_after, second.run_after) == (datetime(2026, 3, 2, 5, tzinfo=UTC), datetime(2026, 3, 3, 5, tzinfo=UTC))
    assert {a.uri for a in timetable.asset_condition.objects} == {"dr-backup://dag_physical/", "dr-backup://dag_logical/"}


def test_a_scheduled_verification_run_re_verifies_each_sources_newest_backup(lab):
    for dag_id in ("dr_backup__dag_physical", "dr_backup__dag_logical", "dr_backup__dag_logical"):
        assert run(lab, dag_id).state == "success", dag_id
    assert run(lab, "dr_verify_backups").state == "success"  # the new (pending) ones
    before = {s: backups(lab, s) for s in ("dag_physical", "dag_logical")}
    assert {r.verification_status for rows in before.values() for r in rows.values()} == {"verified"}

    assert run(lab, "dr_verify_backups").state == "success"  # no backup pending: a daily run
    for source, rows in before.items():
        newest, *older = sorted(rows.values(), key=lambda r: r.created_at, reverse=True)
        again = get_backup(lab.catalog, newest.id)
        assert again.verification_status == "verified" and again.verified_at > newest.verified_at, source
        assert again.metadata["restore_test"]["row_counts_match"] is True
        for record in older:  # only the newest is re-verified
            assert get_backup(lab.catalog, record.id).verified_at == record.verified_at, source


def refused(lab, capfd, **conf) -> str:
    """Run dr_restore expecting a refusal; the reason its task failed with (from the task's log output)."""
    capfd.readouterr()
    assert run(lab, "dr_restore", **conf).state == "failed"
    out, err = capfd.readouterr()
    reasons = [line.split("StepFailed: ", 1)[1] for line in (out + err).splitlines() if "StepFailed: " in line]
    assert reasons, (out + err)[-3000:]
    return reasons[-1]


def test_dr_restore_as_a_dag(lab, capfd):
    if not any(r.verification_status == "verified" for r in backups(lab, "dag_physical").values()):
        assert run(lab, "dr_backup__dag_physical").state == "success"
        assert run(lab, "dr_verify_backups").state == "success"
    newest = next(r for r in sorted(backups(lab, "dag_physical").values(), key=lambda r: r.created_at, reverse=True)
                  if r.verification_status == "verified")
    root = SESSION_DIR / "dr-restore-dag"
    root.mkdir(exist_ok=True)
    root.chmod(0o755)

    dry = root / "dry"
    assert run(lab, "dr_restore", source="dag_physical", data_directory=str(dry), port=free_port(),
               dry_run=True).state == "success"
    assert not dry.exists()

    target, port = root / "restored", free_port()
    capfd.readouterr()
    assert run(lab, "dr_restore", source="dag_physical", data_directory=str(target), port=port).state == "success"
    assert f"'backup_id': '{newest.id}'" in "".join(capfd.readouterr())  # the source's newest verified backup
    restored = LocalCluster(data_dir=target, port=port, password=lab.src.password)  # its source's roles
    try:
        for table, count in SEED_COUNTS.items():  # counted here, not by the function under test
            schema, name = table.split(".", 1)
            assert restored.query(f'SELECT count(*) FROM "{schema}"."{name}"') == [(count,)], table
        assert not restored.in_recovery()
        assert restored.query("SELECT system_identifier FROM pg_control_system()") == \
            lab.src.query("SELECT system_identifier FROM pg_control_system()")  # a copy of the source
        restored.query("CREATE TABLE written_after_restore (x int)")

        again = {"source": "dag_physical", "data_directory": str(target), "port": free_port()}
        assert "holds a cluster that may be running (postmaster.pid): stop it first" in refused(lab, capfd, **again)
        restored.stop()
        assert f"{target} is not empty: set replace_existing to overwrite it" in refused(lab, capfd, **again)
        assert run(lab, "dr_restore", **again, replace_existing=True, dry_run=True).state == "success"
        restored.start()
        assert restored.query("SELECT count(*) FROM pg_tables WHERE tablename = 'written_after_restore'") == [(1,)]
    finally:
        drop_cluster(restored)

    # An unverified backup is refused unless forced; nothing is created either way here.
    assert run(lab, "dr_backup__dag_physical").state == "success"
    pending = next(r for r in backups(lab, "dag_physical").values() if r.verification_status == "pending")
    never = {"source": "dag_physical", "backup_id": str(pending.id), "data_directory": str(root / "never"),
             "port": free_port()}
    reason = refused(lab, capfd, **never)
    assert "is not verified (status pending): verify it first, or force_unverified" in reason
    assert run(lab, "dr_restore", **never, force_unverified=True, dry_run=True).state == "success"
    assert not (root / "never").exists()
