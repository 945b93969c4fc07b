"""Cron expressions for recurring hunts."""

from __future__ import annotations

import datetime as dt

import pytest

from peregrine.services.cron import CronError, parse


def at(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", "2026-11-23 10:07", "2026-11-23 10:15"),
        ("0 3 * * *", "2026-11-23 03:00", "2026-11-24 03:00"),
        ("30 9 * * 1-5", "2026-11-27 10:00", "2026-11-30 09:30"),  # Friday → Monday
        ("0 0 1 * *", "2026-11-23 00:00", "2026-12-01 00:00"),
        ("0 12 29 2 *", "2026-03-01 00:00", "2028-02-29 12:00"),  # the next leap day
        ("0 0 13 * 5", "2026-11-23 00:00", "2026-11-27 00:00"),  # either day field counts
        ("5,35 */6 * * *", "2026-11-23 06:35", "2026-11-23 12:05"),
        ("0 8 * * 6-7", "2026-11-23 09:00", "2026-11-28 08:00"),  # 7 is Sunday: Mon → Sat
        ("0 8 * * 7", "2026-11-23 09:00", "2026-11-29 08:00"),  # Sunday
        ("0 8 * * 1-7", "2026-11-23 09:00", "2026-11-24 08:00"),  # every day
        ("0 8 * * 0/7", "2026-11-23 09:00", "2026-11-29 08:00"),  # 0 and 7: Sunday
    ],
)
def test_next_after(expression: str, after: str, expected: str) -> None:
    assert iso(parse(expression).next_after(at(after))) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "5 fields"),
        ("61 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("x * * * *", "not a number"),
        ("*/0 * * * *", "outside"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse(expression)
