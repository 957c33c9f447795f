"""Is a response time anomalous against the service's own recent baseline? Pure, robust statistics.

The baseline is the median and the median absolute deviation (MAD) of the service's recent successful
probes. A response time is anomalous when it is above both

- ``max(median * factor, median + 6 * 1.4826 * MAD)`` (1.4826 * MAD estimates the standard deviation of
  normal noise, so the second bound is six "sigmas" robustly; the first keeps a near-constant baseline,
  whose MAD is ~0, from flagging tiny wobbles), and
- ``median + min_delta_ms`` (a loopback probe going from 0.3 ms to 4 ms is noise, not an incident),

and only once ``min_samples`` successful probes are known. Median and MAD ignore the rare slow probe, so
one outlier neither raises the baseline nor hides the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

MAD_TO_SIGMA = 1.4826
SIGMAS = 6.0


@dataclass(frozen=True, kw_only=True)
class Baseline:
    median_ms: float
    mad_ms: float
    samples: int


def baseline(values_ms: Sequence[float]) -> Baseline | None:
    """Median and MAD of the values; None without values."""
    if not values_ms:
        return None
    mid = median(values_ms)
    return Baseline(median_ms=mid, mad_ms=median(abs(v - mid) for v in values_ms), samples=len(values_ms))


@dataclass(frozen=True, kw_only=True)
class AnomalyVerdict:
    anomalous: bool
    value_ms: float | None
    baseline: Baseline | None
    limit_ms: float | None  # the value must exceed this (both bounds combined) to be anomalous
    sentence: str

    def as_dict(self) -> dict[str, float | int | None]:
        """What anomalies_detected records for an anomalous response time."""
        b = self.baseline
        return {
            "value_ms": self.value_ms,
            "baseline_median_ms": round(b.median_ms, 3) if b else None,
            "baseline_mad_ms": round(b.mad_ms, 3) if b else None,
            "limit_ms": round(self.limit_ms, 3) if self.limit_ms is not None else None,
            "samples": b.samples if b else 0,
        }


def response_time_anomaly(
    value_ms: float | None, recent_ms: Sequence[float], *, factor: float, min_samples: int, min_delta_ms: float
) -> AnomalyVerdict:
    """Judge ``value_ms`` against ``recent_ms`` (the service's earlier successful probes, any order)."""
    if value_ms is None:
        return AnomalyVerdict(anomalous=False, value_ms=None, baseline=None, limit_ms=None,
                              sentence="no response time to judge")
    if len(recent_ms) < min_samples:
        return AnomalyVerdict(
            anomalous=False, value_ms=value_ms, baseline=None, limit_ms=None,
            sentence=f"no baseline yet ({len(recent_ms)} of {min_samples} successful probes)",
        )
    base = baseline(recent_ms)
    assert base is not None
    limit = max(base.median_ms * factor, base.median_ms + SIGMAS * MAD_TO_SIGMA * base.mad_ms,
                base.median_ms + min_delta_ms)
    anomalous = value_ms > limit
    words = (f"response time {value_ms:.1f} ms {'is above' if anomalous else 'is within'} its baseline "
             f"(median {base.median_ms:.1f} ms, MAD {base.mad_ms:.1f} ms over {base.samples} probes; limit "
             f"{limit:.1f} ms)")
    return AnomalyVerdict(anomalous=anomalous, value_ms=value_ms, baseline=base, limit_ms=limit, sentence=words)
