"""include/backups.yaml: the lab's sources load, and every bad input names file, source and field."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from disaster_recovery.backups.retention import RetentionPolicy
from disaster_recovery.backups.sources import (
    DEFAULT_SOURCES_FILE,
    BackupFormat,
    BackupMethod,
    CompressionWhere,
    LocalStorage,
    S3Storage,
    SourceProblem,
    SourceValidationError,
    backup_root,
    cron_problem,
    load_sources,
)
from disaster_recovery.plans.language.channels import EmailChannel, WebhookChannel

REPO = Path(__file__).resolve().parents[2]


def physical(**changes: Any) -> dict[str, Any]:
    source = {
        "name": "main",
        "conn_id": "pg_main",
        "method": "physical",
        "schedule": "0 2 * * *",
        "retention": {"keep_last": 7},
        "freshness": {"max_age": "26h"},
        "storage": {"kind": "local", "path": "backups"},
        "encryption": {"key_conn_id": "dr_backup_key"},
    }
    source.update(copy.deepcopy(changes))
    return source


def logical(**changes: Any) -> dict[str, Any]:
    return physical(name="dump", method="logical", **changes)


def write(tmp_path: Path, data: Any, text: str | None = None) -> Path:
    path = tmp_path / "backups.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def only_problem(tmp_path: Path, *sources: dict[str, Any]) -> SourceProblem:
    path = write(tmp_path, {"sources": list(sources)})
    result = load_sources(path)
    assert len(result.problems) == 1, result.problems
    problem = result.problems[0]
    assert problem.file == str(path)
    return problem


# --- the lab's file -------------------------------------------------------------------------------------


def test_the_lab_sources_load():
    assert DEFAULT_SOURCES_FILE == REPO / "include" / "backups.yaml"
    result = load_sources()
    assert result.ok, "\n".join(str(p) for p in result.problems)
    assert list(result.sources) == ["wedsync", "wedsync_logical"]

    wedsync = result.sources["wedsync"]
    assert wedsync.dag_id == "dr_backup__wedsync"
    assert (wedsync.cluster, wedsync.conn_id, wedsync.method, wedsync.backup_format) == (
        "wedsync",
        None,
        BackupMethod.PHYSICAL,
        BackupFormat.BINARY,
    )
    assert wedsync.schedule == "0 2 * * *"
    assert (wedsync.compression.level, wedsync.compression.workers) == (3, 2)
    assert wedsync.compression_where is CompressionWhere.SERVER
    assert wedsync.compression_type == "zstd:3"
    assert wedsync.wal_archiving.enabled
    assert wedsync.retention == RetentionPolicy(keep_last=7, keep_daily=7, keep_weekly=4, keep_monthly=6)
    assert wedsync.freshness.max_age == timedelta(hours=26)
    assert wedsync.storage == LocalStorage(kind="local", path="backups")
    assert wedsync.storage_class == "standard"
    assert wedsync.encryption.key_conn_id == "dr_backup_key"
    assert wedsync.verify.restore_test and wedsync.verify.amcheck
    assert [type(c) for c in wedsync.notifications.channels] == [WebhookChannel, EmailChannel]

    dump = result.sources["wedsync_logical"]
    assert (dump.method, dump.backup_format) == (BackupMethod.LOGICAL, BackupFormat.SQL_DUMP)
    assert (dump.logical_options.format, dump.logical_options.jobs) == ("custom", 2)
    assert dump.retention.document() == {"keep_last": 4}
    assert cron_problem(dump.schedule) is None
    assert result.require("wedsync") is wedsync


def test_relative_local_paths_resolve_against_the_backup_root(tmp_path):
    storage = LocalStorage(kind="local", path="backups")
    assert storage.resolve(tmp_path) == tmp_path / "backups"
    assert LocalStorage(kind="local", path="/srv/backups").resolve(tmp_path) == Path("/srv/backups")
    assert backup_root({"DR_BACKUP_ROOT": "/data/dr"}) == Path("/data/dr")
    assert backup_root({"DR_LAB_HOME": "/tmp/lab"}) == Path("/tmp/lab")
    assert backup_root({}) == REPO / ".lab"


def test_defaults_and_s3(tmp_path):
    s3 = {"kind": "s3", "bucket": "dr-backups", "prefix": "wedsync/nightly"}
    path = write(tmp_path, {"sources": [logical(storage=s3, retention={"recovery_window": "14d"})]})
    result = load_sources(path)
    assert result.ok, result.problems
    source = result.sources["dump"]
    assert source.storage == S3Storage(kind="s3", bucket="dr-backups", prefix="wedsync/nightly")
    assert source.storage.aws_conn_id == "aws_default"
    assert source.compression_where is CompressionWhere.PIPELINE
    assert source.logical_options.format == "custom"
    assert source.retention.recovery_window == timedelta(days=14)
    assert source.backup_type == "full"
    assert [e.value for e in source.notifications.events] == ["failed", "corrupted", "stale"]


def test_incremental_is_accepted_by_the_model(tmp_path):
    path = write(tmp_path, {"sources": [physical(backup_type="incremental", schedule="@hourly")]})
    assert load_sources(path).sources["main"].backup_type == "incremental"


# --- bad input ------------------------------------------------------------------------------------------

CASES = [
    # (id, source data, source named in the problem, field, message fragment)
    ("unknown key", physical(retension={"keep_last": 3}), "main", "retension", "did you mean 'retention'?"),
    ("bad cron hour", physical(schedule="0 25 * * *"), "main", "schedule", "hour '25' is outside 0-23"),
    ("cron field count", physical(schedule="0 2 * *"), "main", "schedule", "has 5 fields"),
    ("cron backwards range", physical(schedule="0 2 * * fri-mon"), "main", "schedule", "runs backwards"),
    (
        "cron junk",
        physical(schedule="0 2 * * every"),
        "main",
        "schedule",
        "day of week 'every' is not a number or a name such as sun",
    ),
    ("cron zero step", physical(schedule="*/0 * * * *"), "main", "schedule", "step must be at least 1"),
    ("cron preset", physical(schedule="@daly"), "main", "schedule", "unknown preset '@daly'"),
    ("no retention rule", physical(retention={}), "main", "retention", "give at least one retention rule"),
    ("no retention", {k: v for k, v in physical().items() if k != "retention"}, "main", "retention", "missing"),
    (
        "negative keep",
        physical(retention={"keep_daily": -1}),
        "main",
        "retention.keep_daily",
        "greater than or equal to 0 (got -1)",
    ),
    (
        "bad window",
        physical(retention={"recovery_window": "2 weeks"}),
        "main",
        "retention.recovery_window",
        "invalid duration",
    ),
    (
        "bad duration",
        physical(freshness={"max_age": "26 hours"}),
        "main",
        "freshness.max_age",
        "invalid duration '26 hours'",
    ),
    ("bare number duration", physical(freshness={"max_age": 26}), "main", "freshness.max_age", "has no unit"),
    ("zero duration", physical(freshness={"max_age": "0s"}), "main", "freshness.max_age", "greater than zero"),
    (
        "key literal key",
        physical(encryption={"key_conn_id": "k", "key": "c2VjcmV0"}),
        "main",
        "encryption.key",
        "secrets never go in backups.yaml",
    ),
    (
        "key literal value",
        physical(encryption={"key_conn_id": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}),
        "main",
        "encryption.key_conn_id",
        "looks like a key, not a connection id",
    ),
    (
        "base64 key value",
        physical(encryption={"key_conn_id": "q83vEjRWeJq8Xk1Lm9Op2Qr3St4Uv5Wx6Yz7Ab8Cd9E="}),
        "main",
        "encryption.key_conn_id",
        "looks like a key",
    ),
    (
        "secret in storage",
        physical(storage={"kind": "s3", "bucket": "dr-backups", "aws_secret_access_key": "x"}),
        "main",
        "storage.aws_secret_access_key",
        "name its id in 'aws_conn_id'",
    ),
    ("password at source level", physical(password="x"), "main", "password", "looks like a secret"),
    ("no encryption", {k: v for k, v in physical().items() if k != "encryption"}, "main", "encryption", "missing"),
    ("bad method", physical(method="snapshot"), "main", "method", "'physical' or 'logical'"),
    ("bad backup type", physical(backup_type="transaction_log"), "main", "backup_type", "'full', 'incremental'"),
    ("logical incremental", logical(backup_type="incremental"), "dump", "backup_type", "pg_dump takes only full"),
    ("logical wal", logical(wal_archiving={"enabled": True}), "dump", "wal_archiving.enabled", "physical source"),
    ("logical server compression", logical(compression={"where": "server"}), "dump", "compression.where", "'pipeline'"),
    ("physical with pg_dump options", physical(logical={"jobs": 2}), "main", "logical", "need method 'logical'"),
    ("bad logical format", logical(logical={"format": "tar"}), "dump", "logical.format", "'custom' or 'directory'"),
    (
        "compression level",
        physical(compression={"level": 25}),
        "main",
        "compression.level",
        "less than or equal to 19 (got 25)",
    ),
    ("compression algorithm", physical(compression={"algorithm": "gzip"}), "main", "compression.algorithm", "'zstd'"),
    ("storage kind", physical(storage={"kind": "ftp", "path": "x"}), "main", "storage.kind", "unknown kind 'ftp'"),
    ("storage without kind", physical(storage={"path": "x"}), "main", "storage.kind", "required key is missing"),
    ("bucket", physical(storage={"kind": "s3", "bucket": "My_Bucket"}), "main", "storage.bucket", "S3 bucket name"),
    ("prefix", physical(storage={"kind": "s3", "bucket": "b-1", "prefix": "/x"}), "main", "storage.prefix", "'/'"),
    ("dotdot", physical(storage={"kind": "local", "path": "../elsewhere"}), "main", "storage.path", "'..'"),
    ("storage class", physical(storage_class="glacier"), "main", "storage_class", "'standard'"),
    ("access frequency", physical(access_frequency="daily"), "main", "access_frequency", "'frequent'"),
    ("conn id", physical(conn_id="pg main"), "main", "conn_id", "not an Airflow connection id"),
    (
        "port range",
        physical(verify={"scratch_port_range": [56000, 55000]}),
        "main",
        "verify.scratch_port_range",
        "backwards",
    ),
    (
        "port",
        physical(verify={"scratch_port_range": [80, 55000]}),
        "main",
        "verify.scratch_port_range[0]",
        "greater than or equal to 1024",
    ),
    (
        "channel",
        physical(notifications={"channels": [{"kind": "email", "to": []}]}),
        "main",
        "notifications.channels[0].to",
        "at least 1",
    ),
    ("event", physical(notifications={"events": ["exploded"]}), "main", "notifications.events[0]", "'stale'"),
    ("bad name", physical(name="Main DB"), "Main DB", "name", "not a valid data source name"),
]


@pytest.mark.parametrize(("data", "source", "field", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_source_names_file_source_and_field(tmp_path, data, source, field, fragment):
    problem = only_problem(tmp_path, data)
    assert (problem.source, problem.field) == (source, field), str(problem)
    assert fragment in problem.message, str(problem)
    assert str(problem) == f"{problem.file}: source {source!r} field {field!r}: {problem.message}"


def test_one_bad_source_hides_no_other(tmp_path):
    path = write(tmp_path, {"sources": [physical(schedule="nightly"), logical()]})
    result = load_sources(path)
    assert list(result.sources) == ["dump"]
    assert [(p.source, p.field) for p in result.problems] == [("main", "schedule")]
    with pytest.raises(SourceValidationError, match="source 'main': no valid source of this name"):
        result.require("main")


def test_duplicate_names_drop_every_holder(tmp_path):
    path = write(tmp_path, {"sources": [physical(), logical(), physical(conn_id="other")]})
    result = load_sources(path)
    assert list(result.sources) == ["dump"]
    assert [(p.source, p.field, p.message) for p in result.problems] == [
        ("main", "name", "source name 'main' is also used by sources[2]"),
        ("main", "name", "source name 'main' is also used by sources[0]"),
    ]


def test_a_source_without_a_name_is_located_by_position(tmp_path):
    nameless = {k: v for k, v in physical().items() if k != "name"}
    path = write(tmp_path, {"sources": [logical(), nameless, "just text"]})
    problems = load_sources(path).problems
    assert [(p.source, p.field, p.message) for p in problems] == [
        (None, "sources[1].name", "required key is missing"),
        (None, "sources[2]", "expected a mapping of keys"),
    ]
    assert str(problems[0]) == f"{path}: field 'sources[1].name': required key is missing"


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("sources: []\n", "sources", "at least one source"),
        ("{}\n", "sources", "at least one source"),
        ("- a\n", None, "expected a mapping with a 'sources' list but found list"),
        ("", None, "found nothing"),
        ("sources: [{name: a}]\ndefaults: {}\n", "defaults", "unknown key 'defaults'; allowed keys: sources"),
        ("sources:\n  - name: a\n    name: b\n", None, "duplicate key 'name'"),
        ("sources: [\n", None, "invalid YAML at line"),
    ],
)
def test_bad_file_shape(tmp_path, text, field, fragment):
    path = write(tmp_path, None, text)
    result = load_sources(path)
    assert not result.ok and not result.sources
    assert any(p.field == field and fragment in p.message and p.file == str(path) for p in result.problems), (
        result.problems
    )


def test_missing_file(tmp_path):
    result = load_sources(tmp_path / "nope.yaml")
    assert [p.message.split(":")[0] for p in result.problems] == ["cannot read the file"]


@pytest.mark.parametrize(
    "cron",
    [
        "0 2 * * *",
        "*/15 * * * *",
        "0 2 * * mon-fri",
        "0 0 1 jan,jul *",
        "0 3 * * 0",
        "0 3 * * 7",
        "5,35 8-18/2 1-15 * ?",
        "@daily",
        " @Weekly ",
        "59 23 31 12 sat",
    ],
)
def test_valid_cron(cron):
    assert cron_problem(cron) is None


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("60 * * * *", "minute '60' is outside 0-59"),
        ("0 0 0 * *", "day of month '0' is outside 1-31"),
        ("0 0 * 13 *", "month '13' is outside 1-12"),
        ("0 0 * * 8", "day of week '8' is outside 0-7"),
        ("? * * * *", "'?' is only allowed for the day fields"),
        ("0 0 * * * *", "this has 6"),
        ("@reboot", "unknown preset"),
        ("0 0 L * *", "day of month 'l' is not a number"),
        ("0 0 * foo *", "month 'foo' is not a number or a name such as jan"),
        ("0 0 * * 1#2", "is not a number, name, range, list or step"),
        ("", "this has 0"),
    ],
)
def test_invalid_cron(cron, fragment):
    problem = cron_problem(cron)
    assert problem is not None and fragment in problem
