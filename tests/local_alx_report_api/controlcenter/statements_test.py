"""Statements per page do not grow with the number of companies (issue 19, style habit 10): every
control-center page a browser can GET and a /metrics scrape, counted on a site of 3 companies and again after 9 more
with everything a page lists per company (settings, a switched-off course, a token, a pull with its
client state and cache entry, a request log row, a sync run)."""

from __future__ import annotations

import pytest

from local_alx_report_api.classes import alerts, jobs
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.admin import PREFIX, admin_app, sign_in
from tests.sites import NOW, api_token, company_setting, new_site
from tests.tasks import task_env
from tests.webapp import progress

# the most statements each may take (the counts measured when this test was written); {job},
# {alert}, {log} and {token} are the ids of the site's first job, alert, log row and token
BUDGET = {"/": 26, "/stats.json": 21, "/health.json": 16, "/companies": 10, "/companies/1": 18, "/tokens": 9,
          "/data": 6, "/cache": 10, "/monitoring": 13, "/monitoring?period=7d": 13, "/alerts": 7, "/logs": 6,
          "/configuration": 9, "/metrics": 23, "/companies/1/clear-data": 7, "/cache/purge-all": 4,
          "/jobs/{job}": 6, "/jobs/{job}.json": 4, "/logs.csv": 4, "/alerts?id={alert}": 4, "/logs?id={log}": 5,
          "/tokens/{token}/revoke": 8, "/login": 0}


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
    ids = {"job": db.scalar("SELECT MIN(id) FROM {t:local_alx_api_sync_status} WHERE kind = 'job'"),
           "alert": db.scalar("SELECT MIN(id) FROM {t:local_alx_api_alerts}"),
           "log": db.scalar("SELECT MIN(id) FROM {t:local_alx_api_logs}"),
           "token": db.scalar("SELECT MIN(id) FROM {t:external_tokens}")}
    if path == "/login":  # the sign-in page, as a browser that is not signed in sees it
        app = admin_app(db, NOW + 20)
    with db.recording() as calls:
        resp = app.get(path if path == "/metrics" else PREFIX + path.format(**ids))
    assert resp.status_int == 200, path
    return len(calls)


def test_statements_per_page_stay_the_same_from_3_to_12_companies(db):
    b = new_site(db)
    api = admin_app(db, NOW, local_alx_report_api__enable_cache="1")
    tokens = add_companies(db, b, 1, 3)
    sync_task.execute(task_env(db, NOW))
    for token in tokens:
        assert progress(api, token, limit=1).status_int == 200  # a pull left open, a log row, a cache entry
    jobs.queue(db, NOW, job_type="sync", companyids=None, userid=2)
    alerts.raise_alert(db, task_env(db, NOW).settings, NOW, alert_type="performance", severity="high",
                       subject="api_response_time", message="slow", data={})
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
