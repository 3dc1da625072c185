"""reconcile_task heals what change detection cannot see and reports it (tasks.md 9);
cleanup_task deletes exactly what tasks.md 8 lists."""

import hashlib

import pytest

from local_alx_report_api.classes import company_state
from local_alx_report_api.task import cleanup_task, reconcile_task
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.oracle import expected_rows, stored
from tests.sites import NOW, acme_and_globex, full_company, new_site, worked_examples
from tests.tasks import task_env

DAY = 86400


def test_reconcile_reports_zero_on_a_healthy_site_and_heals_drift(db):
    b = new_site(db)
    ids = worked_examples(b)
    sync_task.execute(task_env(db, NOW))
    summary = reconcile_task.execute(task_env(db, NOW + 10))
    assert (summary["companies"], summary["drift"]) == (1, 0)
    # changes no sync can see: a completion row deleted, a module type disabled, an instance switched off
    db.execute("DELETE FROM {t:course_modules_completion} WHERE userid = 101 AND coursemoduleid = 202")
    db.execute("UPDATE {t:modules} SET visible = 0 WHERE id = 1")
    db.execute("UPDATE {t:enrol} SET status = 1 WHERE id = ?", (ids["self12"],))
    sync_task.execute(task_env(db, NOW + 20))
    assert stored(db, 5) != expected_rows(db, 5, NOW + 30)
    lines = []
    summary = reconcile_task.execute(task_env(db, NOW + 30, lines))
    assert summary["drift"] > 0
    assert stored(db, 5) == expected_rows(db, 5, NOW + 30)
    last = company_state.load(db, 5, NOW)["last_reconcile"]
    assert last["drift"]["updated"] == summary["drift"] and last["checked"] == 6
    assert any(line.startswith("Company 5 (acme): 6 pairs checked, drift") for line in lines)


def test_a_stopped_reconcile_resumes_at_its_key(db):
    b = new_site(db)
    full_company(b, users=60, courses=5)
    rows = lambda: db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = 1")  # noqa: E731
    env = task_env(db, NOW, should_stop=lambda: rows() >= 100, local_alx_report_api__sync_batch_size=100)
    assert reconcile_task.execute(env)["stopped"] is True
    assert rows() == 100 and company_state.load(db, 1, NOW)["reconcile_after"]["after"] != [0, 0]
    summary = reconcile_task.execute(task_env(db, NOW + 5, local_alx_report_api__sync_batch_size=100))
    assert (summary["stopped"], summary["drift"]) == (False, 300)
    assert stored(db, 1) == expected_rows(db, 1, NOW) and rows() == 300
    state = company_state.load(db, 1, NOW)
    assert "reconcile_after" not in state and state["last_reconcile"]["drift"]["inserted"] == 300


def _log(db, when):
    db.execute("INSERT INTO {t:local_alx_api_logs} (userid, endpoint, record_count, timeaccessed, companyid, counted, "
               "response_bytes) VALUES (1, 'x', 0, ?, 0, 0, 0)", (when,))


def test_cleanup_deletes_exactly_the_expired_and_old_rows(db):
    b = new_site(db)
    b.user("api", "A", "B", "a@b.c", userid=50)
    b.token(50, 1, "c" * 32)
    b.flush()
    for key, expires in (("old", NOW - 1), ("fresh", NOW + 60)):
        db.execute("INSERT INTO {t:local_alx_api_cache} (cache_key, companyid, cache_data, cache_timestamp, expires_at, "
                   "hit_count, last_accessed) VALUES (?, 1, '{}', 0, ?, 0, 0)", (key, expires))
    for when in (NOW - 91 * DAY, NOW - 89 * DAY):
        _log(db, when)
    for resolved, timeresolved in ((1, NOW - 91 * DAY), (1, NOW - DAY), (0, None)):
        db.execute("INSERT INTO {t:local_alx_api_alerts} (alert_type, severity, message, timecreated, resolved, "
                   "timeresolved) VALUES ('x', 'low', 'm', 0, ?, ?)", (resolved, timeresolved))
    for kind, status, finished, token in (("job", "success", NOW - 31 * DAY, "j1"), ("job", "running", 0, "j2"),
                                          ("api", "success", 0, hashlib.sha256(b"gone").hexdigest()),
                                          ("api", "success", 0, hashlib.sha256(b"c" * 32).hexdigest())):
        db.execute("INSERT INTO {t:local_alx_api_sync_status} (companyid, token_hash, kind, last_sync_status, "
                   "last_sync_timestamp, created_at, updated_at) VALUES (1, ?, ?, ?, ?, 0, ?)",
                   (token, kind, status, finished, NOW - 31 * DAY))
    summary = cleanup_task.execute(task_env(db, NOW))
    assert summary == {"cache": 1, "logs": 1, "alerts": 1, "jobs": 1, "client_state": 1}
    assert [r[0] for r in db.rows("SELECT cache_key FROM {t:local_alx_api_cache}")] == ["fresh"]
    assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_alerts}") == 2
    assert sorted(r[0] for r in db.rows("SELECT token_hash FROM {t:local_alx_api_sync_status}")) == sorted(
        ["j2", hashlib.sha256(b"c" * 32).hexdigest()])
    # log_retention_days = 0 keeps logs forever
    _log(db, 1)
    assert cleanup_task.execute(task_env(db, NOW, local_alx_report_api__log_retention_days=0))["logs"] == 0


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # only SQLite stores an unreadable number
def test_one_failing_company_does_not_stop_the_others(db):
    """Issue 14 (12): an unreadable row in company 5 fails company 5 only; company 6 is reconciled,
    and the task fails at the end (its fail delay and alert) saying so."""
    acme_and_globex(db)  # globex (6) shares course 12 and learner 101
    sync_task.execute(task_env(db, NOW))
    db.execute("UPDATE {t:local_alx_api_reporting} SET percentage = 'not a number' WHERE companyid = 5 AND "
               "userid = 101")
    db.execute("DELETE FROM {t:local_alx_api_reporting} WHERE companyid = 6")  # drift to heal
    lines = []
    with pytest.raises(RuntimeError, match="reconcile failed for 1 of 2 companies"):
        reconcile_task.execute(task_env(db, NOW + 10, lines))
    assert stored(db, 6) == expected_rows(db, 6, NOW + 10) != {}
    assert any(line.startswith("Company 5 (acme) failed:") for line in lines)
