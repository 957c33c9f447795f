"""Which backups to keep, and which WAL no kept backup needs. Pure: no I/O, no Airflow.

The rules follow restic's ``forget`` and pgBackRest's expiry: ``keep_last`` keeps the N newest usable
backups; ``keep_daily``/``keep_weekly``/``keep_monthly`` keep the newest backup of each of the last N
days/ISO weeks/months that have a usable backup (UTC); ``recovery_window`` keeps every usable backup
newer than ``now - window`` plus one older backup (the newest verified one, else the newest usable
one), so any moment of the window can be restored. A backup is kept when any rule keeps it.

Usable means ``verified`` or ``pending``. ``failed`` and ``corrupted`` backups are never restorable
and always expire. Whatever the policy, the newest verified backup of each source is kept.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, StrictInt, model_validator

from disaster_recovery.plans.language.base import PlanModel, raise_problems
from disaster_recovery.plans.language.durations import PositiveDuration


class BackupStatus(StrEnum):
    """A backup's verification state (the catalog's verification_status_enum)."""

    VERIFIED = "verified"
    PENDING = "pending"
    FAILED = "failed"
    CORRUPTED = "corrupted"
    EXPIRED = "expired"


USABLE_STATUSES = frozenset({BackupStatus.VERIFIED, BackupStatus.PENDING})
_UNRESTORABLE = frozenset({BackupStatus.FAILED, BackupStatus.CORRUPTED})
_COUNT_RULES = ("keep_last", "keep_daily", "keep_weekly", "keep_monthly")


class RetentionPolicy(PlanModel):
    """How many backups a source keeps; at least one rule must be given (0 is a given rule)."""

    keep_last: StrictInt | None = Field(None, ge=0, description="the N newest usable backups")
    keep_daily: StrictInt | None = Field(None, ge=0, description="the newest backup of each of the last N days")
    keep_weekly: StrictInt | None = Field(None, ge=0, description="the newest backup of each of the last N ISO weeks")
    keep_monthly: StrictInt | None = Field(None, ge=0, description="the newest backup of each of the last N months")
    recovery_window: PositiveDuration | None = Field(
        None, description="every backup of this long ago and newer stays restorable, e.g. '14d'"
    )

    @model_validator(mode="after")
    def _at_least_one_rule(self) -> RetentionPolicy:
        if all(getattr(self, name) is None for name in (*_COUNT_RULES, "recovery_window")):
            rules = ", ".join((*_COUNT_RULES, "recovery_window"))
            raise_problems(type(self).__name__, [((), f"give at least one retention rule: {rules}", None)])
        return self

    def document(self) -> dict[str, Any]:
        """The rules that are set, as JSON-ready data (the catalog's retention_policy)."""
        return self.model_dump(mode="json", exclude_none=True)

    def describe(self) -> str:
        """``keep_last 7, keep_daily 7, recovery_window 14d``."""
        return ", ".join(f"{name} {value}" for name, value in self.document().items())


@dataclass(frozen=True)
class BackupInfo:
    """What retention needs to know of one backup; ``created_at`` must carry a time zone."""

    backup_id: str
    created_at: datetime
    status: BackupStatus
    source: str

    def __post_init__(self) -> None:
        _require_aware(self.created_at, f"created_at of backup {self.backup_id!r}")
        object.__setattr__(self, "created_at", self.created_at.astimezone(UTC))
        object.__setattr__(self, "status", BackupStatus(self.status))


@dataclass(frozen=True)
class RetentionDecision:
    """Backup ids to keep and to expire (each newest first), with one reason per id."""

    keep: tuple[str, ...]
    expire: tuple[str, ...]
    reasons: dict[str, str]
    sentence: str


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} has no time zone: {value.isoformat()}")


# --- the rules ----------------------------------------------------------------------------------------

Reasons = dict[str, list[str]]


def _day(moment: datetime) -> str:
    return moment.date().isoformat()


def _iso_week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def _month(moment: datetime) -> str:
    return f"{moment.year}-{moment.month:02d}"


_BUCKET_RULES: tuple[tuple[str, Callable[[datetime], str]], ...] = (
    ("keep_daily", _day),
    ("keep_weekly", _iso_week),
    ("keep_monthly", _month),
)


def _keep_last(usable: Sequence[BackupInfo], *, count: int, reasons: Reasons) -> None:
    for position, backup in enumerate(usable[:count], start=1):
        reasons[backup.backup_id].append(f"keep_last {position}/{count}")


def _keep_buckets(
    usable: Sequence[BackupInfo], *, rule: str, bucket_of: Callable[[datetime], str], count: int, reasons: Reasons
) -> None:
    """The newest backup of each of the ``count`` newest buckets (``usable`` is newest first)."""
    seen: set[str] = set()
    for backup in usable:
        bucket = bucket_of(backup.created_at)
        if bucket in seen:
            continue
        if len(seen) == count:
            return
        seen.add(bucket)
        reasons[backup.backup_id].append(f"{rule} {bucket}")


def _keep_window(usable: Sequence[BackupInfo], *, start: datetime, reasons: Reasons) -> None:
    label = start.isoformat().replace("+00:00", "Z")
    older = [b for b in usable if b.created_at < start]
    for backup in usable:
        if backup.created_at >= start:
            reasons[backup.backup_id].append(f"recovery_window (since {label})")
    anchor = next((b for b in older if b.status is BackupStatus.VERIFIED), older[0] if older else None)
    if anchor is not None:
        reasons[anchor.backup_id].append(f"recovery_window start (newest before {label})")


def _kept_reasons(ordered: Sequence[BackupInfo], *, policy: RetentionPolicy, now: datetime) -> Reasons:
    """Reasons to keep, by backup id, for one source's backups (``ordered`` newest first)."""
    reasons: Reasons = defaultdict(list)
    usable = [b for b in ordered if b.status in USABLE_STATUSES]
    if policy.keep_last:
        _keep_last(usable, count=policy.keep_last, reasons=reasons)
    for rule, bucket_of in _BUCKET_RULES:
        count = getattr(policy, rule)
        if count:
            _keep_buckets(usable, rule=rule, bucket_of=bucket_of, count=count, reasons=reasons)
    if policy.recovery_window is not None:
        _keep_window(usable, start=now - policy.recovery_window, reasons=reasons)
    newest_verified = _newest_verified(ordered)
    if newest_verified is not None:
        reasons[newest_verified.backup_id].append("newest verified")
    return reasons


def _newest_verified(ordered: Sequence[BackupInfo]) -> BackupInfo | None:
    return next((b for b in ordered if b.status is BackupStatus.VERIFIED), None)


def _expire_reason(backup: BackupInfo, policy: RetentionPolicy) -> str:
    if backup.status in _UNRESTORABLE:
        return f"{backup.status.value}: not restorable"
    if backup.status is BackupStatus.EXPIRED:
        return "already expired"
    return f"not kept by {policy.describe()}"


# --- the decision -------------------------------------------------------------------------------------


def decide_retention(backups: Iterable[BackupInfo], *, policy: RetentionPolicy, now: datetime) -> RetentionDecision:
    """Split backups into keep and expire under ``policy`` (each source on its own) at ``now``."""
    _require_aware(now, "now")
    now = now.astimezone(UTC)
    by_source: dict[str, list[BackupInfo]] = defaultdict(list)
    for backup in backups:
        by_source[backup.source].append(backup)
    keep: list[BackupInfo] = []
    expire: list[BackupInfo] = []
    reasons: dict[str, str] = {}
    sentences = []
    for source in sorted(by_source):
        ordered = sorted(by_source[source], key=lambda b: (b.created_at, b.backup_id), reverse=True)
        kept = _kept_reasons(ordered, policy=policy, now=now)
        for backup in ordered:
            if backup.backup_id in kept:
                keep.append(backup)
                reasons[backup.backup_id] = "; ".join(kept[backup.backup_id])
            else:
                expire.append(backup)
                reasons[backup.backup_id] = _expire_reason(backup, policy)
        sentences.append(_source_sentence(source, ordered=ordered, kept=kept, policy=policy))
    return RetentionDecision(
        keep=tuple(b.backup_id for b in keep),
        expire=tuple(b.backup_id for b in expire),
        reasons=reasons,
        sentence=" ".join(sentences) or "no backups to decide on",
    )


def _source_sentence(source: str, *, ordered: Sequence[BackupInfo], kept: Reasons, policy: RetentionPolicy) -> str:
    kept_count = sum(1 for b in ordered if b.backup_id in kept)
    unrestorable = sum(1 for b in ordered if b.status in _UNRESTORABLE)
    newest = _newest_verified(ordered)
    guard = (
        f"newest verified backup {newest.backup_id} ({newest.created_at.isoformat()}) is kept"
        if newest is not None
        else "no verified backup yet"
    )
    return (
        f"{source}: keep {kept_count} of {len(ordered)} backup(s) and expire {len(ordered) - kept_count} "
        f"({unrestorable} failed or corrupted) under {policy.describe()}; {guard}."
    )


# --- WAL ----------------------------------------------------------------------------------------------

_SEGMENT_RE = re.compile(r"^(?P<name>[0-9A-F]{24})(?:\.partial|\.[0-9A-F]{8}\.backup)?(?:\.[^/]*)?$")
_HISTORY_RE = re.compile(r"^[0-9A-F]{8}\.history(?:\.[^/]*)?$")


def wal_segment_of(file_name: str) -> str | None:
    """The 24-hex segment name a WAL archive file belongs to; None for ``.history`` and unknown files.

    Accepts a path or key (the part after the last ``/`` counts), ``.partial`` and ``.backup`` files,
    and any further suffix such as ``.zst``.
    """
    base = file_name.rsplit("/", 1)[-1]
    match = _SEGMENT_RE.match(base)
    return match.group("name") if match else None


def is_timeline_history(file_name: str) -> bool:
    return _HISTORY_RE.match(file_name.rsplit("/", 1)[-1]) is not None


def oldest_needed_wal(start_wal_files: Iterable[str]) -> str | None:
    """The oldest start WAL segment among kept base backups (None when there are none).

    Names compare as text: timeline (8 hex) first, then log and segment (16 hex), so WAL of an older
    timeline is older. Raise ValueError for a name that is not a WAL segment.
    """
    segments = []
    for name in start_wal_files:
        segment = wal_segment_of(name)
        if segment is None:
            raise ValueError(f"{name!r} is not a WAL segment name (24 hexadecimal digits)")
        segments.append(segment)
    return min(segments, default=None)


def wal_files_to_delete(listing: Iterable[str], start_wal_files: Iterable[str]) -> tuple[str, ...]:
    """The archived WAL files no kept base backup needs, sorted.

    ``listing`` holds the archive's file names (or keys); ``start_wal_files`` the start segments of the
    kept base backups. A file goes when its segment is older than the oldest needed one. Timeline
    ``.history`` files and names we do not recognise always stay; with no kept backup nothing goes.
    """
    oldest = oldest_needed_wal(start_wal_files)
    if oldest is None:
        return ()
    return tuple(sorted(name for name in listing if (segment := wal_segment_of(name)) and segment < oldest))
