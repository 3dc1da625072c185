"""/metrics, /healthz and /readyz through the app, and health checks on real tables."""

from urllib.parse import urlsplit

import pytest

from local_alx_report_api.classes import health
from local_alx_report_api.db.tasks import definitions
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from moodle_core import engines
from moodle_core.moodle import Moodle
from moodle_core.taskmanager import TaskManager
from tests.faults import Proxy
from tests.sites import NOW, api_token, new_site, worked_examples
from tests.tasks import task_env
from tests.webapp import make_app, progress


def test_probes(db):
    new_site(db)
    app = make_app(db, NOW)
    assert (app.get("/healthz").text, app.get("/healthz").content_type) == ("OK", "text/plain")
    ready = app.get("/readyz")
    assert (ready.status_int, ready.json) == (200, {"status": "ok"})
    db.db.execute_sql(f"DROP TABLE {db.table('local_alx_api_cache')}")
    ready = app.get("/readyz", expect_errors=True)
    assert ready.status_int == 503 and ready.json == {"status": "unavailable",
                                                      "reason": "missing tables: local_alx_api_cache"}


def test_metrics_exposition_and_access(db):
    b = new_site(db)
    worked_examples(b)
    token = api_token(b, 5)
    sync_task.execute(task_env(db, NOW))
    app = make_app(db, NOW)
    progress(app, token, limit=4)
    text = app.get("/metrics").text
    assert 'alx_report_api_requests_total{function="local_alx_report_api_get_course_progress",outcome="ok"}' in text
    assert "alx_report_api_up 1.0" in text and "alx_report_api_database_up 1.0" in text
    assert 'alx_report_api_reporting_rows{companyid="5",state="active"} 6.0' in text
    assert 'alx_report_api_task_last_run_timestamp_seconds' in text and "alx_report_api_health_score" in text
    assert 'alx_report_api_company_change_sequence{companyid="5"} 6.0' in text
    denied = make_app(db, NOW, metrics__allowed_ips="10.0.0.1").get("/metrics", expect_errors=True)
    assert denied.status_int == 403
    locked = make_app(db, NOW, metrics__token="s3cret")
    assert locked.get("/metrics", expect_errors=True).status_int == 401
    assert locked.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_int == 200


def samples(text: str, family: str) -> dict[str, float]:
    """The samples of one family in an exposition: {labels: value}."""
    out = {}
    for line in text.splitlines():
        if line.startswith(family + "{") or line.startswith(family + " "):
            labels, value = line[len(family):].rsplit(" ", 1)
            out[labels] = float(value)
    return out


def test_live_fallback_counter_is_scraped_before_any_fallback(db):
    """monitoring.md 4: alx_report_api_live_fallback_total{reason} with `never_filled` and `error`
    is in every scrape (0 until a page is served from live data), then counts each such page."""
    b = new_site(db)
    worked_examples(b)
    token = api_token(b, 5)  # company 5 is never synced: its pages are served live
    app = make_app(db, NOW)
    text = app.get("/metrics").text
    assert "# TYPE alx_report_api_live_fallback_total counter" in text
    before = samples(text, "alx_report_api_live_fallback_total")
    assert set(before) == {'{reason="never_filled"}', '{reason="error"}'}
    assert progress(app, token, limit=2).status_int == 200
    after = samples(app.get("/metrics").text, "alx_report_api_live_fallback_total")
    assert after == {**before, '{reason="never_filled"}': before['{reason="never_filled"}'] + 1}


def test_health_checks_and_score(db):
    b = new_site(db)
    worked_examples(b)
    settings = task_env(db, NOW).settings
    state = health.evaluate(db, Moodle(db), settings, NOW)
    by_name = {c.name: c.status for c in state.checks}
    # nothing has run yet and company 5 is not populated: a fresh install is not "critical" for data
    assert by_name["data"] == "warning" and by_name["cron"] == "error" and by_name["service"] == "error"
    assert by_name["database"] in ("ok", "warning") and by_name["tables"] == "ok" and by_name["webservices"] == "ok"
    api_token(b, 5)
    sync_task.execute(task_env(db, NOW))
    state = health.evaluate(db, Moodle(db), settings, NOW)
    by_name = {c.name: c.status for c in state.checks}
    assert by_name["data"] == "ok" and by_name["service"] == "ok" and by_name["sync"] == "ok"
    errors = sum(c.status == "error" for c in state.checks)
    warnings = sum(c.status == "warning" for c in state.checks)
    assert state.score == max(0, 100 - 20 * errors - 10 * warnings)
    assert state.as_dict()["overall"] == state.overall


def test_a_disabled_task_is_left_out_of_the_cron_check(db):
    """monitoring.md 2: whoever evaluates health (alert check, /metrics, the control center)."""
    new_site(db)
    env = task_env(db, NOW, scheduled_tasks__sync_reporting_data_task="disabled")
    manager = TaskManager(db, definitions(env.settings), "UTC", clock=lambda: NOW, output=lambda _: None,
                          context=lambda m: env)
    assert manager.run(manager.find("check_alerts_task")) == "success"

    def cron(settings):
        return next(c for c in health.evaluate(db, Moodle(db), settings, NOW).checks if c.name == "cron")

    assert cron(env.settings).status == "ok"
    assert cron(task_env(db, NOW).settings).detail == "Late: sync_reporting_data_task"


@pytest.mark.parametrize("db", ["postgresql", "mariadb"], indirect=True)  # SQLite has no server to lose
def test_readyz_is_503_when_the_database_is_unreachable(db):
    new_site(db)
    parts = urlsplit(db.url)
    proxy = Proxy(parts.hostname, parts.port)
    through = engines.connect(db.url.replace(f":{parts.port}/", f":{proxy.port}/"), db.prefix)
    app = make_app(through, NOW)
    assert app.get("/readyz").status_int == 200
    proxy.cut()
    ready = app.get("/readyz", expect_errors=True)
    assert ready.status_int == 503 and ready.json["status"] == "unavailable"
    assert ready.json["reason"].startswith("database unavailable: ")
    assert app.get("/healthz").text == "OK"


def test_a_scrape_while_a_worker_starts_is_answered(sqlite_db, tmp_path, monkeypatch):
    """A gunicorn worker's counter file exists, empty, a moment before its header is written;
    prometheus_client's reader failed the whole scrape with a 500 on it (seen in a suite run).
    Such a file is left out (its values are 0); the others are read."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    new_site(sqlite_db)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    worker = MmapedDict(str(tmp_path / "counter_4241.db"))  # a running worker's file, as it writes it
    worker.write_value(mmap_key("alx_report_api_requests", "alx_report_api_requests_total", ["function", "result"],
                                ["x", "ok"], "a worker's counter"), 3.0, 0.0)
    worker.close()
    (tmp_path / "counter_4242.db").write_bytes(b"")  # a worker that is starting
    resp = make_app(sqlite_db, NOW).get("/metrics")
    assert resp.status_int == 200 and 'alx_report_api_requests_total{function="x",result="ok"} 3.0' in resp.text
