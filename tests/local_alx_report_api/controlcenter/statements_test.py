"""Statements per page do not grow with the number of companies (issue 19, style habit 10): every
control-center page and a /metrics scrape, counted on a site of 3 companies and again after 9 more
with everything a page lists per company (settings, a switched-off course, a token, a pull with its
client state and cache entry, a request log row, a sync run)."""

from __future__ import annotations

import pytest

from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.admin import PREFIX, admin_app, sign_in
from tests.sites import NOW, api_token, company_setting, new_site
from tests.tasks import task_env
from tests.webapp import progress

# the most statements each may take (the counts measured when this test was written)
BUDGET = {"/": 26, "/stats.json": 21, "/health.json": 16, "/companies": 10, "/companies/1": 18, "/tokens": 9,
          "/data": 5, "/cache": 10, "/monitoring": 13, "/monitoring?period=7d": 13, "/alerts": 7, "/logs": 6,
          "/configuration": 9, "/metrics": 23}


def add_companies(db, b, first: int, count: int) -> list[str]:
    tokens = []
    for c in range(first, first + count):
        b.company(f"Company {c}", f"c{c}", companyid=c)
        for course in (100 + 2 * c, 101 + 2 * c):
            b.course(f"Course {course}", f"C{course}", courseid=course)
            b.company_course(c, course)
            enrol = b.enrol_instance(course)
            uid = b.user(f"u{c}_{course}", "U", str(c), f"u{c}_{course}@example.com")
            b.member(c, uid)
            b.enrol(enrol, uid)
            b.assign(5, course, uid)
        b.flush()
        tokens.append(api_token(b, c, token=f"{c:032d}", username=f"api{c}"))
        company_setting(db, c, "rate_limit", 500 + c)
        company_setting(db, c, f"course_{101 + 2 * c}", 0)
    return tokens


def count(db, app, path: str) -> int:
    with db.recording() as calls:
        if path == "/metrics":
            app.get("/metrics")
        else:
            app.get(PREFIX + path)
    return len(calls)


def test_statements_per_page_stay_the_same_from_3_to_12_companies(db):
    b = new_site(db)
    api = admin_app(db, NOW, local_alx_report_api__enable_cache="1")
    tokens = add_companies(db, b, 1, 3)
    sync_task.execute(task_env(db, NOW))
    for token in tokens:
        assert progress(api, token, limit=1).status_int == 200  # a pull left open, a log row, a cache entry
    app = admin_app(db, NOW)
    sign_in(app)
    small = {path: count(db, app, path) for path in BUDGET}
    more = add_companies(db, b, 4, 9)
    sync_task.execute(task_env(db, NOW))
    for token in more:
        assert progress(api, token, limit=1).status_int == 200
    app = admin_app(db, NOW + 20)  # a new app: nothing cached for 15 s from the first count
    sign_in(app)
    large = {path: count(db, app, path) for path in BUDGET}
    assert large == small
    assert {path: n for path, n in large.items() if n > BUDGET[path]} == {}


@pytest.mark.parametrize("path", ["/companies", "/tokens"])
def test_the_count_sees_a_query_per_company(db, path, monkeypatch):
    """The check itself: a page that loads each company's settings on its own is caught."""
    from local_alx_report_api.classes import company_settings

    b = new_site(db)
    add_companies(db, b, 1, 2)
    app = admin_app(db, NOW)
    sign_in(app)
    count(db, app, path)  # the first page after sign-in reads a little more
    before = count(db, app, path)
    one_by_one = company_settings.load_all
    monkeypatch.setattr(company_settings, "load_all", lambda engine, ids: {
        cid: company_settings.load(engine, cid) for cid in one_by_one(engine, ids)})
    assert count(db, app, path) == before + 2
