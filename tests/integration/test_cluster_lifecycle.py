"""A cluster's whole life on real servers, through the database_failover step: kill the primary, fail over,
restart the old primary (it refuses writes), rejoin it, switch back with every acknowledged write kept,
and fail over a second time. Each action writes its failover_events row; backups follow the primary.

The module's tests run in order on one synchronous pair (each builds on the topology the last one left);
a writer commits one row per transaction through a multi-host DSN the whole time and keeps a ledger
of every acknowledged commit.
"""

from __future__ import annotations

import time

import psycopg2
import pytest
import yaml

from disaster_recovery.catalog.repository import Catalog
from disaster_recovery.clusters.access import snapshot_cluster
from disaster_recovery.clusters.events import FailoverImpact
from disaster_recovery.clusters.model import load_clusters
from disaster_recovery.clusters.topology import decide_topology
from disaster_recovery.postgres.ledger import LedgerWriter, lost_acknowledged, multi_host_dsn
from disaster_recovery.steps.base import RunTrigger, StepContext, StepFailed
from disaster_recovery.steps.database_failover import DatabaseFailoverStep
from tests.support import SESSION_DIR, drop_cluster, make_pair

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(catalog_cluster_db):
    node1, node2 = make_pair("life")
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW_CONN_LIFE_NODE1", node1.uri())
    mp.setenv("AIRFLOW_CONN_LIFE_NODE2", node2.uri())
    cat_cluster, cat_db = catalog_cluster_db
    mp.setenv("AIRFLOW_CONN_LIFE_CATALOG", cat_cluster.uri(cat_db))
    mp.setenv("DR_CATALOG_CONN_ID", "life_catalog")
    clusters_file = SESSION_DIR / "life-clusters.yaml"
    clusters_file.write_text(yaml.safe_dump({"clusters": [{
        "name": "life", "synchronous": True, "preferred_primary": "life_node1",
        "members": [
            {"conn_id": "life_node1", "control": {"kind": "local", "data_directory": str(node1.data_dir)}},
            {"conn_id": "life_node2", "control": {"kind": "local", "data_directory": str(node2.data_dir)}},
        ],
    }]}))
    mp.setenv("DR_CLUSTERS_FILE", str(clusters_file))
    # Synchronous from the start, as the cluster declares (the pair's standby has its directory's name).
    standby_app = node1.query("SELECT application_name FROM pg_stat_replication")[0][0]
    node1.query(f"ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (\"{standby_app}\")'")
    node1.query("SELECT pg_reload_conf()")
    writer = LedgerWriter(multi_host_dsn([("127.0.0.1", node1.port), ("127.0.0.1", node2.port)],
                                         user="postgres", password=node1.password, dbname="postgres")).start()
    assert writer.wait_for_acks(50)
    catalog = Catalog.from_dsn(cat_cluster.dsn(cat_db))
    yield {"node1": node1, "node2": node2, "writer": writer, "catalog": catalog,
           "cluster": load_clusters(clusters_file).require("life")}
    writer.stop()
    catalog.dispose()
    mp.undo()
    drop_cluster(node2)
    drop_cluster(node1)


def step(action: str, *, dry_run: bool = False, **config) -> dict:
    ctx = StepContext(plan_name="life", step_name=action, dry_run=dry_run, execution_id=None,
                      trigger=RunTrigger(reason=f"test {action}", initiated_by="pytest"))
    result = DatabaseFailoverStep().run({"cluster": "life", "action": action, **config}, ctx)
    return {**result.output, "sentence": result.sentence}


def topology(world):
    return decide_topology(snapshot_cluster(world["cluster"]))


def assert_no_acked_write_lost(world, primary) -> None:
    writer: LedgerWriter = world["writer"]
    assert writer.wait_for_acks(20), writer.ledger.last_error  # it writes again, on the new primary
    assert lost_acknowledged(writer.ledger, primary.dsn()) == [], "acknowledged writes lost"


def events(world, action: str):
    return [e for e in world["catalog"].failover_events() if FailoverImpact.of(e).action == action]


def test_dry_runs_change_nothing(world):
    before = topology(world)
    assert before.primary == "life_node1" and before.streaming == ("life_node2",)
    for action in ("failover", "switchover", "rejoin"):
        out = step(action, dry_run=True, **({"candidate": "life_node2"} if action == "switchover" else {}))
        assert out["dry_run"] is True and out["promoted"] is False, out
        assert out["sentence"].startswith(("Dry run", "Nothing to rejoin")), out["sentence"]
    assert topology(world).sentence == before.sentence
    assert world["node1"].query("SHOW default_transaction_read_only") == [("off",)]
    assert events(world, "failover") == []  # a dry run records no event


def test_kill_the_primary_then_failover_loses_no_acknowledged_write(world):
    world["node1"].kill()
    out = step("failover")
    assert out["promoted"] is True and (out["old_primary"], out["new_primary"]) == ("life_node1", "life_node2")
    assert out["lasting_fence"] is True and out["timeline"] == 2
    # What the old primary committed past the fork point was measured from its WAL: with synchronous
    # replication that is at most the one commit in flight (written locally, never acknowledged).
    assert out["data_loss"]["measured"] is True and out["data_loss"]["lost_transactions"] <= 1
    assert "life_node1 fenced for good" in out["sentence"]
    assert_no_acked_write_lost(world, world["node2"])
    (event,) = events(world, "failover")
    impact = FailoverImpact.of(event)
    assert event.status == "completed" and event.source_system == "life_node1" and event.target_system == "life_node2"
    assert event.trigger_type == "manual_trigger" and event.failover_reason == "test failover"
    assert impact.data_loss_bytes == out["data_loss_bytes"] and impact.data_loss_measured and impact.timeline_after == 2
    assert {"fence", "promote", "writable"} <= set(impact.phases)


def test_the_old_primary_restarted_refuses_writes(world):
    node1 = world["node1"]
    assert (node1.data_dir / "standby.signal").exists() and (node1.data_dir / "dr_fence.json").exists()
    (node1.data_dir / "standby.signal").unlink()  # even if someone removes the signal, the marker puts it back
    node1.start()
    node1.wait_ready()
    assert node1.in_recovery()
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        node1.query("CREATE TABLE split_brain (x int)")
    t = topology(world)
    assert t.primary == "life_node2" and "life_node1" in t.fenced and not t.split_brain
    # A fenced member is never a failover candidate: with node2 gone there is no healthy standby.
    with pytest.raises(StepFailed, match="No healthy standby to promote in cluster life: life_node1 is fenced"):
        step("failover", dry_run=True, fence_old_primary=False)


def test_rejoin_then_switchover_restores_the_original_topology(world):
    out = step("rejoin")
    assert out["members"][0]["member"] == "life_node1" and out["members"][0]["streaming"] is True
    assert not (world["node1"].data_dir / "dr_fence.json").exists()
    t = topology(world)
    assert t.primary == "life_node2" and t.streaming == ("life_node1",) and not t.fenced
    assert world["node2"].query("SHOW synchronous_standby_names") == [('ANY 1 ("life_node1")',)]

    out = step("switchover")  # back to the preferred primary
    assert (out["old_primary"], out["new_primary"]) == ("life_node2", "life_node1") and out["timeline"] == 3
    assert "every acknowledged write replayed" in out["sentence"]
    t = topology(world)
    assert t.primary == "life_node1" and t.streaming == ("life_node2",) and not t.fenced
    assert world["node1"].query("SHOW synchronous_standby_names") == [('ANY 1 ("life_node2")',)]
    assert_no_acked_write_lost(world, world["node1"])
    assert [e.status for e in events(world, "rejoin")] == ["completed"]
    (switch,) = events(world, "switchover")
    assert switch.trigger_type == "scheduled_maintenance" and switch.target_system == "life_node1"


def test_a_second_failover_after_the_round_trip_works(world):
    world["node1"].kill()
    out = step("failover")
    assert (out["old_primary"], out["new_primary"]) == ("life_node1", "life_node2") and out["timeline"] == 4
    # The standby reported its last restartpoint's timeline; the loss is measured on the one it forked from.
    assert out["previous_timeline"] == 3 and out["forked_from_timeline"] == 3 and out["data_loss"]["measured"]
    assert_no_acked_write_lost(world, world["node2"])
    assert len(events(world, "failover")) == 2
    world["node1"].start()  # fenced: in recovery, then rejoined for the next tests
    step("rejoin")
    assert topology(world).streaming == ("life_node1",)


def test_refusals_say_why_and_change_nothing(world):
    node1, node2 = world["node1"], world["node2"]  # node2 is the primary now, node1 streams from it
    with pytest.raises(StepFailed, match="Not failing over|Switch the primary|is already a primary"):
        step("failover", candidate="life_node2")
    node1.query("SELECT pg_wal_replay_pause()")
    try:
        node2.query("CREATE TABLE IF NOT EXISTS lag_t AS SELECT g FROM generate_series(1, 20000) g")
        with pytest.raises(StepFailed, match="above the limit of 0 bytes"):
            step("switchover", candidate="life_node1", max_lag_bytes=0)
    finally:
        node1.query("SELECT pg_wal_replay_resume()")
    assert topology(world).primary == "life_node2"
    before = len(world["catalog"].failover_events())
    assert any(e.status == "failed" and "above the limit" in (e.success_validation or {}).get("sentence", "")
               for e in world["catalog"].failover_events()[:before])


def test_fence_impossible_while_the_old_primary_answers_is_a_refusal(world, monkeypatch):
    """A login that may not ALTER SYSTEM cannot fence: the still-answering primary is left alone."""
    node2 = world["node2"]
    node2.query("DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'weak') THEN "
                "CREATE ROLE weak LOGIN PASSWORD 'weak'; END IF; END$$")
    node2.query("GRANT pg_monitor TO weak")  # it may read every member's state, not change it
    node2.query("GRANT EXECUTE ON FUNCTION pg_control_system(), pg_control_checkpoint() TO weak")
    monkeypatch.setenv("AIRFLOW_CONN_LIFE_NODE2", f"postgresql://weak:weak@127.0.0.1:{node2.port}/postgres")
    path = SESSION_DIR / "life-nohost.yaml"
    path.write_text(yaml.safe_dump({"clusters": [{"name": "life", "members": [
        {"conn_id": "life_node2"}, {"conn_id": "life_node1"}]}]}))
    monkeypatch.setenv("DR_CLUSTERS_FILE", str(path))
    with pytest.raises(StepFailed, match="Could not fence life_node2, which still answers"):
        step("failover", candidate="life_node1")
    assert world["node1"].in_recovery()  # not promoted
    assert node2.query("SHOW default_transaction_read_only") == [("off",)]
    # A member that answers but cannot be read at all may be a primary: no failover either.
    node2.query("REVOKE SELECT ON pg_stat_archiver FROM PUBLIC")
    try:
        with pytest.raises(StepFailed, match="life_node2 answers but cannot read its state"):
            step("failover", candidate="life_node1")
    finally:
        node2.query("GRANT SELECT ON pg_stat_archiver TO PUBLIC")
    assert world["node1"].in_recovery()
    with pytest.raises(StepFailed, match="needs its host control"):
        step("switchover", candidate="life_node1")


def test_backups_after_a_failover_come_from_the_new_primary(world, monkeypatch):
    """The backup source names the cluster: after the failovers above, node2 is the primary and is backed up."""
    from disaster_recovery.backups.runner import take_backup
    from disaster_recovery.backups.sources import Source
    from tests.integration.backup_support import key_conn_json, new_key, storage_root

    key, b64 = new_key()
    monkeypatch.setenv("AIRFLOW_CONN_LIFE_KEY", key_conn_json(b64))
    source = Source.model_validate({
        "name": "life", "cluster": "life", "method": "physical", "schedule": "@daily",
        "retention": {"keep_last": 1}, "freshness": {"max_age": "1d"},
        "storage": {"kind": "local", "path": str(storage_root("life-store"))},
        "encryption": {"key_conn_id": "life_key"},
    })
    outcome = take_backup(source=source, catalog=world["catalog"])
    meta = outcome.record.metadata
    assert meta["source_endpoint"].endswith(f"@127.0.0.1:{world['node2'].port}/postgres"), meta["source_endpoint"]
    assert topology(world).primary == "life_node2"


def test_asynchronous_loss_is_measured_and_equals_the_acknowledged_writes_lost(catalog_cluster_db, monkeypatch):
    """With asynchronous replication a crash loses what the standby had not received. The failover counts
    it from the old primary's own WAL: the commits lost are the client's lost acknowledged writes (plus at
    most the one commit in flight, which the client never saw acknowledged)."""
    node1, node2 = make_pair("async")
    try:
        monkeypatch.setenv("AIRFLOW_CONN_ASYNC_NODE1", node1.uri())
        monkeypatch.setenv("AIRFLOW_CONN_ASYNC_NODE2", node2.uri())
        path = SESSION_DIR / "async-clusters.yaml"
        path.write_text(yaml.safe_dump({"clusters": [{"name": "async", "members": [
            {"conn_id": "async_node1", "control": {"kind": "local", "data_directory": str(node1.data_dir)}},
            {"conn_id": "async_node2", "control": {"kind": "local", "data_directory": str(node2.data_dir)}}]}]}))
        monkeypatch.setenv("DR_CLUSTERS_FILE", str(path))
        writer = LedgerWriter(multi_host_dsn([("127.0.0.1", node1.port)], user="postgres",
                                             password=node1.password, dbname="postgres")).start()
        assert writer.wait_for_acks(100)
        node2.query("ALTER SYSTEM SET primary_conninfo = ''")  # the standby stops receiving: a replication stall
        node2.query("SELECT pg_reload_conf()")
        assert writer.wait_for_acks(200)
        node1.kill()
        ledger = writer.stop()
        ctx = StepContext(plan_name="async", step_name="promote", trigger=RunTrigger(reason="crash"))
        step_cls = DatabaseFailoverStep()
        step_cls.record_events = False
        out = step_cls.run({"cluster": "async", "max_lag_bytes": 1024 ** 3}, ctx).output
        lost = lost_acknowledged(ledger, node2.dsn())
        assert len(lost) >= 200
        assert out["data_loss"]["lost_transactions"] - len(lost) in (0, 1), (out["data_loss"], len(lost))
        assert out["data_loss_bytes"] > 0 and out["data_loss_seconds"] > 0

        # The old primary, started again, is fenced and diverged: it is no standby until pg_rewind runs,
        # however often it reconnects, and no switchover may promote it.
        node1.start()
        node1.wait_ready()
        cluster = load_clusters(path).require("async")
        time.sleep(1.0)  # let it reconnect a few times
        topology = decide_topology(snapshot_cluster(cluster))
        assert topology.primary == "async_node2" and topology.streaming == (), topology.sentence
        ctx = StepContext(plan_name="async", step_name="s", trigger=RunTrigger(reason="maintenance"))
        with pytest.raises(StepFailed, match="fenced: rejoin it first|does not stream from"):
            step_cls.run({"cluster": "async", "action": "switchover", "candidate": "async_node1"}, ctx)
        rejoined = step_cls.run({"cluster": "async", "action": "rejoin"}, ctx).output
        assert rejoined["members"][0]["method"] in ("pg_rewind", "clone"), rejoined
        assert decide_topology(snapshot_cluster(cluster)).streaming == ("async_node1",)
        missing = lost_acknowledged(ledger, node1.dsn())  # the standby holds exactly the new primary's data
        assert missing == lost
    finally:
        drop_cluster(node2)
        drop_cluster(node1)
