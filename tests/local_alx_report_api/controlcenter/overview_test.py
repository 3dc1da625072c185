"""The overview (admin-ui.md 3.1, issue 7): cards from real requests and a real sync run,
sync lag per company, scheduled tasks."""

from __future__ import annotations

from local_alx_report_api.classes import health
from local_alx_report_api.task import sync_reporting_data_task
from tests.admin import PREFIX, admin_app, sign_in
from tests.sites import NOW, acme_and_globex, api_token
from tests.tasks import task_env
from tests.webapp import progress


def test_cards_lag_and_tasks_after_requests_and_a_sync(db):
    b = acme_and_globex(db, shared=False)
    token = api_token(b, 5)
    sync_reporting_data_task.execute(task_env(db, NOW - 600))
    api = admin_app(db, NOW)
    assert progress(api, token).status_int == 200
    assert progress(api, token, limit=2).status_int == 200
    assert "invalidparameter" in progress(api, token, limit="x").text
    assert "invalidtoken" in progress(api, "b" * 32).text
    app = admin_app(db, NOW + 60)
    sign_in(app)
    stats = app.get(PREFIX + "/stats.json").json
    active = db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE is_deleted = 0")
    assert stats["total_records"] == active > 0
    assert stats["total_companies"] == 2 and stats["api_calls_today"] == 4
    assert stats["last_sync"] == NOW - 600
    page = app.get(PREFIX + "/")
    assert "2 errors" in page.text  # invalidparameter and invalidtoken; rate-limited ones are counted apart
    lag = page.html.find(id="sync-lag").find_all("tr")
    assert [td.get_text(" ", strip=True) for td in lag[1].find_all("td")] == \
        ["Acme Learning Ltd (acme)", "2024-11-25 14:50:00", "11 min"]
    assert "sync_reporting_data_task" in page.text


def test_the_health_badge_is_never_healthy_beside_open_high_or_critical_alerts():
    """Issue 18 (decision 103): the score and `overall` are the checks'; the badge counts open alerts."""
    none = {"low": 3, "medium": 1, "high": 0, "critical": 0}
    assert health.with_alerts("healthy", none) == ("healthy", "no high or critical alert open")
    assert health.with_alerts("healthy", {**none, "high": 2}) == ("warning", "2 high alerts open")
    assert health.with_alerts("unhealthy", {**none, "high": 1}) == ("unhealthy", "1 high alert open")
    assert health.with_alerts("warning", {**none, "critical": 1, "high": 2}) == \
        ("unhealthy", "1 critical and 2 high alerts open")
