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


def test_elements_from_table_rows_are_the_elements_of_their_progress(db):
    """pages.table_elements (a page's fast path) gives what pages.element gives for the same
    rows, on every engine's types (Decimal or float percentages), tombstones included."""
    from local_alx_report_api.classes import pages, pulls
    from local_alx_report_api.classes.company_settings import FIELDS
    from local_alx_report_api.classes.progress import Scope
    from local_alx_report_api.task import sync_reporting_data_task as sync_task
    from tests.sites import NOW, full_company, new_site
    from tests.tasks import task_env

    b = new_site(db)
    full_company(b, users=12, courses=3)
    sync_task.execute(task_env(db, NOW))
    db.execute("UPDATE {t:local_alx_api_reporting} SET percentage = 66.67 WHERE userid % 3 = 0")
    db.execute("UPDATE {t:local_alx_api_reporting} SET is_deleted = 1 WHERE userid % 5 = 0")
    req = pulls.PageRequest(1, "h", 0, 100, 0, Scope.load(db, 1, ["student"]), 0, 24, True, True, NOW, "UTC")
    definition = pulls.Definition("full", 0, 10**9, True)
    readable = pages.local_times("Europe/London")
    for fields in (FIELDS, ("email", "percentage", "status")):
        rows = pulls.table_rows(db, req, definition, after=(0, 0))
        expected = [pages.element(r.progress, fields, readable, deleted=r.deleted) for r in rows]
        assert pages.table_elements(pulls.table_tuples(db, req, definition, after=(0, 0)), fields, readable) == expected
        assert any(e.get("percentage") == 66.67 for e in expected) and any(e["status"] == "deleted" for e in expected)
