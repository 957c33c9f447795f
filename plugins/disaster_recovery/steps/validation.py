"""``validation``: run sql / tcp / http checks; all are run, and the step fails when any failed.

sql: the query runs on a PostgresHook connection in a transaction that is rolled back (a check may try
a write without leaving it), under a statement_timeout; the first column of the first row is compared
to ``expected`` (``null`` expected: the query only has to run). tcp: a connect within the timeout.
http: a GET/HEAD through httpx (a full URL, or an HTTP connection's base URL + endpoint, its login as
basic auth), with the expected status and optionally a text in the body.

A dry run runs every check for real, because checks only read: it finds a standby that is already
promoted, a service that does not answer, a connection that is missing. A sql check runs there in a
READ ONLY transaction; a query that writes (a canary insert) is skipped and says so.
"""

from __future__ import annotations

import contextlib
import socket
import time
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import httpx

from disaster_recovery.connections import http_target, pg_address, pg_connect, redact_url
from disaster_recovery.plans.language.checks import HttpCheck, SqlCheck, TcpCheck
from disaster_recovery.plans.language.step_configs import ValidationConfig
from disaster_recovery.postgres.replication import error_text
from disaster_recovery.steps.base import StepContext, StepFailed, StepResult

BODY_EXCERPT = 200
READ_ONLY_SQL_TRANSACTION = "25006"


class _WritesInDryRun(Exception):
    """A sql check's query tried to write inside a dry run's read-only transaction."""


def values_match(actual: Any, expected: Any) -> bool:
    """Equality that forgives the driver's types: 1 == Decimal('1') == '1', True == 't' == 'true'."""
    if actual == expected:
        return True
    if actual is None or expected is None:
        return False
    if isinstance(actual, bool) or isinstance(expected, bool):
        truthy = {"true", "t", "on", "yes", "1"}
        falsy = {"false", "f", "off", "no", "0"}

        def as_bool(v: Any) -> bool | None:
            if isinstance(v, bool):
                return v
            text = str(v).strip().lower()
            return True if text in truthy else False if text in falsy else None

        a, e = as_bool(actual), as_bool(expected)
        return a is not None and a == e
    try:
        return Decimal(str(actual)) == Decimal(str(expected))
    except (InvalidOperation, ValueError):
        return str(actual) == str(expected)


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


def _label(check: SqlCheck | TcpCheck | HttpCheck) -> str:
    if check.name:
        return check.name
    if isinstance(check, SqlCheck):
        return f"sql on {check.target_words}"
    if isinstance(check, TcpCheck):
        return f"tcp {check.host}:{check.port}"
    return f"http {check.http_conn_id + ':' + check.endpoint if check.http_conn_id else redact_url(check.url or '')}"


def _sql_target(check: SqlCheck) -> tuple[str, str | None]:
    """(connection id, database or None) a sql check runs on; a cluster's role is found now."""
    if check.cluster is None:
        return str(check.conn_id), None
    from disaster_recovery.clusters.access import require_cluster, resolve_role

    return resolve_role(check.cluster, check.role), require_cluster(check.cluster).database


class ValidationStep:
    type_name: ClassVar[str] = "validation"

    def run(self, config: ValidationConfig | dict, ctx: StepContext) -> StepResult:
        cfg = config if isinstance(config, ValidationConfig) else ValidationConfig.model_validate(config)
        results = []
        for check in cfg.checks:
            result = {
                "name": _label(check),
                "kind": check.kind,
                "ok": None,
                "actual": None,
                "expected": None,
                "duration_ms": 0.0,
                "error": None,
            }
            started = time.monotonic()
            try:
                if ctx.dry_run:
                    result["target"] = self._resolve(check)
                ok, actual, expected, error = self._run_check(check, read_only=ctx.dry_run)
                result.update(ok=ok, actual=_json_safe(actual), expected=_json_safe(expected), error=error)
            except _WritesInDryRun as exc:
                result.update(skipped=str(exc))
            except Exception as exc:
                result.update(ok=False, error=error_text(exc))
            result["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            if result["ok"] is False:
                ctx.log.warning("check %s failed: %s", result["name"], result["error"])
            results.append(result)

        failed = [r for r in results if r["ok"] is False]
        passed = [r for r in results if r["ok"] is True]
        skipped = [r for r in results if r.get("skipped")]
        output = {
            "dry_run": ctx.dry_run,
            "checks": results,
            "passed": len(passed),
            "failed": len(failed),
            "all_passed": False if failed else None if skipped else True,
        }
        prefix = "Dry run: " if ctx.dry_run else ""
        if failed:
            listing = "; ".join(f"{r['name']}: {r['error']}" for r in failed)
            raise StepFailed(f"{prefix}{len(failed)} of {len(results)} check(s) failed: {listing}.", output=output)
        sentence = (f"{prefix}{'All ' if not skipped else ''}{len(passed)} check(s) passed: "
                    + ", ".join(r["name"] for r in passed) + ".")
        if skipped:
            sentence += f" Not run in a dry run (they write): {', '.join(r['name'] for r in skipped)}."
        return StepResult(output=output, sentence=sentence, measured=not skipped)

    # -- dry run: where each check would go ---------------------------------------------------------
    @staticmethod
    def _resolve(check: SqlCheck | TcpCheck | HttpCheck) -> str:
        if isinstance(check, SqlCheck):
            conn_id, database = _sql_target(check)
            where = f" ({check.target_words} now)" if check.cluster else ""
            return f"query on {conn_id} at {pg_address(conn_id)}{where}" + (f", database {database}" if database else "")
        if isinstance(check, TcpCheck):
            return f"connect to {check.host}:{check.port}"
        url = http_target(check.http_conn_id, check.endpoint)[0] if check.http_conn_id else check.url
        return f"HTTP {check.expected_status} from {redact_url(url or '')}"

    # -- the checks ---------------------------------------------------------------------------------
    def _run_check(self, check: SqlCheck | TcpCheck | HttpCheck, *, read_only: bool) -> tuple[bool, Any, Any, str | None]:
        if isinstance(check, SqlCheck):
            return self._sql(check, read_only=read_only)
        if isinstance(check, TcpCheck):
            return self._tcp(check)
        return self._http(check)

    @staticmethod
    def _sql(check: SqlCheck, *, read_only: bool = False) -> tuple[bool, Any, Any, str | None]:
        timeout = check.timeout.total_seconds()
        conn_id, database = _sql_target(check)
        conn = pg_connect(conn_id, connect_timeout=timeout, autocommit=False, database=database)
        try:
            cur = conn.cursor()
            if read_only:
                cur.execute("SET TRANSACTION READ ONLY")
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout * 1000)}ms",))
            try:
                cur.execute(check.query)
            except Exception as exc:
                code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)  # psycopg 3 or psycopg2
                if read_only and code == READ_ONLY_SQL_TRANSACTION:
                    raise _WritesInDryRun("the query writes; a dry run does not run writes") from None
                raise
            row = cur.fetchone() if cur.description else None
            cur.close()
        finally:
            with contextlib.suppress(Exception):
                conn.rollback()
            conn.close()
        actual = row[0] if row else None
        if check.expected is None:
            return True, actual, None, None
        if row is None:
            return False, None, check.expected, "the query returned no rows"
        if values_match(actual, check.expected):
            return True, actual, check.expected, None
        return False, actual, check.expected, f"expected {check.expected!r}, got {_json_safe(actual)!r}"

    @staticmethod
    def _tcp(check: TcpCheck) -> tuple[bool, Any, Any, str | None]:
        expected = f"{check.host}:{check.port} accepts connections"
        try:
            with socket.create_connection((check.host, check.port), timeout=check.timeout.total_seconds()):
                return True, "connected", expected, None
        except OSError as exc:
            return False, "not connected", expected, f"cannot connect to {check.host}:{check.port}: {error_text(exc)}"

    @staticmethod
    def _http(check: HttpCheck) -> tuple[bool, Any, Any, str | None]:
        if check.http_conn_id:
            url, auth, headers = http_target(check.http_conn_id, check.endpoint)
        else:
            url, auth, headers = check.url or "", None, {}
        expected: dict[str, Any] = {"status": check.expected_status}
        if check.expect_body_contains is not None:
            expected["body_contains"] = check.expect_body_contains
        try:
            with httpx.Client(timeout=check.timeout.total_seconds(), follow_redirects=True) as client:
                response = client.request(check.method, url, headers=headers, auth=auth)
        except httpx.HTTPError as exc:
            error = error_text(exc).replace(url, redact_url(url))
            return False, None, expected, f"no answer from {redact_url(url)}: {error}"
        actual = {"status": response.status_code}
        if response.status_code != check.expected_status:
            return False, actual, expected, f"HTTP {response.status_code}, expected {check.expected_status}"
        if check.expect_body_contains is not None and check.expect_body_contains not in response.text:
            excerpt = " ".join(response.text[:BODY_EXCERPT].split())
            return False, actual, expected, f"body does not contain {check.expect_body_contains!r} (starts: {excerpt!r})"
        return True, actual, expected, None
