"""database_failover against real streaming pairs: snapshot, dry run, lag refusal, fenced and crash failover.

The module's ``cluster_pair`` is only read (and paused/resumed); tests that promote build a pair of
their own, since a promoted standby cannot be used again.
"""

from __future__ import annotations

import secrets
import time

import psycopg2
import pytest

from disaster_recovery.postgres.cluster import create_standby, free_port, wait_streaming
from disaster_recovery.postgres.failover import FailoverError, decide_failover, wait_writable
from disaster_recovery.postgres.replication import read_snapshot
from disaster_recovery.steps.base import StepContext, StepFailed
from disaster_recovery.steps.database_failover import DatabaseFailoverStep
from tests.support import drop_cluster, make_cluster

pytestmark = pytest.mark.integration


def _wait_replayed(primary, standby, timeout: float = 10) -> None:
    target = primary.query("SELECT pg_current_wal_lsn()::text")[0][0]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if standby.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,))[0][0]:
            return
        time.sleep(0.02)
    raise AssertionError(f"standby did not replay {target} in {timeout}s")


def _set_conns(monkeypatch, primary, standby) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_DR_PRIMARY", primary.uri())
    monkeypatch.setenv("AIRFLOW_CONN_DR_STANDBY", standby.uri())


def _ctx(*, dry_run: bool = False) -> StepContext:
    return StepContext(plan_name="db-failover", step_name="promote", dry_run=dry_run)


def _config(**overrides) -> dict:
    config = {
        "primary_conn_id": "dr_primary",
        "standby_conn_id": "dr_standby",
        "max_lag_bytes": 16 * 1024 * 1024,
        "wait_writable_timeout": "30s",
    }
    config.update(overrides)
    return config


@pytest.fixture
def fresh_pair():
    """A primary + streaming standby of this test's own (used up by a promotion)."""
    primary = make_cluster("fo-primary")
    standby = create_standby(
        primary,
        data_dir=primary.data_dir.parent / f"fo-standby-{secrets.token_hex(3)}",
        port=free_port(),
        slot="standby_slot",
    )
    try:
        standby.start()
        wait_streaming(primary, application_name=standby.name)
        yield primary, standby
    finally:
        drop_cluster(standby)
        drop_cluster(primary)


# --- read only: the module's shared pair --------------------------------------------------------------


def test_snapshot_reads_streaming_state(cluster_pair):
    primary, standby = cluster_pair
    primary.query("CREATE TABLE IF NOT EXISTS snap_t (id int)")
    primary.query("INSERT INTO snap_t VALUES (1)")
    _wait_replayed(primary, standby)
    s_conn, p_conn = standby.connect(), primary.connect()
    try:
        snap = read_snapshot(s_conn, primary_conn=p_conn)
    finally:
        s_conn.close()
        p_conn.close()
    assert snap.in_recovery is True
    assert snap.primary_reachable is True and snap.primary_in_recovery is False
    assert snap.application_name == standby.name
    assert snap.replication_state == "streaming" and snap.sync_state == "async"
    assert snap.lag_basis == "primary"
    assert snap.lag_bytes == 0 and snap.lag_seconds == 0.0
    assert snap.timeline == 1 and snap.primary_timeline == 1
    assert snap.receive_lsn and snap.replay_lsn and snap.primary_lsn
    assert snap.last_replay_at is not None
    assert snap.as_dict()["taken_at"].startswith("20")


def test_snapshot_without_primary_measures_received_wal(cluster_pair):
    _, standby = cluster_pair
    conn = standby.connect()
    try:
        snap = read_snapshot(conn, primary_error="connection refused")
    finally:
        conn.close()
    assert snap.primary_reachable is False and snap.primary_error == "connection refused"
    assert snap.lag_basis == "received" and snap.lag_bytes == 0
    assert snap.sync_state is None


def test_dry_run_changes_nothing(cluster_pair, monkeypatch):
    primary, standby = cluster_pair
    _set_conns(monkeypatch, primary, standby)
    result = DatabaseFailoverStep().run(_config(), _ctx(dry_run=True))
    assert result.output["dry_run"] is True and result.output["promoted"] is False
    assert result.output["fenced"] is False
    assert result.sentence.startswith("Dry run: would fence dr_primary (read-only, end its sessions, checkpoint), "
                                      "then promote dr_standby.")
    assert standby.in_recovery() is True
    assert primary.query("SHOW default_transaction_read_only")[0][0] == "off"
    assert not primary.query("SELECT 1 FROM pg_file_settings WHERE name = 'default_transaction_read_only'")
    primary.query("CREATE TABLE IF NOT EXISTS dry_t (id int)")
    primary.query("INSERT INTO dry_t VALUES (1)")  # still writable
    assert primary.query("SELECT count(*) FROM pg_stat_replication")[0][0] == 1


def test_refuses_above_lag_limit(cluster_pair, monkeypatch):
    primary, standby = cluster_pair
    _set_conns(monkeypatch, primary, standby)
    standby.query("SELECT pg_wal_replay_pause()")
    try:
        primary.query("CREATE TABLE IF NOT EXISTS lag_t (id int, pad text)")
        primary.query("INSERT INTO lag_t SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g")
        with pytest.raises(StepFailed) as err:
            DatabaseFailoverStep().run(_config(max_lag_bytes=0), _ctx())
        message = str(err.value)
        assert "Refusing to fail over" in message
        assert "behind, above the limit of 0 bytes" in message
        assert "bytes" in message.split("behind")[0]
        assert standby.in_recovery() is True
        assert primary.query("SHOW default_transaction_read_only")[0][0] == "off"

        # The same standby within a generous limit would proceed (the dry run says so).
        result = DatabaseFailoverStep().run(_config(max_lag_bytes=1024**3), _ctx(dry_run=True))
        assert result.output["lag_bytes"] > 0
        assert "Replay is paused" in result.output["decision"]
    finally:
        standby.query("SELECT pg_wal_replay_resume()")
    _wait_replayed(primary, standby)


def test_refuses_lag_seconds_limit(cluster_pair, monkeypatch):
    primary, standby = cluster_pair
    _set_conns(monkeypatch, primary, standby)
    standby.query("SELECT pg_wal_replay_pause()")
    try:
        primary.query("CREATE TABLE IF NOT EXISTS lag_t (id int, pad text)")
        time.sleep(1.1)  # the last replayed commit is now over a second old
        primary.query("INSERT INTO lag_t VALUES (1, 'late')")
        with pytest.raises(StepFailed, match=r"last replayed transaction is \d+\.\d s old, above the limit of 1 s"):
            DatabaseFailoverStep().run(_config(max_lag_seconds=1), _ctx())
    finally:
        standby.query("SELECT pg_wal_replay_resume()")
    _wait_replayed(primary, standby)


def test_refuses_when_standby_is_already_primary(cluster_pair, monkeypatch):
    primary, _ = cluster_pair
    monkeypatch.setenv("AIRFLOW_CONN_DR_STANDBY", primary.uri())
    with pytest.raises(StepFailed, match="not in recovery: it is already a primary"):
        DatabaseFailoverStep().run(_config(primary_conn_id=None, fence_old_primary=False), _ctx())


def test_refuses_when_named_primary_is_a_standby(cluster_pair, monkeypatch):
    primary, standby = cluster_pair
    monkeypatch.setenv("AIRFLOW_CONN_DR_PRIMARY", standby.uri())
    monkeypatch.setenv("AIRFLOW_CONN_DR_STANDBY", standby.uri())
    monkeypatch.setenv("AIRFLOW_CONN_DR_OTHER", standby.uri())
    with pytest.raises(StepFailed, match="itself in recovery"):
        DatabaseFailoverStep().run(_config(primary_conn_id="dr_other"), _ctx())


def test_decision_is_pure_and_explains_itself(cluster_pair):
    primary, standby = cluster_pair
    conn = standby.connect()
    try:
        snap = read_snapshot(conn)
    finally:
        conn.close()
    ok = decide_failover(snap, max_lag_bytes=None, max_lag_seconds=None)
    assert ok.proceed and ok.reason == "ok" and "failover may proceed" in ok.sentence
    assert "limits: none" in ok.sentence


def test_wait_writable_times_out_on_a_standby(cluster_pair):
    primary, standby = cluster_pair
    with pytest.raises(FailoverError, match="did not accept a write within 0.3 s: FailoverError: the server is still in recovery"):
        wait_writable(standby.connect, timeout=0.3)
    attempts: list[int] = []

    def connect():
        attempts.append(1)
        return primary.connect()

    wait_writable(connect, timeout=5)
    assert len(attempts) == 1  # a writable primary takes the first write: no polling (and no clock asserted)


# --- promotions: pairs of their own -------------------------------------------------------------------


def test_full_failover_fences_and_promotes(fresh_pair, monkeypatch):
    primary, standby = fresh_pair
    _set_conns(monkeypatch, primary, standby)
    primary.query("CREATE TABLE orders (id int PRIMARY KEY, note text)")
    primary.query("INSERT INTO orders VALUES (1, 'committed before failover')")
    client = primary.connect()  # an application session that must not keep writing
    with client.cursor() as cur:
        cur.execute("SELECT 1")
    # Asynchronous replication: the decision's lag is what the standby had not replayed when it was read.
    _wait_replayed(primary, standby)

    result = DatabaseFailoverStep().run(_config(), _ctx())
    out = result.output

    assert out["promoted"] is True and out["fenced"] is True and out["caught_up"] is True
    assert out["previous_timeline"] == 1 and out["timeline"] == 2
    assert out["old_primary"] == "dr_primary" and out["new_primary"] == "dr_standby"
    assert out["lag_bytes"] == 0 and out["data_loss_bytes"] == 0
    assert any(s["pid"] for s in out["sql_fence"]["terminated"])
    assert set(out["phases"]) >= {"snapshot", "fence", "promote", "writable"}
    assert result.sentence.startswith("Promoted dr_standby to primary of dr-primary-dr-standby on timeline 2 (was 1)")
    assert "Fenced the old primary" in result.sentence
    # No host control in this form: the fence is SQL-only, and the sentence says so.
    assert out["lasting_fence"] is False and "has no host control" in result.sentence

    # The new primary has the committed row and takes writes.
    assert standby.in_recovery() is False
    assert standby.query("SELECT note FROM orders WHERE id = 1") == [("committed before failover",)]
    standby.query("INSERT INTO orders VALUES (2, 'after failover')")
    assert standby.query("SELECT count(*) FROM orders")[0][0] == 2

    # The old primary refuses writes from new sessions, and the open session was terminated.
    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        primary.query("INSERT INTO orders VALUES (3, 'split brain')")
    with pytest.raises(psycopg2.OperationalError), client.cursor() as cur:
        cur.execute("INSERT INTO orders VALUES (4, 'from an old session')")
    client.close()
    assert primary.query("SELECT count(*) FROM orders")[0][0] == 1


def test_failover_after_primary_crash_skips_fencing(fresh_pair, monkeypatch):
    primary, standby = fresh_pair
    _set_conns(monkeypatch, primary, standby)
    primary.query("CREATE TABLE ledger (id int)")
    primary.query("INSERT INTO ledger SELECT generate_series(1, 100)")
    _wait_replayed(primary, standby)
    primary.kill()

    result = DatabaseFailoverStep().run(_config(), _ctx())
    out = result.output

    assert out["promoted"] is True and out["fenced"] is False
    assert out["primary_reachable"] is False and out["lag_basis"] == "received"
    assert out["timeline"] == 2
    assert "dr_primary has no host control in the cluster definition, so it cannot be fenced on disk" in result.sentence
    assert standby.query("SELECT count(*) FROM ledger")[0][0] == 100
    standby.query("INSERT INTO ledger VALUES (101)")


def test_failover_clears_inherited_settings(fresh_pair, monkeypatch):
    """A new primary that inherited synchronous_standby_names would hang on every commit, and one cloned
    from a fenced primary would be read-only: both are cleared before it is declared writable."""
    primary, standby = fresh_pair
    _set_conns(monkeypatch, primary, standby)
    standby.query("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
    standby.query("ALTER SYSTEM SET default_transaction_read_only = on")
    standby.query("SELECT pg_reload_conf()")
    result = DatabaseFailoverStep().run(_config(fence_old_primary=False), _ctx())
    assert result.output["synchronous_standby_names"] == {"before": "nobody", "after": ""}
    assert "NOT fenced" in result.sentence
    assert "reset an inherited default_transaction_read_only" in result.sentence
    assert standby.query("SHOW synchronous_standby_names")[0][0] == ""
    assert standby.query("SHOW default_transaction_read_only")[0][0] == "off"
    standby.query("CREATE TABLE after_sync (id int)")
    primary.query("CREATE TABLE still_writable (id int)")  # unfenced on purpose
