"""Dates of response elements (course-progress.md 4): the quarter-hour memo gives exactly what
formatting each time on its own gives, across offset changes and odd historical offsets."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from local_alx_report_api.classes.pages import LocalTimes

ZONES = ["UTC", "Europe/London", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Asia/Kolkata",
         "Pacific/Chatham", "Africa/Monrovia", "America/St_Johns", "Europe/Amsterdam"]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(ZONES), st.integers(-2_500_000_000, 4_200_000_000))
def test_memoised_times_are_exact(zone, ts):
    times = LocalTimes(ZoneInfo(zone))
    assert times(ts) == (times.exact(ts) if ts else "")
    assert times(ts) == (times.exact(ts) if ts else "")  # from the memo


def test_every_second_around_a_change_and_in_a_half_hour_zone():
    for zone, start in (("Europe/London", 1711846800 - 1800), ("Australia/Lord_Howe", 1712412000 - 1800),
                        ("Asia/Kathmandu", 1700000000), ("Africa/Monrovia", 63000000 - 1800)):
        times = LocalTimes(ZoneInfo(zone))
        for ts in range(start, start + 3600):
            assert times(ts) == times.exact(ts), (zone, ts)
