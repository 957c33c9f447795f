"""README: "optionally to a point in time (the lab archives the primary's WAL continuously into the backup
storage)" — the ways a point-in-time recovery can go wrong, on one archiving source.

A source without an archive, or with an empty one, is refused before anything is written. A point past
the archived WAL, or behind a segment missing from the archive, fails with `PointInTimeUnreachable` naming
the last segment archived or the one missing; the target folder goes and the backups and the archive stay
exactly as they were. A moment before the newest backup is restored from the older one, and a segment
missing after the point in time does no harm. The tests run in order on one source.
"""

from __future__ import annotations

import re
import shutil

import pytest

from disaster_recovery.backups.inventory import get_backup
from disaster_recovery.backups.restore import (
    ClusterDestination,
    PointInTimeUnreachable,
    RestoreRefused,
    choose_backup,
    restore_backup,
)
from disaster_recovery.backups.restored import RestoredCluster
from disaster_recovery.backups.runner import take_backup
from disaster_recovery.backups.storage import LocalStorage
from disaster_recovery.backups.wal_archive import first_missing_segment, wal_relpath
from disaster_recovery.postgres.cluster import free_port
from tests.integration.backup_support import backup_env, source_doc
from tests.integration.claims_support import (
    archive_into,
    archived,
    backups_state,
    insert,
    ledger,
    moment,
    processes_using,
    segments,
    storage_state,
    switch_and_wait,
    verified_backup,
)

pytestmark = pytest.mark.integration
SOURCE = "claims_pitr"


@pytest.fixture(scope="module")
def env(catalog_cluster_db):
    def docs(root, conn_id):
        return {
            "main": source_doc(name=SOURCE, conn_id=conn_id, method="physical", root=root, wal=True),
            "plain": source_doc(name="claims_plain", conn_id=conn_id, method="physical", root=root),
            "empty": source_doc(name="claims_empty", conn_id=conn_id, method="physical", root=root, wal=True),
        }

    with backup_env("claims_pitr", catalog_cluster_db, docs) as env:
        env.config = archive_into(env.src, source=SOURCE, storage_config={"kind": "local", "path": str(env.root)},
                                  key=env.key)
        env.storage = LocalStorage(env.root)
        env.backups = {}
        yield env
        shutil.rmtree(env.config.parent, ignore_errors=True)


def untouched(env) -> tuple:
    """What a failed restore must leave as it was: every backup row and object, and the whole archive."""
    return backups_state(env.catalog, SOURCE, env.storage), storage_state(env.storage, f"{SOURCE}/")


def assert_left_nothing(target) -> None:
    assert not target.exists() and not target.with_name(f"{target.name}.restore").exists()
    assert not target.with_name(f"{target.name}.sock").exists()
    assert processes_using(target) == {}


@pytest.mark.parametrize(("label", "reason"), [
    ("plain", "its source has no WAL archive, so no point-in-time recovery"),
    ("empty", "no WAL is archived for source 'claims_empty'"),
])
def test_no_archive_or_an_empty_one_is_refused_before_anything_is_written(env, label, reason):
    source = env.sources[label].name
    record = take_backup(source=env.sources[label], catalog=env.catalog).record
    before = backups_state(env.catalog, source, env.storage), storage_state(env.storage, f"{source}/")
    target = env.root / f"never-{label}"
    with pytest.raises(RestoreRefused, match=reason):
        restore_backup(record=record, key=env.key, point_in_time=moment(env.src), force_unverified=True,
                       destination=ClusterDestination(target, free_port()))
    assert_left_nothing(target)
    assert (backups_state(env.catalog, source, env.storage), storage_state(env.storage, f"{source}/")) == before
    assert get_backup(env.catalog, record.id).verification_status == "pending"


def test_a_moment_before_the_newest_backup_is_restored_from_the_older_one(env):
    env.backups["older"] = older = verified_backup(env)
    insert(env.src, range(1, 101), note="first")
    expected, before_newest = ledger(env.src), moment(env.src)
    insert(env.src, range(101, 201), note="second")
    env.backups["newer"] = newer = verified_backup(env)
    insert(env.src, range(201, 301), note="third")
    after_newest = moment(env.src)
    switch_and_wait(env.src)

    assert choose_backup(env.catalog, source=SOURCE, point_in_time=after_newest).id == newer.id
    chosen = choose_backup(env.catalog, source=SOURCE, point_in_time=before_newest)
    assert chosen.id == older.id
    target = env.root / "older-restored"
    restored = RestoredCluster(data_dir=target, port=free_port(), password="", superuser="postgres")
    try:
        result = restore_backup(record=chosen, key=env.key, point_in_time=before_newest,
                                destination=ClusterDestination(target, restored.port))
        assert result.recovered_to == before_newest and "recovery stopping before commit" in \
            result.details["recovery_stop"]
        assert ledger(restored) == expected == (100, 1, 100)
    finally:
        restored.destroy()
    assert ledger(env.src) == (300, 1, 300)


def test_a_point_past_the_archived_wal_names_the_last_archived_segment(env):
    insert(env.src, range(301, 321), note="not archived yet")
    too_late = moment(env.src)
    last = segments(archived(env.storage, SOURCE))[-1]
    before = untouched(env)
    target = env.root / "too-late"
    with pytest.raises(PointInTimeUnreachable, match=(
        rf"the WAL archive of source '{SOURCE}' ends with segment {last} .*before the point in time "
        + re.escape(too_late.isoformat())
    )):
        restore_backup(record=env.backups["newer"], key=env.key, point_in_time=too_late,
                       destination=ClusterDestination(target, free_port()))
    assert_left_nothing(target)
    assert untouched(env) == before
    # Once the server archived its current WAL file, the same point is reached.
    switch_and_wait(env.src)


def test_a_missing_segment_is_named_and_a_point_before_it_still_restores(env):
    insert(env.src, range(401, 411), note="before the gap")
    expected, before_gap = ledger(env.src), moment(env.src)
    insert(env.src, range(451, 461), note="before the gap, after the point in time")
    switch_and_wait(env.src)
    insert(env.src, range(501, 511), note="in the missing segment")
    missing = switch_and_wait(env.src)
    insert(env.src, range(601, 611), note="after the gap")
    after_gap = moment(env.src)
    switch_and_wait(env.src)
    env.storage.delete(wal_relpath(SOURCE, missing))
    before = untouched(env)

    target = env.root / "behind-the-gap"
    with pytest.raises(PointInTimeUnreachable, match=(
        rf"WAL segment {missing} is missing from the archive of source '{SOURCE}'.*before the point in time "
        + re.escape(after_gap.isoformat())
    )):
        restore_backup(record=env.backups["newer"], key=env.key, point_in_time=after_gap,
                       destination=ClusterDestination(target, free_port()))
    assert_left_nothing(target)
    assert untouched(env) == before

    restored = RestoredCluster(data_dir=env.root / "before-the-gap", port=free_port(), password="",
                               superuser="postgres")
    try:
        restore_backup(record=env.backups["newer"], key=env.key, point_in_time=before_gap,
                       destination=ClusterDestination(restored.data_dir, restored.port))
        assert ledger(restored) == expected and expected[2] == 410
    finally:
        restored.destroy()
    assert untouched(env) == before


def test_the_gap_is_found_across_a_timeline_switch_and_only_past_the_backup():
    tl1 = [f"00000001000000000000000{n}" for n in (4, 5, 6, 7)]
    promoted = ["000000010000000000000008.partial", "00000002.history", "000000020000000000000008",
                "000000020000000000000009", "00000002000000000000000B", "000000020000000000000009.00000028.backup"]
    assert first_missing_segment(tl1 + promoted, after="000000010000000000000003") == "00000002000000000000000A"
    assert first_missing_segment(tl1 + promoted[:4], after="000000010000000000000003") is None
    assert first_missing_segment(tl1[1:], after="000000010000000000000003") == "000000010000000000000004"
    assert first_missing_segment(tl1[2:], after="000000010000000000000005") is None
    # 1 GiB segments: four to a log file, so ...0003 is followed by log 1, segment 0.
    assert first_missing_segment(["000000010000000000000003", "000000010000000100000001"],
                                 after="000000010000000000000002", segment_size=2**30) == "000000010000000100000000"
