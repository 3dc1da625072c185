"""Statements per web-service request (issue 15): what a cache hit, a miss, the next page of a
pull and site info cost in round trips to the database, counted on the three engines after a
warm-up (a worker's reused config, capability and service answers are in place)."""

from __future__ import annotations

import pytest

from tests.sites import NOW, synced_company
from tests.webapp import FUNCTION, make_app, post

# the most statements each may take: the counts measured when this test was written (before issue
# 15: about 26 for a hit, 33 for a miss, 25 for site info). MariaDB has no UPDATE … RETURNING: it
# reads a cache hit and counts it in two; SQLite needs no statement for the rate-limit lock.
BUDGET = {"hit": {"sqlite": 9, "postgresql": 10, "mariadb": 12},
          "miss": {"sqlite": 13, "postgresql": 14, "mariadb": 15},
          "next page": {"sqlite": 13, "postgresql": 13, "mariadb": 13},
          "site info": {"sqlite": 5, "postgresql": 5, "mariadb": 5}}


def statements(db, app, **params) -> list:
    with db.recording() as calls:
        resp = post(app, **params)
    assert resp.status_int == 200 and b"exception" not in resp.body, resp.body[:300]
    return calls


@pytest.fixture
def site(db):
    token = synced_company(db, users=60, courses=5)
    app = make_app(db, NOW, local_alx_report_api__enable_cache="1", local_alx_report_api__config_cache_seconds="60")
    page = {"wstoken": token, "wsfunction": FUNCTION, "moodlewsrestformat": "json", "limit": 100}
    statements(db, app, **page)  # the token's state row, the worker's reused answers
    statements(db, app, **page, offset=100)
    statements(db, app, wstoken=token, wsfunction="core_webservice_get_site_info", moodlewsrestformat="json")
    return db, app, page


def test_statements_per_request(site):
    db, app, page = site
    counted = {"hit": statements(db, app, **page)}
    db.execute("DELETE FROM {t:local_alx_api_cache}")
    counted["miss"] = statements(db, app, **page)
    counted["next page"] = statements(db, app, **page, offset=100)
    counted["site info"] = statements(db, app, wstoken=page["wstoken"], wsfunction="core_webservice_get_site_info",
                                      moodlewsrestformat="json")
    print(db.kind, {what: len(calls) for what, calls in counted.items()})
    over = {what: [sql for sql, _ in calls] for what, calls in counted.items() if len(calls) > BUDGET[what][db.kind]}
    assert over == {}
