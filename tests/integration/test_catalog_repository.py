"""The catalog repository on a real, migrated catalog database."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest

from disaster_recovery.catalog.records import ExecutionRecord, PlanRecord, StepRecord, StepSpec
from disaster_recovery.catalog.repository import Catalog, ConflictingExecution, NotFound

pytestmark = pytest.mark.integration
UTC = dt.UTC


@pytest.fixture(scope="module")
def catalog(catalog_cluster_db):
    cluster, dbname = catalog_cluster_db
    cat = Catalog.from_dsn(cluster.uri(dbname))
    yield cat
    cat.dispose()


def plan_values(name: str, **overrides) -> dict:
    values = {
        "plan_name": name,
        "disaster_scenario": "hardware_failure",
        "plan_version": "1.0",
        "plan_document": {"description": "primary lost", "owner": "dba"},
        "recovery_procedures": [{"step": "promote"}, {"step": "dns"}],
        "resource_requirements": {"standby": 1},
        "dependencies": {"services": ["api"]},
        "estimated_rto": dt.timedelta(minutes=15),
        "estimated_rpo": dt.timedelta(minutes=5),
        "approval_status": "approved",
        "approved_by": "alice",
        "approved_at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        "effective_date": dt.date(2024, 5, 2),
        "review_frequency": dt.timedelta(days=180),
        "next_review_date": dt.date(2024, 11, 1),
    }
    values.update(overrides)
    return values


def new_plan(catalog: Catalog, **overrides) -> PlanRecord:
    return catalog.upsert_plan(**plan_values(f"plan-{uuid.uuid4().hex[:8]}", **overrides))


def open_kwargs(plan: PlanRecord, name: str = "run-1") -> dict:
    return {
        "execution_name": name,
        "plan_id": plan.id,
        "trigger_type": "manual",
        "trigger_event": {"reason": "drill", "dag_run_id": name},
        "execution_mode": "test",
        "initiated_by": "alice",
        "steps_total": 3,
        "affected_services": ["api", "db"],
    }


# -- plans ------------------------------------------------------------------------------------------------
def test_upsert_plan_inserts_then_is_idempotent(catalog, catalog_cluster_db):
    cluster, dbname = catalog_cluster_db
    values = plan_values("failover-primary")
    first = catalog.upsert_plan(**values, created_by="alice")
    assert isinstance(first, PlanRecord)
    assert first.plan_name == "failover-primary"
    assert first.estimated_rto == dt.timedelta(minutes=15)
    assert first.plan_document == {"description": "primary lost", "owner": "dba"}
    assert first.approved_at == dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert first.created_at.tzinfo is UTC
    assert first.created_by == "alice"

    again = catalog.upsert_plan(**values)
    assert again == first  # same row, nothing changed, updated_at untouched
    count = cluster.query(
        "SELECT count(*) FROM disaster_recovery_plans WHERE plan_name = 'failover-primary'", dbname=dbname
    )
    assert count == [(1,)]

    changed = catalog.upsert_plan(**{**values, "plan_version": "1.1", "estimated_rto": dt.timedelta(minutes=10)})
    assert changed.id == first.id
    assert (changed.plan_version, changed.estimated_rto) == ("1.1", dt.timedelta(minutes=10))
    assert changed.updated_at > first.updated_at
    assert changed.created_by == "alice"
    assert catalog.latest_plan("failover-primary") == changed
    assert catalog.get_plan(first.id) == changed
    assert catalog.latest_plan("no-such-plan") is None


def test_upsert_plan_updates_the_newest_row_of_a_name(catalog):
    """plan_name is not unique in the spec: with several rows of a name, the newest one is updated."""
    base = plan_values("twice")
    older = catalog.insert("disaster_recovery_plans", **base, created_at=dt.datetime(2020, 1, 1, tzinfo=UTC))
    newer = catalog.insert("disaster_recovery_plans", **base, created_at=dt.datetime(2021, 1, 1, tzinfo=UTC))
    assert older["created_at"] == dt.datetime(2020, 1, 1, tzinfo=UTC)

    updated = catalog.upsert_plan(**{**base, "plan_version": "2.0"})
    assert updated.id == newer["id"]
    assert catalog.get_plan(older["id"]).plan_version == "1.0"


def test_concurrent_upserts_of_one_name_make_one_row(catalog, catalog_cluster_db):
    cluster, dbname = catalog_cluster_db
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            catalog.upsert_plan(**plan_values("raced-plan"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert cluster.query(
        "SELECT count(*) FROM disaster_recovery_plans WHERE plan_name = 'raced-plan'", dbname=dbname
    ) == [(1,)]


def test_upsert_plan_rejects_naive_timestamps(catalog):
    with pytest.raises(ValueError, match="naive"):
        catalog.upsert_plan(**plan_values("naive", approved_at=dt.datetime(2024, 1, 1)))


# -- executions -------------------------------------------------------------------------------------------
def test_open_execution_then_conflicting_refusal(catalog):
    plan = new_plan(catalog)
    assert catalog.active_executions(plan.id) == []
    before = dt.datetime.now(UTC)
    run = catalog.open_execution(**open_kwargs(plan, "run-1"))
    assert isinstance(run, ExecutionRecord)
    assert (run.status, run.plan_id, run.execution_name) == ("in_progress", plan.id, "run-1")
    assert run.started_at is not None and run.started_at.tzinfo is UTC
    assert run.started_at >= before - dt.timedelta(seconds=5)
    assert run.trigger_event == {"reason": "drill", "dag_run_id": "run-1"}
    assert run.affected_services == ("api", "db")
    assert (run.recovery_steps_total, run.recovery_steps_completed) == (3, 0)
    assert run.is_active
    assert catalog.active_executions(plan.id) == [run]
    assert run in catalog.active_executions()

    with pytest.raises(ConflictingExecution) as refused:
        catalog.open_execution(**open_kwargs(plan, "run-2"))
    assert refused.value.execution_id == run.id
    assert refused.value.execution_name == "run-1"
    assert "run-1" in str(refused.value)

    record = catalog.record_refused_execution(
        execution_name="run-2",
        plan_id=plan.id,
        trigger_type="manual",
        trigger_event={"reason": "drill"},
        execution_mode="test",
        initiated_by="bob",
        reason=str(refused.value),
    )
    assert record.status == "failed"
    assert record.failed_at is not None and record.started_at is None
    assert record.error_details == {"refused": str(refused.value)}
    assert catalog.active_executions(plan.id) == [run]

    # another plan is not affected
    other = catalog.open_execution(**open_kwargs(new_plan(catalog), "other"))
    assert other.status == "in_progress"


def test_open_execution_for_unknown_plan(catalog):
    with pytest.raises(NotFound):
        catalog.open_execution(**{**open_kwargs(new_plan(catalog)), "plan_id": uuid.uuid4()})
    with pytest.raises(NotFound):
        catalog.get_execution(uuid.uuid4())


@pytest.mark.parametrize("round_", range(5))
def test_two_racing_openers_exactly_one_wins(catalog, round_):
    plan = new_plan(catalog)
    barrier = threading.Barrier(2)
    won: list[ExecutionRecord] = []
    lost: list[ConflictingExecution] = []
    errors: list[BaseException] = []

    def opener(name: str) -> None:
        try:
            barrier.wait()
            won.append(catalog.open_execution(**open_kwargs(plan, name)))
        except ConflictingExecution as exc:
            lost.append(exc)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=opener, args=(f"racer-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(won) == 1 and len(lost) == 1
    assert lost[0].execution_id == won[0].id
    assert lost[0].execution_name == won[0].execution_name
    assert [e.id for e in catalog.active_executions(plan.id)] == [won[0].id]


def test_an_opener_waits_for_a_transaction_holding_the_plan(catalog, catalog_cluster_db):
    """The lock is on the plan row: a second opener blocks until the first transaction ends."""
    cluster, dbname = catalog_cluster_db
    plan = new_plan(catalog)
    conn = cluster.connect(dbname, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM disaster_recovery_plans WHERE id = %s FOR NO KEY UPDATE", (str(plan.id),))
            cur.execute(
                "INSERT INTO recovery_executions (execution_name, plan_id, trigger_type, trigger_event, status) "
                "VALUES ('held', %s, 'manual', '{}', 'in_progress')",
                (str(plan.id),),
            )
        holder = conn.get_backend_pid()
        result: list[BaseException | ExecutionRecord] = []
        thread = threading.Thread(target=lambda: _try_open(catalog, plan, result))
        thread.start()
        # Proof that it waits for *this* lock, not merely that it is slow: PostgreSQL reports the opener's
        # backend blocked by the holder's (a timeout only ends the wait for that report).
        blocked = _wait_blocked_by(cluster, dbname, holder)
        assert blocked, "open_execution never waited for the transaction holding the plan row"
        assert thread.is_alive() and result == []
        conn.commit()
        thread.join(30)
    finally:
        conn.close()
    assert len(result) == 1 and isinstance(result[0], ConflictingExecution)
    assert result[0].execution_name == "held"


def _wait_blocked_by(cluster, dbname: str, holder: int, *, timeout: float = 30) -> list[tuple]:
    """(pid, wait_event_type) of the backends waiting on a lock ``holder`` holds, once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = cluster.query(
            "SELECT pid, wait_event_type FROM pg_stat_activity WHERE datname = %s AND %s = ANY(pg_blocking_pids(pid))",
            (dbname, holder), dbname=dbname,
        )
        if rows:
            assert all(kind == "Lock" for _, kind in rows), rows
            return rows
        time.sleep(0.02)
    return []


def _try_open(catalog, plan, result):
    try:
        result.append(catalog.open_execution(**open_kwargs(plan, "waiter")))
    except ConflictingExecution as exc:
        result.append(exc)


# -- steps and finalize -----------------------------------------------------------------------------------
def test_step_rows_lifecycle_and_finalize(catalog, catalog_cluster_db):
    cluster, dbname = catalog_cluster_db
    plan = new_plan(catalog)
    run = catalog.open_execution(**open_kwargs(plan))
    specs = [
        StepSpec("notify", 3, "notification", {"channel": "ops"}),
        StepSpec(
            "restore",
            1,
            "backup_restore",
            {"backup": "latest"},
            max_retries=2,
            success_criteria={"rows": {"operator": ">=", "value": 1}},
        ),
        StepSpec("dns", 2, "dns_update", {"record": "db.example"}, dependencies=("restore",), parallel_group="net"),
    ]
    steps = catalog.create_step_rows(run.id, specs)
    assert [s.step_name for s in steps] == ["restore", "dns", "notify"]
    assert all(isinstance(s, StepRecord) and s.status == "pending" and s.retry_count == 0 for s in steps)
    assert steps[0].max_retries == 2
    assert steps[0].success_criteria == {"rows": {"operator": ">=", "value": 1}}
    assert steps[1].dependencies == ("restore",) and steps[1].parallel_group == "net"
    assert steps[2].dependencies == () and steps[2].success_criteria is None

    # a retried task does not duplicate the rows
    assert catalog.create_step_rows(run.id, specs) == steps
    with pytest.raises(ValueError, match="duplicate"):
        catalog.create_step_rows(run.id, [specs[0], specs[0]])

    t0 = dt.datetime.now(UTC)
    running = catalog.update_step(run.id, "restore", status="running", started_at=t0)
    assert running.status == "running" and running.started_at == t0
    retrying = catalog.update_step(run.id, "restore", status="retrying", retry_count=1, error_message="timeout")
    assert (retrying.retry_count, retrying.error_message) == (1, "timeout")
    t1 = t0 + dt.timedelta(seconds=42)
    done = catalog.update_step(
        run.id,
        "restore",
        status="completed",
        completed_at=t1,
        duration=t1 - t0,
        output_data={"rows": 12, "at": t1},
        validation_results={"rows": True},
        error_message=None,
    )
    assert done.duration == dt.timedelta(seconds=42)
    assert done.output_data == {"rows": 12, "at": t1.isoformat()}
    assert done.error_message is None
    catalog.update_step(run.id, "dns", status="skipped")
    assert [s.status for s in catalog.get_steps(run.id)] == ["completed", "skipped", "pending"]

    with pytest.raises(ValueError, match="cannot set"):
        catalog.update_step(run.id, "dns", step_type="cleanup")
    with pytest.raises(ValueError, match="step status"):
        catalog.update_step(run.id, "dns", status="exploded")
    with pytest.raises(NotFound):
        catalog.update_step(run.id, "no-such-step", status="running")
    with pytest.raises(ValueError, match="naive"):
        catalog.update_step(run.id, "dns", started_at=dt.datetime(2024, 1, 1))

    finished = catalog.finalize_execution(
        run.id,
        status="completed",
        completed_at=t1,
        total_duration=t1 - run.started_at,
        actual_rto=dt.timedelta(minutes=3),
        actual_rpo=dt.timedelta(seconds=7),
        steps_completed=1,
        steps_total=3,
        success_criteria_met=True,
        execution_log={"tasks": ["restore"]},
        data_loss_amount=0,
    )
    assert finished.status == "completed" and not finished.is_active
    assert (finished.actual_rto, finished.actual_rpo) == (dt.timedelta(minutes=3), dt.timedelta(seconds=7))
    assert (finished.recovery_steps_completed, finished.recovery_steps_total) == (1, 3)
    assert finished.error_details is None
    assert finished.execution_log == {"tasks": ["restore"]}
    assert catalog.get_execution(run.id) == finished
    assert catalog.active_executions(plan.id) == []
    # SQL NULL, not JSON null
    assert cluster.query(
        "SELECT error_details IS NULL FROM recovery_executions WHERE id = %s", (str(run.id),), dbname=dbname
    ) == [(True,)]

    # the plan is free again
    assert catalog.open_execution(**open_kwargs(plan, "run-2")).status == "in_progress"

    # steps go with their execution (ON DELETE CASCADE)
    cluster.query("DELETE FROM recovery_executions WHERE id = %s", (str(run.id),), dbname=dbname)
    assert catalog.get_steps(run.id) == []


def test_finalize_failed_with_rollback(catalog):
    plan = new_plan(catalog)
    run = catalog.open_execution(**open_kwargs(plan))
    failed_at = dt.datetime.now(UTC)
    record = catalog.finalize_execution(
        run.id,
        status="rolled_back",
        failed_at=failed_at,
        total_duration=failed_at - run.started_at,
        actual_rto=None,
        steps_completed=0,
        steps_total=3,
        success_criteria_met=False,
        error_details={"step": "restore", "error": "checksum mismatch"},
        rollback_initiated=True,
        rollback_completed=True,
    )
    assert (record.status, record.failed_at, record.completed_at) == ("rolled_back", failed_at, None)
    assert record.error_details == {"step": "restore", "error": "checksum mismatch"}
    assert record.rollback_initiated and record.rollback_completed
    assert record.execution_log == {}  # left as it was
    with pytest.raises(ValueError, match="final status"):
        catalog.finalize_execution(
            run.id,
            status="in_progress",
            total_duration=None,
            actual_rto=None,
            steps_completed=0,
            steps_total=3,
            success_criteria_met=None,
        )
    with pytest.raises(NotFound):
        catalog.finalize_execution(
            uuid.uuid4(),
            status="failed",
            total_duration=None,
            actual_rto=None,
            steps_completed=0,
            steps_total=0,
            success_criteria_met=False,
        )
    assert record.as_json()["id"] == str(run.id)
    assert record.as_json()["failed_at"] == failed_at.isoformat()


# -- failover events and generic rows ---------------------------------------------------------------------
def test_failover_event_and_generic_insert(catalog):
    event = catalog.record_failover_event(
        event_name="promote standby",
        trigger_type="health_check_failure",
        source_system="pg-primary",
        target_system="pg-standby",
        failover_reason="primary unreachable",
        automated=True,
        impact_assessment={"lag_bytes": 0},
        created_by="health-monitor",
    )
    assert (event.status, event.automated, event.dns_updated) == ("initiated", True, False)
    assert event.initiated_at.tzinfo is UTC
    done = catalog.update_failover_event(
        event.id,
        status="completed",
        completed_at=event.initiated_at + dt.timedelta(seconds=9),
        duration=dt.timedelta(seconds=9),
        dns_updated=True,
    )
    assert (done.status, done.duration, done.dns_updated) == ("completed", dt.timedelta(seconds=9), True)

    row = catalog.insert(
        "system_health_monitoring",
        service_name="api",
        health_status="degraded",
        cpu_usage=91.5,
        alerts_triggered=["cpu"],
    )
    assert row["alerts_triggered"] == ["cpu"]
    assert row["custom_metrics"] == {}
    assert row["monitoring_timestamp"].tzinfo is UTC
    row = catalog.update_row("system_health_monitoring", row["id"], health_status="healthy")
    assert row["health_status"] == "healthy"
    with pytest.raises(ValueError, match="not a catalog table"):
        catalog.insert("pg_class", relname="x")
    with pytest.raises(ValueError, match="no column"):
        catalog.insert("recovery_metrics", nonsense=1)

    assert catalog.get_failover_event(event.id) == done
    assert catalog.failover_events(statuses=("completed",), since=event.initiated_at)[0] == done
    assert catalog.failover_events(statuses=("initiated",), since=event.initiated_at) == []
    with pytest.raises(NotFound):
        catalog.get_failover_event(uuid.uuid4())


def test_active_execution_plans_names_the_plan_of_each_running_execution(catalog):
    plan = new_plan(catalog)
    execution = catalog.open_execution(**open_kwargs(plan, name="active-1"))
    (active,) = [a for a in catalog.active_execution_plans() if a.execution_name == "active-1"]
    assert active.plan_name == plan.plan_name and active.plan_document == plan.plan_document
    catalog.finalize_execution(execution.id, status="completed", steps_completed=3, steps_total=3,
                               total_duration=None, actual_rto=None, success_criteria_met=True)
    assert "active-1" not in [a.execution_name for a in catalog.active_execution_plans()]


def test_from_libpq_dsn(catalog_cluster_db):
    cluster, dbname = catalog_cluster_db
    with Catalog.from_dsn(cluster.dsn(dbname)) as cat:
        assert cat.active_executions(uuid.uuid4()) == []


def test_catalog_from_an_airflow_connection(catalog_cluster_db, monkeypatch):
    import json

    from disaster_recovery.catalog.repository import catalog_from_connection

    cluster, dbname = catalog_cluster_db
    conn = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": cluster.port,
        "login": cluster.superuser,
        "password": cluster.password,
        "schema": dbname,
        "extra": {"sslmode": "disable", "application_name": "dr-catalog-test"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_DR_CATALOG_TEST", json.dumps(conn))
    cat = catalog_from_connection("dr_catalog_test")
    try:
        assert cat.engine.url.drivername == "postgresql+psycopg2"
        assert cat.engine.url.query["application_name"] == "dr-catalog-test"
        assert cat.active_executions(uuid.uuid4()) == []
    finally:
        cat.dispose()
