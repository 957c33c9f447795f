"""Durations written the way operators write them: ``30s``, ``15m``, ``1h30m``, ``180d``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

DURATION_PATTERN = r"^(?=\d)(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+(\.\d+)?s)?$"

_UNITS = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60))
_DURATION_RE = re.compile(
    r"^(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)
_HINT = "write a number with a unit, largest first, e.g. '30s', '15m', '1h30m', '180d' (units: w d h m s)"


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m`` style text into a timedelta; raise ValueError on anything else."""
    cleaned = text.strip()
    match = _DURATION_RE.match(cleaned)
    if not cleaned or match is None:
        raise ValueError(f"invalid duration {text!r}: {_HINT}")
    parts = match.groupdict()
    seconds = float(parts["s"] or 0)
    for unit, factor in _UNITS:
        seconds += int(parts[unit] or 0) * factor
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The canonical text of a duration (``parse_duration(format_duration(d)) == d``)."""
    if value < timedelta(0):
        raise ValueError(f"negative duration {value!r}")
    micros = value // timedelta(microseconds=1)
    whole, frac = divmod(micros, 1_000_000)
    text = ""
    for unit, factor in _UNITS[1:]:  # no weeks: "180d" reads better than "25w5d"
        count, whole = divmod(whole, factor)
        if count:
            text += f"{count}{unit}"
    if frac:
        text += f"{whole}.{frac:06d}".rstrip("0") + "s"
    elif whole or not text:
        text += f"{whole}s"
    return text


def _coerce(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("invalid_duration", str(exc)) from None
    raise PydanticCustomError("invalid_duration", f"invalid duration {value!r}: a bare number has no unit; {_HINT}")


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise PydanticCustomError("invalid_duration", "duration must be greater than zero")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_coerce),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "a duration such as '30s', '15m', '1h30m', '180d' (units: w d h m s)",
            "examples": ["30s", "15m", "1h30m", "180d"],
        }
    ),
]
"""A non-negative duration; a ``datetime.timedelta`` in Python, canonical text in JSON."""

PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
"""A duration greater than zero (timeouts, delays)."""
