"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Enough for recurring hunts: ``*``, ``*/n``, ``a-b``, ``a-b/n`` and lists of them, day and
month names not needed. As in cron, when both day fields are restricted a day matching either
one counts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # weekday 7 is Sunday too
_NAMES = ("minute", "hour", "day of month", "month", "day of week")


class CronError(ValueError):
    """A cron expression that does not parse; the message names the field."""


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def matches(self, when: dt.datetime) -> bool:
        weekday = (when.weekday() + 1) % 7  # cron: 0 = Sunday
        if when.minute not in self.minutes or when.hour not in self.hours:
            return False
        if when.month not in self.months:
            return False
        day_ok = when.day in self.days
        weekday_ok = weekday in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, timestamp: float) -> float:
        """The first matching minute strictly after ``timestamp`` (within about 5 years)."""
        when = dt.datetime.fromtimestamp(timestamp, dt.UTC).replace(second=0, microsecond=0)
        when += dt.timedelta(minutes=1)
        for _ in range(5 * 366 * 24 * 60):
            if when.month not in self.months:
                when = (when.replace(day=1, hour=0, minute=0) + dt.timedelta(days=32)).replace(
                    day=1
                )
                continue
            if self.matches(when):
                return when.timestamp()
            if when.hour not in self.hours:
                when = when.replace(minute=0) + dt.timedelta(hours=1)
                continue
            when += dt.timedelta(minutes=1)
        raise CronError("the expression never matches")


def _field(text: str, index: int) -> frozenset[int]:
    low, high = _RANGES[index]
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                a, b = body.split("-", 1)
                start, end = int(a), int(b)
            else:
                start = end = int(body)
                if step_text:
                    end = high
        except ValueError:
            raise CronError(f"{_NAMES[index]}: {part!r} is not a number, range or */n") from None
        if step < 1 or not (low <= start <= end <= high):
            raise CronError(f"{_NAMES[index]}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse(expression: str) -> Cron:
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(
            f"{expression!r}: a cron expression has 5 fields (minute hour day month weekday)"
        )
    return Cron(
        minutes=_field(fields[0], 0),
        hours=_field(fields[1], 1),
        days=_field(fields[2], 2),
        months=_field(fields[3], 3),
        weekdays=frozenset(day % 7 for day in _field(fields[4], 4)),
        any_day=fields[2] == "*",
        any_weekday=fields[4] == "*",
    )
