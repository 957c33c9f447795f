"""The data a failover lost, measured from the old primary's own WAL (``pg_waldump``), not estimated.

When a primary dies, what its standby never received cannot be seen from the standby. But the old
primary's WAL files are still on its disk: everything it wrote on the old timeline after the point
where the new primary's timeline forked off was lost. Counting the COMMIT records there gives the
transactions lost, their timestamps give the RPO in seconds, and the LSNs give the bytes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from disaster_recovery.postgres.replication import lsn_to_int

_RECORD = re.compile(r"lsn: (?P<lsn>[0-9A-F]+/[0-9A-F]+), prev [0-9A-F]+/[0-9A-F]+, desc: (?P<desc>.*)$")
_REC_LEN = re.compile(r"len \(rec/tot\):\s*\d+/\s*(?P<tot>\d+)")
_COMMIT = re.compile(r"^COMMIT(?:_PREPARED)? (?:\d+ )?(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) (?P<tz>\S+)")


@dataclass(frozen=True, kw_only=True)
class WalLoss:
    """What the old timeline holds past the fork point: the data the failover discarded."""

    fork_lsn: str
    end_lsn: str | None  # end of the last record found
    lost_bytes: int
    lost_transactions: int
    first_lost_commit_at: datetime | None
    last_lost_commit_at: datetime | None
    measured: bool = True

    @property
    def lost_seconds(self) -> float:
        """How much time of committed work was lost: from the first lost commit to the last."""
        if self.first_lost_commit_at is None or self.last_lost_commit_at is None:
            return 0.0
        return max(0.0, (self.last_lost_commit_at - self.first_lost_commit_at).total_seconds())

    def sentence(self) -> str:
        if not self.lost_transactions and not self.lost_bytes:
            return f"no data lost: the old primary wrote nothing past the fork point {self.fork_lsn}"
        return (
            f"{self.lost_transactions} committed transaction(s) ({self.lost_bytes} bytes of WAL, "
            f"{self.lost_seconds:.3f} s of commits) on the old primary after the fork point {self.fork_lsn} "
            "were not on the new primary"
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("first_lost_commit_at", "last_lost_commit_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        data["lost_seconds"] = self.lost_seconds
        return data


def _timestamp(text: str, tz: str) -> datetime | None:
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    try:
        value = datetime.strptime(text, fmt)
    except ValueError:
        return None
    if tz.upper() in ("UTC", "GMT", "+00", "Z"):
        from datetime import UTC

        return value.replace(tzinfo=UTC)
    return value


def parse_waldump(output: str, *, fork_lsn: str) -> WalLoss:
    """Read pg_waldump's records from ``fork_lsn`` on; records that start before it are not lost."""
    fork = lsn_to_int(fork_lsn) or 0
    commits: list[datetime | None] = []
    end = None
    for line in output.splitlines():
        match = _RECORD.search(line)
        if not match:
            continue
        start = lsn_to_int(match["lsn"]) or 0
        if start < fork:
            continue
        length = _REC_LEN.search(line)
        record_end = start + (int(length["tot"]) if length else 0)
        end = record_end if end is None else max(end, record_end)
        if "rmgr: Transaction" in line:
            commit = _COMMIT.match(match["desc"])
            if commit:
                commits.append(_timestamp(commit["ts"], commit["tz"]))
    stamps = [c for c in commits if c is not None]
    return WalLoss(
        fork_lsn=fork_lsn,
        end_lsn=None if end is None else f"{end >> 32:X}/{end & 0xFFFFFFFF:X}",
        lost_bytes=max(0, (end or fork) - fork),
        lost_transactions=len(commits),
        first_lost_commit_at=min(stamps) if stamps else None,
        last_lost_commit_at=max(stamps) if stamps else None,
    )


def fork_point(history_text: str) -> tuple[int, str] | None:
    """(parent timeline, LSN where it ended) of a timeline history file: its last entry is the timeline the
    new one branched from (``1\t0/5000108\treason`` lines, oldest first)."""
    last = None
    for line in history_text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            last = (int(parts[0]), parts[1])
    return last
