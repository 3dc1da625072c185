"""Cron fields and next run times in the site time zone (tasks.md section 2)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from moodle_core.cron import NEVER, CronError, Schedule, parse_field


def at(text, zone="UTC"):
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp())


@pytest.mark.parametrize("text, low, high, expected", [
    ("*/15", 0, 59, {0, 15, 30, 45}), ("10-20/5", 0, 59, {10, 15, 20}), ("1,3,5", 0, 23, {1, 3, 5}),
    ("7", 0, 7, {0}), ("5-7", 0, 7, {5, 6, 0}), ("*", 1, 12, set(range(1, 13)))])
def test_fields(text, low, high, expected):
    assert parse_field(text, "dayofweek" if high == 7 else "x", low, high) == expected


@pytest.mark.parametrize("line", ["61 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "a * * * *",
                                  "* * * *", "5-1 * * * *", "*/0 * * * *"])
def test_invalid_lines_are_errors(line):
    with pytest.raises(CronError):
        Schedule.parse(line)


def test_next_run_is_strictly_after_and_on_whole_minutes():
    hourly = Schedule.parse("0 * * * *")
    assert hourly.next_run(at("2024-11-25T15:00:00"), "UTC") == at("2024-11-25T16:00:00")
    assert hourly.next_run(at("2024-11-25T15:00:01"), "UTC") == at("2024-11-25T16:00:00")
    assert Schedule.parse("*/15 * * * *").next_run(at("2024-11-25T15:14:59"), "UTC") == at("2024-11-25T15:15:00")


def test_local_time_of_the_site_zone_and_dst():
    daily = Schedule.parse("15 3 * * *")
    assert daily.next_run(at("2024-07-01T12:00:00"), "Europe/London") == at("2024-07-02T03:15:00", "Europe/London")
    # 02:30 does not exist in Oslo on 2024-03-31: skipped to the next day
    gap = Schedule.parse("30 2 * * *")
    assert gap.next_run(at("2024-03-30T12:00:00", "Europe/Oslo"), "Europe/Oslo") == at("2024-04-01T02:30:00",
                                                                                      "Europe/Oslo")
    # 02:30 happens twice on 2024-10-27: only the first one counts
    first = int(datetime(2024, 10, 27, 2, 30, tzinfo=ZoneInfo("Europe/Oslo"), fold=0).timestamp())
    assert gap.next_run(first - 60, "Europe/Oslo") == first
    assert gap.next_run(first, "Europe/Oslo") == at("2024-10-28T02:30:00", "Europe/Oslo")


def test_day_and_weekday_either_matches_when_both_restricted():
    both = Schedule.parse("0 0 1 * 1")  # the 1st or any Monday
    assert both.next_run(at("2024-11-25T12:00:00"), "UTC") == at("2024-12-01T00:00:00")
    assert both.next_run(at("2024-12-01T12:00:00"), "UTC") == at("2024-12-02T00:00:00")
    monday = Schedule.parse("0 0 * * 1")
    assert monday.next_run(at("2024-11-25T12:00:00"), "UTC") == at("2024-12-02T00:00:00")


def test_impossible_dates_never_run():
    assert Schedule.parse("0 0 31 2 *").next_run(at("2024-11-25T12:00:00"), "UTC") == NEVER
