"""The data sources to back up (``include/backups.yaml``): the model and its loader. Pure: no Airflow.

Each source names an Airflow postgres connection, a method (``physical``: pg_basebackup, stored as
``binary``; ``logical``: pg_dump, stored as ``sql_dump``), a cron schedule, compression, WAL archiving,
a retention policy, a freshness limit, a storage target and class, the Airflow connection holding the
encryption key (never the key itself), verification options and notification channels.

A relative local storage path is relative to ``$DR_BACKUP_ROOT``; without it, to the lab folder
(``$DR_LAB_HOME``, default ``.lab`` in the repository): the lab's ``path: backups`` is ``.lab/backups``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StrictInt, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from disaster_recovery.plans.language.base import Loc, PlanModel, raise_problems
from disaster_recovery.plans.language.channels import Channel
from disaster_recovery.plans.language.durations import PositiveDuration
from disaster_recovery.plans.language.names import ClusterRef, ConnId, NamePattern, SourceName
from disaster_recovery.plans.reading.problems import PlanValidationError, problems_from_validation_error
from disaster_recovery.plans.reading.yaml_reader import read_yaml_file
from disaster_recovery.plans.rules.secret_keys import looks_like_secret_key

from .retention import RetentionPolicy

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SOURCES_FILE = REPO / "include" / "backups.yaml"
BACKUP_ROOT_ENV = "DR_BACKUP_ROOT"


def backup_root(environ: Mapping[str, str] | None = None) -> Path:
    """What relative local storage paths are relative to: $DR_BACKUP_ROOT, else $DR_LAB_HOME, else <repo>/.lab."""
    env = os.environ if environ is None else environ
    return Path(env.get(BACKUP_ROOT_ENV) or env.get("DR_LAB_HOME") or REPO / ".lab")


# --- vocabularies -------------------------------------------------------------------------------------


class BackupMethod(StrEnum):
    PHYSICAL = "physical"  # pg_basebackup
    LOGICAL = "logical"  # pg_dump


class BackupType(StrEnum):
    """The scheduled kinds (the catalog's backup_type_enum also has the WAL kinds)."""

    FULL = "full"
    INCREMENTAL = "incremental"
    DIFFERENTIAL = "differential"


class BackupFormat(StrEnum):
    """The catalog's backup_format_enum values a source produces."""

    BINARY = "binary"
    SQL_DUMP = "sql_dump"


class CompressionAlgorithm(StrEnum):
    ZSTD = "zstd"
    NONE = "none"


class CompressionWhere(StrEnum):
    SERVER = "server"  # by PostgreSQL (pg_basebackup --compress=server-zstd)
    CLIENT = "client"  # by the PostgreSQL client tool (pg_basebackup/pg_dump --compress)
    PIPELINE = "pipeline"  # by our streaming pipeline


class LogicalFormat(StrEnum):
    CUSTOM = "custom"
    DIRECTORY = "directory"


class StorageClass(StrEnum):
    STANDARD = "standard"
    INFREQUENT_ACCESS = "infrequent_access"
    ARCHIVE = "archive"
    DEEP_ARCHIVE = "deep_archive"


class AccessFrequency(StrEnum):
    FREQUENT = "frequent"
    INFREQUENT = "infrequent"
    RARE = "rare"
    ARCHIVE = "archive"


class BackupEvent(StrEnum):
    """Moments of a source's backup life at which its channels are notified."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    VERIFIED = "verified"
    CORRUPTED = "corrupted"
    STALE = "stale"  # the freshness limit is exceeded


# --- cron ---------------------------------------------------------------------------------------------

CRON_PRESETS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_ITEM = re.compile(r"^(?P<range>\*|\?|[0-9a-z]+(?:-[0-9a-z]+)?)(?:/(?P<step>[0-9]+))?$")


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name_value: int = 0

    def value(self, text: str) -> int | None:
        if text.isdigit():
            return int(text)
        return self.names.index(text) + self.first_name_value if text in self.names else None


_CRON_FIELDS = (
    _CronField("minute", 0, 59),
    _CronField("hour", 0, 23),
    _CronField("day of month", 1, 31),
    _CronField("month", 1, 12, _MONTHS, 1),
    _CronField("day of week", 0, 7, _DAYS, 0),
)


def cron_problem(text: str) -> str | None:
    """Why ``text`` is not a 5-field cron expression or an ``@daily``-style preset (None when it is)."""
    cleaned = text.strip().lower()
    if cleaned.startswith("@"):
        return (
            None
            if cleaned in CRON_PRESETS
            else f"unknown preset {text.strip()!r}; use one of {', '.join(CRON_PRESETS)}"
        )
    parts = cleaned.split()
    if len(parts) != len(_CRON_FIELDS):
        return f"a cron schedule has 5 fields (minute hour day-of-month month day-of-week), this has {len(parts)}"
    for part, spec in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            problem = _cron_item_problem(item, spec)
            if problem:
                return problem
    return None


def _cron_item_problem(item: str, spec: _CronField) -> str | None:
    match = _CRON_ITEM.match(item)
    if match is None:
        return f"{spec.name} {item!r} is not a number, name, range, list or step"
    if match["step"] is not None and int(match["step"]) == 0:
        return f"{spec.name} step must be at least 1"
    if match["range"] == "?":
        return None if spec.name.startswith("day of") else f"'?' is only allowed for the day fields, not {spec.name}"
    if match["range"] == "*":
        return None
    bounds = match["range"].split("-")
    values = [spec.value(bound) for bound in bounds]
    for bound, value in zip(bounds, values, strict=True):
        if value is None:
            return f"{spec.name} {bound!r} is not a number{' or a name such as ' + spec.names[0] if spec.names else ''}"
        if not spec.low <= value <= spec.high:
            return f"{spec.name} {bound!r} is outside {spec.low}-{spec.high}"
    if len(values) == 2 and values[0] > values[1]:
        return f"{spec.name} range {match['range']!r} runs backwards"
    return None


def _check_cron(value: str) -> str:
    problem = cron_problem(value)
    if problem:
        raise PydanticCustomError("plan_rule", f"invalid cron schedule {value!r}: {problem}")
    return value.strip()


CronSchedule = Annotated[str, AfterValidator(_check_cron)]
"""A 5-field cron expression (``0 2 * * *``) or a preset such as ``@daily``."""


# --- models -------------------------------------------------------------------------------------------


def _secret_message(key: str, conn_fields: list[str]) -> str:
    where = f" in {', '.join(repr(f) for f in conn_fields)}" if conn_fields else ""
    return (
        f"key {key!r} looks like a secret; secrets never go in backups.yaml: store them in an "
        f"Airflow connection and name its id{where}"
    )


class BackupModel(PlanModel):
    """Frozen, no unknown keys, and a secret-looking key is refused with the reason."""

    @classmethod
    def _unknown_key_message(cls, key: object) -> str:
        if isinstance(key, str) and looks_like_secret_key(key):
            return _secret_message(key, [f for f in cls.model_fields if f.endswith("conn_id")])
        return super()._unknown_key_message(key)


class Compression(BackupModel):
    algorithm: CompressionAlgorithm = CompressionAlgorithm.ZSTD
    level: StrictInt = Field(3, ge=1, le=19)
    workers: StrictInt = Field(2, ge=1, le=64, description="zstd threads")
    where: CompressionWhere | None = Field(None, description="default: server for physical, pipeline for logical")


class LogicalOptions(BackupModel):
    format: LogicalFormat = LogicalFormat.CUSTOM
    jobs: StrictInt = Field(
        1, ge=1, le=64, description="parallel jobs: pg_restore -j (both formats), pg_dump -j (directory format)"
    )


class WalArchiving(BackupModel):
    enabled: bool = False


class Freshness(BackupModel):
    max_age: PositiveDuration = Field(description="alert when the newest verified backup is older, e.g. '26h'")


def _relative_parts_ok(value: str, what: str) -> str:
    if ".." in value.split("/"):
        raise PydanticCustomError("invalid_path", f"{what} {value!r} may not contain '..'")
    return value


class LocalStorage(BackupModel):
    kind: Literal["local"]
    path: str = Field(min_length=1, description="a folder; relative paths are relative to $DR_BACKUP_ROOT")

    @field_validator("path")
    @classmethod
    def _path_ok(cls, value: str) -> str:
        return _relative_parts_ok(value, "path")

    def resolve(self, root: Path | None = None) -> Path:
        """The absolute folder: ``path`` itself, or ``path`` under ``root`` (default: ``backup_root()``)."""
        path = Path(self.path)
        return path if path.is_absolute() else (root or backup_root()) / path


BucketName = Annotated[
    str,
    NamePattern(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", max_length=63, what="an S3 bucket name (3-63 of a-z 0-9 . -)"),
]


class S3Storage(BackupModel):
    kind: Literal["s3"]
    bucket: BucketName
    prefix: str = Field("", description="key prefix inside the bucket, without a leading '/'")
    aws_conn_id: ConnId = "aws_default"

    @field_validator("prefix")
    @classmethod
    def _prefix_ok(cls, value: str) -> str:
        if value.startswith("/"):
            raise PydanticCustomError("invalid_path", f"prefix {value!r} may not start with '/'")
        return _relative_parts_ok(value, "prefix")


Storage = Annotated[LocalStorage | S3Storage, Field(discriminator="kind")]

_HEX_KEY = re.compile(r"^[0-9A-Fa-f]{32,}$")
_BASE64_KEY = re.compile(r"^[A-Za-z0-9+/]{32,}={0,2}$")


def _looks_like_key_material(value: str) -> bool:
    if _HEX_KEY.match(value):
        return True
    mixed = any(c.isdigit() for c in value) and any(c.isupper() for c in value) and any(c.islower() for c in value)
    return bool(_BASE64_KEY.match(value)) and mixed


class Encryption(BackupModel):
    """AES-256-GCM; the key lives in an Airflow connection (or secrets backend), never in this file."""

    key_conn_id: ConnId = Field(description="Airflow connection whose password holds the key")

    @field_validator("key_conn_id", mode="before")
    @classmethod
    def _not_a_key(cls, value: Any) -> Any:
        if isinstance(value, str) and _looks_like_key_material(value):
            raise PydanticCustomError(
                "plan_rule",
                "this looks like a key, not a connection id: keys never go in backups.yaml; "
                "store it in an Airflow connection and name that connection here",
            )
        return value

    @classmethod
    def _unknown_key_message(cls, key: object) -> str:
        if isinstance(key, str) and "key" in key.lower():
            return _secret_message(key, ["key_conn_id"])
        return super()._unknown_key_message(key)


Port = Annotated[StrictInt, Field(ge=1024, le=65535)]


class VerifyOptions(BackupModel):
    restore_test: bool = Field(True, description="restore each backup into a scratch cluster")
    amcheck: bool = Field(True, description="run pg_amcheck on the restored scratch cluster")
    scratch_port_range: tuple[Port, Port] | None = Field(None, description="[low, high] ports for scratch clusters")

    @field_validator("scratch_port_range")
    @classmethod
    def _ordered(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and value[0] > value[1]:
            raise PydanticCustomError("plan_rule", f"port range {list(value)} runs backwards")
        return value


class BackupNotifications(BackupModel):
    channels: tuple[Channel, ...] = ()
    events: tuple[BackupEvent, ...] = (BackupEvent.FAILED, BackupEvent.CORRUPTED, BackupEvent.STALE)


class Source(BackupModel):
    """One data source to back up; its DAG is ``dr_backup__<name>``."""

    name: SourceName
    description: str = ""
    conn_id: ConnId | None = Field(None, description="Airflow postgres connection of the server to back up")
    cluster: ClusterRef | None = Field(
        None, description="a cluster of include/clusters.yaml: back up its current primary (follows failovers)"
    )
    method: BackupMethod
    backup_type: BackupType = BackupType.FULL
    schedule: CronSchedule
    compression: Compression = Compression()
    logical: LogicalOptions | None = Field(None, description="pg_dump options (method logical only)")
    wal_archiving: WalArchiving = WalArchiving()
    retention: RetentionPolicy
    freshness: Freshness
    storage: Storage
    storage_class: StorageClass = StorageClass.STANDARD
    access_frequency: AccessFrequency = AccessFrequency.FREQUENT
    encryption: Encryption
    verify: VerifyOptions = VerifyOptions()
    notifications: BackupNotifications = BackupNotifications()

    @model_validator(mode="after")
    def _check_method(self) -> Source:
        raise_problems(type(self).__name__, self._method_problems())
        return self

    def _method_problems(self) -> list[tuple[Loc, str, Any]]:
        if (self.conn_id is None) == (self.cluster is None):
            return [(("conn_id",), "give exactly one of 'conn_id' or 'cluster'", self.conn_id)]
        if self.method is BackupMethod.PHYSICAL:
            if self.logical is not None:
                return [(("logical",), "pg_dump options need method 'logical'", None)]
            return []
        problems: list[tuple[Loc, str, Any]] = []
        if self.backup_type is not BackupType.FULL:
            problems.append((("backup_type",), "pg_dump takes only full backups; use method 'physical'", None))
        if self.wal_archiving.enabled:
            problems.append(
                (
                    ("wal_archiving", "enabled"),
                    "WAL archiving belongs to a physical source (it archives the whole server)",
                    None,
                )
            )
        if self.compression.where is CompressionWhere.SERVER:
            problems.append(
                (("compression", "where"), "pg_dump cannot compress on the server; use 'client' or 'pipeline'", None)
            )
        return problems

    # --- derived views ------------------------------------------------------------------------------

    @property
    def dag_id(self) -> str:
        return f"dr_backup__{self.name}"

    @property
    def server_words(self) -> str:
        """Where the backups come from, for documentation: a connection, or a cluster's current primary."""
        return f"the current primary of cluster `{self.cluster}`" if self.cluster else f"`{self.conn_id}`"

    @property
    def backup_format(self) -> BackupFormat:
        return BackupFormat.BINARY if self.method is BackupMethod.PHYSICAL else BackupFormat.SQL_DUMP

    @property
    def compression_where(self) -> CompressionWhere:
        if self.compression.where is not None:
            return self.compression.where
        return CompressionWhere.SERVER if self.method is BackupMethod.PHYSICAL else CompressionWhere.PIPELINE

    @property
    def compression_type(self) -> str | None:
        """The catalog's compression_type text, e.g. ``zstd:3``; None when uncompressed."""
        if self.compression.algorithm is CompressionAlgorithm.NONE:
            return None
        return f"{self.compression.algorithm.value}:{self.compression.level}"

    @property
    def logical_options(self) -> LogicalOptions:
        return self.logical or LogicalOptions()


# --- loading ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceProblem:
    """One problem in a sources file, naming the file, the source (if known) and the field."""

    file: str
    source: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [f"{self.file}:"]
        if self.source is not None:
            parts.append(f"source {self.source!r}")
        if self.field:
            parts.append(f"field {self.field!r}:")
        elif self.source is not None:
            parts[-1] += ":"
        parts.append(self.message)
        return " ".join(parts)


class SourceValidationError(ValueError):
    """A sources file has problems; ``problems`` lists them, one line each in ``str()``."""

    def __init__(self, problems: list[SourceProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class SourceSet:
    """The valid sources of a file by name, and every problem found (one bad source hides no other)."""

    sources: dict[str, Source] = field(default_factory=dict)
    problems: list[SourceProblem] = field(default_factory=list)
    file: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def require(self, name: str) -> Source:
        """The named source; raise SourceValidationError (with this file's problems) if it is not valid."""
        if name in self.sources:
            return self.sources[name]
        missing = SourceProblem(str(self.file), name, None, "no valid source of this name")
        raise SourceValidationError([missing, *self.problems])


_TOP_KEYS = ("sources",)


def _top_level_problems(data: Any, file: str) -> list[SourceProblem]:
    if not isinstance(data, Mapping):
        kind = "nothing" if data is None else type(data).__name__
        return [SourceProblem(file, None, None, f"expected a mapping with a 'sources' list but found {kind}")]
    problems = [
        SourceProblem(file, None, str(key), f"unknown key {key!r}; allowed keys: {', '.join(_TOP_KEYS)}")
        for key in data
        if key not in _TOP_KEYS
    ]
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources:
        problems.append(SourceProblem(file, None, "sources", "needs a list of at least one source"))
    return problems


def parse_source(raw: Any, *, file: str, index: int) -> Source:
    """Validate one raw source (item ``index`` of ``sources``); raise SourceValidationError."""
    if not isinstance(raw, Mapping):
        raise SourceValidationError([SourceProblem(file, None, f"sources[{index}]", "expected a mapping of keys")])
    name = raw.get("name")
    label = name if isinstance(name, str) and name else None
    try:
        return Source.model_validate(raw)
    except ValidationError as exc:
        problems = problems_from_validation_error(exc, file=file, data=raw)
        raise SourceValidationError(
            [SourceProblem(file, label, _qualified(p.field, label=label, index=index), p.message) for p in problems]
        ) from None


def _qualified(field_path: str | None, *, label: str | None, index: int) -> str | None:
    """Fields of a source without a usable name are located by position: ``sources[2].schedule``."""
    if label is not None:
        return field_path
    return f"sources[{index}]" + (f".{field_path}" if field_path else "")


def load_sources(path: str | Path = DEFAULT_SOURCES_FILE) -> SourceSet:
    """Read and validate a sources file; duplicate names drop every holder and are reported."""
    file = str(path)
    try:
        data = read_yaml_file(path)
    except PlanValidationError as exc:
        return SourceSet(problems=[SourceProblem(file, None, None, p.message) for p in exc.problems], file=Path(path))
    problems = _top_level_problems(data, file)
    if problems:
        return SourceSet(problems=problems, file=Path(path))
    parsed: list[tuple[int, Source]] = []
    for index, raw in enumerate(data["sources"]):
        try:
            parsed.append((index, parse_source(raw, file=file, index=index)))
        except SourceValidationError as exc:
            problems.extend(exc.problems)
    sources, duplicates = _unique_sources(parsed, file)
    return SourceSet(sources=sources, problems=problems + duplicates, file=Path(path))


def _unique_sources(parsed: list[tuple[int, Source]], file: str) -> tuple[dict[str, Source], list[SourceProblem]]:
    positions: dict[str, list[int]] = {}
    for index, source in parsed:
        positions.setdefault(source.name, []).append(index)
    sources: dict[str, Source] = {}
    problems = []
    for index, source in parsed:
        holders = positions[source.name]
        if len(holders) == 1:
            sources[source.name] = source
            continue
        others = ", ".join(f"sources[{i}]" for i in holders if i != index)
        problems.append(
            SourceProblem(file, source.name, "name", f"source name {source.name!r} is also used by {others}")
        )
    return sources, problems
