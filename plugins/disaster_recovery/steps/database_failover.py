"""``database_failover``: promote a streaming standby, after fencing the old primary when it answers.

Order: read one replication snapshot -> decide (lag limits, roles) -> fence the old primary (read-only,
sessions terminated, CHECKPOINT) -> wait for the standby to replay the primary's final WAL -> promote ->
clear settings the new primary must not keep (synchronous_standby_names, an inherited fence) -> wait
until it takes a write. A dry run stops after the decision and changes nothing.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, ClassVar

from disaster_recovery.connections import pg_address, pg_connect
from disaster_recovery.plans.step_configs import DatabaseFailoverConfig
from disaster_recovery.postgres.failover import (
    FailoverError,
    clear_fence,
    decide_failover,
    fence_primary,
    promote,
    wait_replayed,
    wait_writable,
)
from disaster_recovery.postgres.replication import (
    current_timeline,
    error_text,
    fetch_all,
    fetch_one,
    read_snapshot,
)
from disaster_recovery.steps.base import StepContext, StepFailed, StepResult

CONNECT_TIMEOUT_SECONDS = 5


def _close(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def _reset_synchronous_standby_names(conn: Any) -> str | None:
    """Clear synchronous_standby_names on the new primary (its standby is gone: commits would hang)."""
    value = fetch_one(conn, "SHOW synchronous_standby_names")[0]
    if not value:
        return None
    fetch_all(conn, "ALTER SYSTEM SET synchronous_standby_names = ''")
    fetch_all(conn, "SELECT pg_reload_conf()")
    return value


class DatabaseFailoverStep:
    type_name: ClassVar[str] = "database_failover"

    def run(self, config: DatabaseFailoverConfig | dict, ctx: StepContext) -> StepResult:
        cfg = config if isinstance(config, DatabaseFailoverConfig) else DatabaseFailoverConfig.model_validate(config)
        started = time.monotonic()
        timeout = cfg.wait_writable_timeout.total_seconds()
        standby = primary = None
        try:
            try:
                standby = pg_connect(cfg.standby_conn_id, connect_timeout=CONNECT_TIMEOUT_SECONDS)
            except Exception as exc:
                raise StepFailed(f"Cannot connect to the standby '{cfg.standby_conn_id}': {error_text(exc)}") from exc
            primary_error: str | None = "no primary_conn_id configured"
            if cfg.primary_conn_id:
                try:
                    primary = pg_connect(cfg.primary_conn_id, connect_timeout=CONNECT_TIMEOUT_SECONDS)
                    primary_error = None
                except Exception as exc:
                    primary_error = error_text(exc)

            snapshot = read_snapshot(standby, primary_conn=primary, primary_error=primary_error)
            decision = decide_failover(
                snapshot, max_lag_bytes=cfg.max_lag_bytes, max_lag_seconds=cfg.max_lag_seconds
            )
            ctx.log.info("failover decision: %s", decision.sentence)
            new_primary = pg_address(cfg.standby_conn_id)
            output: dict[str, Any] = {
                "dry_run": ctx.dry_run,
                "promoted": False,
                "decision": decision.sentence,
                "lag_bytes": snapshot.lag_bytes,
                "lag_seconds": snapshot.lag_seconds,
                "lag_basis": snapshot.lag_basis,
                "previous_timeline": snapshot.timeline,
                "timeline": snapshot.timeline,
                "primary_reachable": snapshot.primary_reachable,
                "fenced": False,
                "new_primary": new_primary,
                "snapshot": snapshot.as_dict(),
            }
            if not decision.proceed:
                hint = ""
                if decision.reason == "not_in_recovery" and ctx.try_number > 1:
                    hint = " (an earlier try of this step may have promoted it already: check it before retrying)"
                raise StepFailed(("Dry run: " if ctx.dry_run else "") + decision.sentence + hint)

            will_fence = cfg.fence_old_primary and snapshot.primary_reachable
            if ctx.dry_run:
                output["duration_seconds"] = round(time.monotonic() - started, 3)
                fence_text = "fence the old primary, then " if will_fence else ""
                return StepResult(
                    output=output,
                    sentence=f"Dry run: would {fence_text}promote {new_primary}. {decision.sentence}",
                )

            notes: list[str] = []
            fence = None
            if will_fence:
                try:
                    fence = fence_primary(primary)
                except Exception as exc:
                    if self._still_reachable(cfg.primary_conn_id):
                        raise StepFailed(
                            f"Could not fence the old primary '{cfg.primary_conn_id}', which still answers: "
                            f"{error_text(exc)}. Not promoting: two writable primaries would split the data."
                        ) from exc
                    notes.append(f"the old primary went away while being fenced ({error_text(exc)}); fencing skipped")
            elif cfg.fence_old_primary:
                notes.append(f"fencing skipped: the old primary is unreachable ({snapshot.primary_error})")
            elif snapshot.primary_reachable:
                notes.append("the old primary was NOT fenced (fence_old_primary: false) and still accepts writes")
            output["fenced"] = fence is not None
            output["fence"] = fence.as_dict() if fence else None
            if fence is not None:
                notes.append(fence.sentence)
                caught_up, replay_lsn = wait_replayed(standby, target_lsn=fence.final_lsn, timeout=timeout)
                output["caught_up"] = caught_up
                output["replay_lsn_at_promotion"] = replay_lsn
                if not caught_up:
                    notes.append(
                        f"the standby had replayed only up to {replay_lsn} of the old primary's final "
                        f"{fence.final_lsn} after {timeout:g} s; promoting anyway (within the lag limit)"
                    )

            try:
                output["promote_seconds"] = round(promote(standby, wait_seconds=max(1, int(timeout))), 3)
            except FailoverError as exc:
                raise StepFailed(f"Promotion of {new_primary} failed: {exc}") from exc
            output["promoted"] = True
            if cfg.synchronous_standby_names_reset:
                cleared = _reset_synchronous_standby_names(standby)
                output["synchronous_standby_names_cleared"] = cleared
                if cleared:
                    notes.append(f"cleared synchronous_standby_names ('{cleared}') on the new primary")
            if clear_fence(standby):
                notes.append("reset an inherited default_transaction_read_only on the new primary")

            try:
                writable = wait_writable(
                    lambda: pg_connect(cfg.standby_conn_id, connect_timeout=CONNECT_TIMEOUT_SECONDS),
                    timeout=timeout,
                )
            except FailoverError as exc:
                raise StepFailed(f"{new_primary} was promoted but {exc}") from exc
            output["writable_seconds"] = round(writable, 3)
            output["timeline"] = current_timeline(standby)
            output["duration_seconds"] = round(time.monotonic() - started, 3)
            sentence = (
                f"Promoted {new_primary} to primary on timeline {output['timeline']} (was "
                f"{snapshot.timeline}); it accepted writes {output['duration_seconds']:.2f} s after the step "
                f"started, with {snapshot.lag_bytes if snapshot.lag_bytes is not None else 'unknown'} bytes of lag"
                f" at the decision."
            )
            if notes:
                sentence += " " + "; ".join(n.rstrip(".") for n in notes) + "."
            return StepResult(output=output, sentence=sentence)
        finally:
            _close(primary)
            _close(standby)

    @staticmethod
    def _still_reachable(conn_id: str) -> bool:
        conn = None
        try:
            conn = pg_connect(conn_id, connect_timeout=CONNECT_TIMEOUT_SECONDS)
            fetch_one(conn, "SELECT 1")
            return True
        except Exception:
            return False
        finally:
            _close(conn)
