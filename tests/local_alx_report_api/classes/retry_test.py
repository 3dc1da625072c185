"""Retries with backoff against a real fault (sync-and-cache.md 10): PostgreSQL terminates the
service's connection while its page read waits; the retry reconnects and the client gets its page."""

import json
import threading
import time

import pytest

from local_alx_report_api.task import sync_reporting_data_task as sync_task
from moodle_core import engines
from tests.sites import NOW, api_token, new_site, worked_examples
from tests.tasks import task_env
from tests.webapp import make_app, progress


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_a_terminated_connection_is_retried(db):
    b = new_site(db)
    worked_examples(b)
    token = api_token(b, 5)
    sync_task.execute(task_env(db, NOW))
    app = make_app(db, NOW, database__retry_base_delay="0.05")
    blocker = engines.connect(db.url, db.prefix)
    blocker.db.execute_sql("BEGIN")
    blocker.db.execute_sql(f"LOCK TABLE {db.table('local_alx_api_reporting')} IN ACCESS EXCLUSIVE MODE")
    answer = {}
    request = threading.Thread(target=lambda: answer.update(body=progress(app, token, limit=10).body))
    request.start()
    victim = None
    for _ in range(200):
        blocker.scalar("SELECT pg_stat_clear_snapshot()")  # activity is snapshotted per transaction
        victim = blocker.scalar("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND "
                                "datname = current_database() AND pid <> pg_backend_pid() AND query LIKE "
                                f"'%{db.prefix}local_alx_api_reporting%' LIMIT 1")
        if victim:
            break
        time.sleep(0.05)
    if not victim:
        blocker.db.execute_sql("COMMIT")  # let teardown drop the tables
    assert victim, "the page read waits on the lock"
    blocker.scalar("SELECT pg_terminate_backend(?)", (victim,))
    blocker.db.execute_sql("COMMIT")
    request.join(30)
    rows = json.loads(answer["body"])
    assert [r["userid"] for r in rows] == [101, 102, 103, 104, 105, 106]
    row = db.execute("SELECT data_source, additional_data FROM {t:local_alx_api_logs} ORDER BY id DESC LIMIT 1").fetchone()
    assert row[0] == "table" and "fallback_reason" not in json.loads(row[1])
    blocker.db.close()
