from datetime import timedelta

import pytest

from disaster_recovery.plans import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("180d", timedelta(days=180)),
        ("2w", timedelta(days=14)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("1.5s", timedelta(seconds=1.5)),
        ("0s", timedelta(0)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "15 minutes", "m", "1m1h", "-5s", "1.5m", "PT15M", "1h 30m"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["30s", "15m", "1h30m", "180d", "1d2h3m4s", "1.5s", "0s", "0.0015s"])
def test_format_duration_round_trips(text):
    assert format_duration(parse_duration(text)) == text


def test_format_duration_uses_days_not_weeks():
    assert format_duration(timedelta(days=14)) == "14d"
