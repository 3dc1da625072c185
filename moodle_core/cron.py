"""Cron fields and next run times in the site time zone, as Moodle's task manager computes them
(tasks.md section 2). Pure functions: "now" is always a parameter."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

NEVER = 7952342400
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("dayofweek", 0, 7))
_ITEM = re.compile(r"^(\*|R|\d+|\d+-\d+)(?:/(\d+))?$")


class CronError(ValueError):
    """An invalid cron field; the text names the field."""


def parse_field(text: str, name: str, low: int, high: int, rnd: random.Random | None = None) -> frozenset[int]:
    """`*`, `n`, `a-b`, each optionally `/step`, comma-separated; `R` is a random value in range."""
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item.strip())
        if not match:
            raise CronError(f"invalid {name} field '{text}'")
        base, step = match.group(1), int(match.group(2) or 1)
        if step < 1:
            raise CronError(f"invalid step in {name} field '{text}'")
        if base == "*":
            start, end = low, high
        elif base == "R":
            start = end = (rnd or random.Random()).randint(low, high if name != "dayofweek" else 6)
        elif "-" in base:
            start, end = (int(x) for x in base.split("-"))
        else:
            start = end = int(base)
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{name} value out of range {low}-{high} in '{text}'")
        values.update(range(start, end + 1, step))
    if name == "dayofweek" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    """Five parsed cron fields."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, line: str, rnd: random.Random | None = None) -> Schedule:
        parts = line.split()
        if len(parts) != 5:
            raise CronError(f"expected five cron fields, got '{line}'")
        sets = [parse_field(part, name, low, high, rnd) for part, (name, low, high) in zip(parts, FIELDS, strict=True)]
        return cls(*sets, parts[2] != "*", parts[4] != "*")

    def matches_date(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        weekday = (day.weekday() + 1) % 7  # Python: Monday 0; cron: Sunday 0
        by_day, by_weekday = day.day in self.days, weekday in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return by_day or by_weekday
        return by_day and by_weekday

    def next_run(self, after: int, timezone: str) -> int:
        """The smallest instant > `after` with seconds 0 whose local time in `timezone` matches.

        Local times that do not exist are skipped; a repeated local hour matches its first
        occurrence only. No match within eight years gives NEVER."""
        zone = ZoneInfo(timezone)
        start = datetime.fromtimestamp(after, zone).date()
        minutes, hours = sorted(self.minutes), sorted(self.hours)
        for offset in range(366 * 8 + 2):
            day = start + timedelta(days=offset)
            if not self.matches_date(day):
                continue
            for hour in hours:
                for minute in minutes:
                    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    instant = int(local.timestamp())
                    if instant <= after:
                        continue
                    back = datetime.fromtimestamp(instant, zone)
                    if (back.hour, back.minute, back.date()) != (hour, minute, day):
                        continue  # inside a spring-forward gap: this local time does not exist
                    return instant
        return NEVER
