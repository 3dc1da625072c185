"""Alerts raised where things happen (monitoring.md 3.2 "inline"), through real requests and tasks."""

import json

from local_alx_report_api.classes import inline_alerts
from local_alx_report_api.task import reconcile_task
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from moodle_core.taskmanager import TaskDef, TaskManager
from tests.sites import NOW, api_token, new_site, worked_examples
from tests.tasks import task_env
from tests.webapp import make_app, post, progress


def alerts_of(db, alert_type):
    return db.rows("SELECT severity, subject, message, occurrences, resolved FROM {t:local_alx_api_alerts} "
                   "WHERE alert_type = ? ORDER BY id", (alert_type,))


def test_first_rate_limit_rejection_of_the_day_raises_once(db):
    b = new_site(db)
    worked_examples(b)
    token = api_token(b, 5)
    app = make_app(db, NOW, local_alx_report_api__rate_limit="1")
    progress(app, token)
    for _ in range(3):
        assert json.loads(progress(app, token).body)["errorcode"] == "ratelimitexceeded"
    userid = db.scalar("SELECT userid FROM {t:external_tokens} WHERE token = ?", (token,))
    assert alerts_of(db, "rate_limit_exceeded") == [
        ("high", f"user:{userid}", "User API User from Acme Learning Ltd exceeded rate limit (1/1 requests)", 1, 0)]


def test_invalid_token_burst_from_one_ip(db):
    new_site(db)
    app = make_app(db, NOW)
    for _ in range(10):
        post(app, wstoken="nope", wsfunction="core_webservice_get_site_info")
    rows = alerts_of(db, "security")
    assert rows == [("high", "ip:127.0.0.1", "Repeated invalid token attempts: 10 in the last 15 minutes from "
                                             "127.0.0.1", 1, 0)]


def test_sync_failures_raise_at_the_threshold_and_success_resolves(db):
    b = new_site(db)
    worked_examples(b)
    sync_task.execute(task_env(db, NOW))
    db.execute("UPDATE {t:local_alx_api_sync_status} SET state_data = '{broken' WHERE companyid = 5 AND kind = 'cron'")
    for n in range(3):
        sync_task.execute(task_env(db, NOW + n))
    rows = alerts_of(db, "sync")
    assert [(r[0], r[1], r[4]) for r in rows] == [("high", "company:5", 0)]
    assert rows[0][2].startswith("Sync failed 3 times in a row for company acme: JSONDecodeError")
    db.execute("UPDATE {t:local_alx_api_sync_status} SET state_data = NULL WHERE companyid = 5 AND kind = 'cron'")
    sync_task.execute(task_env(db, NOW + 10))
    assert alerts_of(db, "sync")[0][4] == 1


def test_task_failures_raise_and_success_resolves(db, tmp_path, monkeypatch):
    new_site(db)
    monkeypatch.setenv("FAKE_TASK_LOG", str(tmp_path / "log"))
    monkeypatch.setenv("FAKE_TASK_FAIL", "1")
    task = TaskDef("\\local_alx_report_api\\task\\fake", "tests.fake_tasks", "* * * * *")
    settings = task_env(db, NOW).settings
    manager = TaskManager(db, [task], "UTC", clock=lambda: NOW, output=lambda t: None,
                          on_result=lambda t, s: inline_alerts.task_result(db, settings, NOW, t, s))
    for _ in range(3):
        manager.run(task)
    assert [(r[1], r[4]) for r in alerts_of(db, "system")] == [("task:\\local_alx_report_api\\task\\fake", 0)]
    monkeypatch.delenv("FAKE_TASK_FAIL")
    manager.run(task)
    assert alerts_of(db, "system")[0][4] == 1


def test_reconcile_drift_raises_by_size(db):
    b = new_site(db)
    worked_examples(b)
    sync_task.execute(task_env(db, NOW))
    db.execute("UPDATE {t:modules} SET visible = 0 WHERE id = 1")  # invisible to sync: reconcile heals it
    reconcile_task.execute(task_env(db, NOW + 10))
    rows = alerts_of(db, "sync")
    assert rows and rows[0][0] == "medium" and rows[0][1] == "company:5:reconcile"
    assert rows[0][2].startswith("Reconcile corrected ")
    data = json.loads(db.scalar("SELECT alert_data FROM {t:local_alx_api_alerts} WHERE alert_type = 'sync'"))
    assert data["examples"] and data["active_rows"] == 6


def test_error_fallback_page_raises_reliability(db):
    b = new_site(db)
    worked_examples(b)
    token = api_token(b, 5)
    sync_task.execute(task_env(db, NOW))
    db.db.execute_sql(f"ALTER TABLE {db.table('local_alx_api_reporting')} RENAME TO {db.quote(db.prefix + 'gone')}")
    assert len(json.loads(progress(make_app(db, NOW), token).body)) == 6
    rows = alerts_of(db, "reliability")
    assert [(r[0], r[1]) for r in rows] == [("medium", "company:5:fallback")]
    assert rows[0][2].startswith("Live fallback used for company acme: ")
    db.db.execute_sql(f"ALTER TABLE {db.quote(db.prefix + 'gone')} RENAME TO {db.table('local_alx_api_reporting')}")
