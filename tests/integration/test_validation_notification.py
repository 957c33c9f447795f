"""validation and notification steps against real servers on loopback: a PostgreSQL cluster, an HTTP
server (http.server in a thread) and an SMTP sink (aiosmtpd), all stopped at the end of the module."""

from __future__ import annotations

import base64
import email
import json
import threading
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from disaster_recovery.notify import send_notice
from disaster_recovery.plans.language.channels import WebhookChannel
from disaster_recovery.postgres.cluster import free_port
from disaster_recovery.steps.base import StepContext, StepFailed
from disaster_recovery.steps.notification import NotificationStep
from disaster_recovery.steps.validation import ValidationStep, values_match
from tests.support import drop_cluster, make_cluster

pytestmark = pytest.mark.integration

BASIC = "Basic " + base64.b64encode(b"probe:s3cret-pass").decode()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output quiet
        pass

    def _answer(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        self.server.requests.append(("GET", self.path, dict(self.headers), b""))
        if self.path == "/health":
            self._answer(200, b'{"status": "ok", "db": "up"}', "application/json")
        elif self.path == "/secure":
            self._answer(200 if self.headers.get("Authorization") == BASIC else 401, b"secure area")
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._answer(404, b"no such page")

    do_HEAD = do_GET

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(("POST", self.path, dict(self.headers), body))
        self._answer(500 if self.path == "/broken" else 204)


@pytest.fixture(scope="module")
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _Sink:
    def __init__(self):
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 Message accepted"


@pytest.fixture(scope="module")
def smtp_sink():
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, sink
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def db():
    cluster = make_cluster("validation")
    cluster.query("CREATE TABLE accounts (id int PRIMARY KEY, active boolean)")
    cluster.query("INSERT INTO accounts VALUES (1, true), (2, true), (3, false)")
    yield cluster
    drop_cluster(cluster)


@pytest.fixture
def conns(monkeypatch, db, http_server, smtp_sink):
    controller, _ = smtp_sink
    http_port = http_server.server_address[1]
    monkeypatch.setenv("AIRFLOW_CONN_APP_DB", db.uri())
    monkeypatch.setenv("AIRFLOW_CONN_APP_HTTP", f"http://127.0.0.1:{http_port}")
    monkeypatch.setenv(
        "AIRFLOW_CONN_APP_HTTP_AUTH",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": http_port,
                    "login": "probe", "password": "s3cret-pass"}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_TEST",
        f"smtp://127.0.0.1:{controller.port}?disable_tls=True&disable_ssl=True"
        "&from_email=dr-bot%40example.com&retry_limit=0&timeout=5",
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DOWN",
        f"smtp://127.0.0.1:{free_port()}?disable_tls=True&disable_ssl=True"
        "&from_email=dr-bot%40example.com&retry_limit=0&timeout=2",
    )
    http_server.requests.clear()
    return f"http://127.0.0.1:{http_port}"


def _ctx(*, dry_run: bool = False, step: str = "verify") -> StepContext:
    return StepContext(plan_name="db-failover", step_name=step, dry_run=dry_run, execution_id="exec-42")


# --- validation ---------------------------------------------------------------------------------------


def test_all_checks_pass(conns, db):
    base = conns
    config = {
        "checks": [
            {"kind": "sql", "name": "active accounts", "conn_id": "app_db",
             "query": "SELECT count(*) FROM accounts WHERE active", "expected": 2},
            {"kind": "sql", "conn_id": "app_db", "query": "SELECT NOT pg_is_in_recovery()", "expected": "true"},
            {"kind": "sql", "conn_id": "app_db", "query": "SELECT version()"},
            {"kind": "tcp", "name": "db port", "host": "127.0.0.1", "port": db.port, "timeout": "2s"},
            {"kind": "http", "name": "health", "url": f"{base}/health", "expect_body_contains": '"db": "up"'},
            {"kind": "http", "http_conn_id": "app_http_auth", "endpoint": "secure", "method": "HEAD"},
            {"kind": "http", "url": f"{base}/moved", "expected_status": 200},
        ]
    }
    result = ValidationStep().run(config, _ctx())
    out = result.output
    assert out["all_passed"] is True and out["passed"] == 7 and out["failed"] == 0
    first = out["checks"][0]
    assert first == {**first, "name": "active accounts", "kind": "sql", "ok": True, "actual": 2,
                     "expected": 2, "error": None}
    assert out["checks"][1]["actual"] is True
    assert out["checks"][2]["actual"].startswith("PostgreSQL 15")
    assert out["checks"][3]["actual"] == "connected"
    assert out["checks"][4]["actual"] == {"status": 200}
    assert out["checks"][5]["name"] == "http app_http_auth:secure"
    assert all(c["duration_ms"] >= 0 for c in out["checks"])
    assert result.sentence.startswith("All 7 check(s) passed: active accounts, ")
    json.dumps(out)  # stored as output_data


def test_failed_checks_are_all_reported(conns, db):
    base = conns
    config = {
        "checks": [
            {"kind": "sql", "name": "count", "conn_id": "app_db", "query": "SELECT count(*) FROM accounts",
             "expected": 5},
            {"kind": "sql", "name": "broken sql", "conn_id": "app_db", "query": "SELECT FROM nowhere_table"},
            {"kind": "sql", "name": "empty", "conn_id": "app_db", "query": "SELECT 1 WHERE false", "expected": 1},
            {"kind": "tcp", "name": "closed port", "host": "127.0.0.1", "port": free_port(), "timeout": "1s"},
            {"kind": "http", "name": "missing page", "url": f"{base}/nope"},
            {"kind": "http", "name": "wrong body", "url": f"{base}/health", "expect_body_contains": "degraded"},
            {"kind": "http", "name": "no auth", "http_conn_id": "app_http", "endpoint": "/secure"},
            {"kind": "http", "name": "nobody home", "url": f"http://127.0.0.1:{free_port()}/x", "timeout": "1s"},
            {"kind": "tcp", "name": "fine", "host": "127.0.0.1", "port": db.port},
        ]
    }
    with pytest.raises(StepFailed) as err:
        ValidationStep().run(config, _ctx())
    message = str(err.value)
    assert message.startswith("8 of 9 check(s) failed: count: expected 5, got 3; broken sql: ")
    for name in ("empty: the query returned no rows", "closed port: cannot connect to 127.0.0.1:",
                 "missing page: HTTP 404, expected 200", "wrong body: body does not contain 'degraded'",
                 "no auth: HTTP 401", "nobody home: no answer from http://127.0.0.1:"):
        assert name in message
    assert "nowhere_table" in message
    out = err.value.output
    assert out["failed"] == 8 and out["passed"] == 1 and out["all_passed"] is False
    by_name = {c["name"]: c for c in out["checks"]}
    assert by_name["count"]["actual"] == 3 and by_name["count"]["expected"] == 5
    assert by_name["missing page"]["actual"] == {"status": 404}
    assert by_name["fine"]["ok"] is True


def test_sql_check_writes_are_rolled_back(conns, db):
    config = {"checks": [{"kind": "sql", "name": "can write", "conn_id": "app_db",
                          "query": "INSERT INTO accounts VALUES (99, true) RETURNING id", "expected": 99}]}
    assert ValidationStep().run(config, _ctx()).output["all_passed"] is True
    assert db.query("SELECT count(*) FROM accounts WHERE id = 99")[0][0] == 0


def test_sql_check_timeout(conns):
    config = {"checks": [{"kind": "sql", "name": "slow", "conn_id": "app_db", "query": "SELECT pg_sleep(5)",
                          "timeout": "1s"}]}
    with pytest.raises(StepFailed, match="slow: .*statement timeout"):
        ValidationStep().run(config, _ctx())


def test_a_dry_run_runs_every_check_for_real_and_fails_on_what_it_finds(conns, http_server):
    """Checks only read, so a dry run runs them: it is how a dry run finds a standby already promoted or
    a service that does not answer. Only a query that writes is left out (read-only transaction)."""
    base = conns
    config = {"checks": [
        {"kind": "sql", "conn_id": "app_db", "query": "SELECT 1/0"},
        {"kind": "http", "http_conn_id": "app_http", "endpoint": "health"},
        {"kind": "http", "url": f"{base}/nope"},
    ]}
    with pytest.raises(StepFailed, match=r"^Dry run: 2 of 3 check\(s\) failed: sql on app_db: DivisionByZero") as failed:
        ValidationStep().run(config, _ctx(dry_run=True))
    checks = failed.value.output["checks"]
    assert [c["ok"] for c in checks] == [False, True, False]
    assert checks[1]["target"] == f"HTTP 200 from {base}/…"
    assert len(http_server.requests) == 2

    good = {"checks": [{"kind": "sql", "conn_id": "app_db", "query": "SELECT 1", "expected": 1},
                       {"kind": "http", "http_conn_id": "app_http", "endpoint": "health"}]}
    result = ValidationStep().run(good, _ctx(dry_run=True))
    assert result.output["all_passed"] is True and result.measured
    assert result.sentence == "Dry run: All 2 check(s) passed: sql on app_db, http app_http:health."

    writes = {"checks": [{"kind": "sql", "conn_id": "app_db", "query": "CREATE TABLE dry_run_canary (x int)"},
                         {"kind": "sql", "conn_id": "app_db", "query": "SELECT 1", "expected": 1}]}
    result = ValidationStep().run(writes, _ctx(dry_run=True))
    assert result.output["all_passed"] is None and not result.measured
    assert result.output["checks"][0]["skipped"] == "the query writes; a dry run does not run writes"
    assert "Not run in a dry run (they write): sql on app_db." in result.sentence

    missing = {"checks": [{"kind": "sql", "conn_id": "no_such_conn", "query": "SELECT 1"}]}
    with pytest.raises(StepFailed, match="Dry run: 1 of 1 check.*no_such_conn"):
        ValidationStep().run(missing, _ctx(dry_run=True))


@pytest.mark.parametrize(
    ("actual", "expected", "match"),
    [(1, 1, True), (3, "3", True), (True, "true", True), (False, "t", False), ("up", "up", True),
     ("up", "down", False), (None, 0, False), (1.50, "1.5", True)],
)
def test_values_match(actual, expected, match):
    assert values_match(actual, expected) is match


# --- notification -------------------------------------------------------------------------------------


def test_notification_email_and_webhooks(conns, http_server, smtp_sink):
    _, sink = smtp_sink
    sink.envelopes.clear()
    base = conns
    config = {
        "message": "Failover of {{ plan_name }} finished (execution {{ execution_id }}).",
        "channels": [
            {"kind": "email", "smtp_conn_id": "smtp_test", "to": ["oncall@example.com", "dba@example.com"],
             "subject": "[DR] {{ plan_name }} / {{ step_name }}"},
            {"kind": "webhook", "url": f"{base}/hooks/T000/B000/token123"},
            {"kind": "webhook", "http_conn_id": "app_http_auth", "endpoint": "/ops",
             "payload": {"text": "{{ message }}", "plan": "{{ plan_name }}", "severity": "high", "n": 3}},
        ],
    }
    result = NotificationStep().run(config, _ctx(step="notify"))
    out = result.output
    assert out["delivered"] == 3 and out["failed"] == 0
    assert [d["channel"] for d in out["deliveries"]] == ["email", "webhook", "webhook"]
    assert out["deliveries"][0]["target"] == "oncall@example.com, dba@example.com"
    # the webhook URL's secret path is not in the output or the sentence
    assert out["deliveries"][1]["target"] == f"{base}/…"
    assert "token123" not in json.dumps(out) and "token123" not in result.sentence
    assert out["deliveries"][2]["target"] == "conn:app_http_auth" and out["deliveries"][2]["status_code"] == 204

    assert len(sink.envelopes) == 1
    envelope = sink.envelopes[0]
    assert envelope.mail_from == "dr-bot@example.com"
    assert sorted(envelope.rcpt_tos) == ["dba@example.com", "oncall@example.com"]
    msg = email.message_from_bytes(envelope.original_content, policy=policy.default)
    assert msg["Subject"] == "[DR] db-failover / notify"
    html_part = next(p for p in msg.walk() if p.get_content_type() == "text/html")
    assert "Failover of db-failover finished (execution exec-42)." in html_part.get_content()

    posts = [r for r in http_server.requests if r[0] == "POST"]
    assert [p[1] for p in posts] == ["/hooks/T000/B000/token123", "/ops"]
    default_payload = json.loads(posts[0][3])
    assert default_payload["message"] == "Failover of db-failover finished (execution exec-42)."
    assert default_payload["plan_name"] == "db-failover" and default_payload["execution_id"] == "exec-42"
    assert posts[0][2]["Content-Type"] == "application/json"
    assert json.loads(posts[1][3]) == {"text": "Failover of db-failover finished (execution exec-42).",
                                       "plan": "db-failover", "severity": "high", "n": 3}
    assert posts[1][2]["Authorization"] == BASIC


def test_notification_reports_failed_channels(conns, http_server, smtp_sink):
    _, sink = smtp_sink
    sink.envelopes.clear()
    base = conns
    config = {"channels": [
        {"kind": "email", "smtp_conn_id": "smtp_down", "to": ["oncall@example.com"]},
        {"kind": "webhook", "url": f"{base}/broken"},
        {"kind": "webhook", "url": f"{base}/fine"},
    ]}
    with pytest.raises(StepFailed) as err:
        NotificationStep().run(config, _ctx())
    message = str(err.value)
    assert message.startswith("2 of 3 notification channel(s) failed: email to oncall@example.com: ")
    assert "ConnectionRefusedError" in message
    assert f"webhook to {base}/…: HTTP 500 Internal Server Error" in message
    assert message.endswith("(1 other channel(s) delivered).")
    assert err.value.output["delivered"] == 1
    assert [r[1] for r in http_server.requests] == ["/broken", "/fine"]


def test_notification_dry_run_sends_nothing(conns, http_server, smtp_sink):
    _, sink = smtp_sink
    sink.envelopes.clear()
    config = {"channels": [
        {"kind": "email", "smtp_conn_id": "smtp_test", "to": ["oncall@example.com"]},
        {"kind": "webhook", "http_conn_id": "app_http", "endpoint": "ops"},
    ]}
    result = NotificationStep().run(config, _ctx(dry_run=True))
    assert result.output["delivered"] == 2 and all(d["dry_run"] for d in result.output["deliveries"])
    assert result.sentence.startswith("Dry run: would send the notice to 2 channel(s)")
    assert sink.envelopes == [] and http_server.requests == []


def test_send_notice_for_completion(conns, http_server):
    """The finalize task's use: a completion notice with its own context, no step involved."""
    channel = WebhookChannel(kind="webhook", http_conn_id="app_http", endpoint="done")
    deliveries = send_notice(
        [channel],
        context={"plan_name": "db-failover", "execution_id": "exec-42", "event": "completed",
                 "status": "completed"},
    )
    assert [d.ok for d in deliveries] == [True]
    payload = json.loads(http_server.requests[-1][3])
    assert payload["message"] == "Recovery plan 'db-failover': completed (execution exec-42)."
    assert payload["status"] == "completed" and "sent_at" in payload
