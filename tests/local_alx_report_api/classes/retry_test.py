"""Retries with backoff against a real fault (sync-and-cache.md 10): PostgreSQL terminates the
service's connection while its page read waits; the retry reconnects and the client gets its page."""

import json
import threading
import time

import pytest
from prometheus_client import REGISTRY

from local_alx_report_api.classes import prometheus, pulls  # noqa: F401 - prometheus counts the retries
from local_alx_report_api.classes.progress import Scope
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
    before = retries()
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
    assert retries() >= before + 1  # counted in alx_report_api_db_retries_total (issue 14, 13)


def retries() -> float:
    return REGISTRY.get_sample_value("alx_report_api_db_retries_total") or 0.0


@pytest.fixture
def acme(db):
    b = new_site(db)
    worked_examples(b)
    token = api_token(b, 5)
    sync_task.execute(task_env(db, NOW))
    return token


def test_a_bug_is_not_answered_from_live_data(db, acme, caplog):
    """Issue 14 (13): only the database's errors fall back to live data; a bug in reading the page
    raises as it is (the endpoint answers unexpectederror and logs its traceback)."""
    req = pulls.PageRequest(5, "h" * 64, 1, 10, 0, Scope.load(db, 5, ["student"]), 0, 24, True, True, NOW, "UTC")

    def broken_read(definition, after, offset, dataversion):
        return {}["missing"]

    with pytest.raises(KeyError):
        pulls.serve(db, req, read_table=broken_read, to_elements=list, attempts=3, base_delay=0.01)
    # a database error (the table is gone) is answered from live data, logged with its traceback
    db.db.execute_sql(f"ALTER TABLE {db.table('local_alx_api_reporting')} RENAME TO {db.quote(db.prefix + 'gone')}")
    before = retries()
    try:
        outcome = pulls.serve(db, req, read_table=lambda d, a, o, v: pulls.Slice([], None, 0),
                              to_elements=lambda rows: [r.progress.key for r in rows], attempts=3, base_delay=0.01)
    finally:
        db.db.execute_sql(f"ALTER TABLE {db.quote(db.prefix + 'gone')} RENAME TO {db.table('local_alx_api_reporting')}")
    assert outcome.source == "live" and outcome.slice.count == 6
    assert retries() == before  # a missing table is not transient: not retried
    assert "answering from live data" in caplog.text and "Traceback" in caplog.text


def test_a_bug_in_the_metrics_collector_is_logged_not_a_database_outage(db, acme, caplog):
    from local_alx_report_api.classes.prometheus import DatabaseCollector

    class Site:  # what the collector reads, with settings missing: a programming error
        engine, moodle, settings, timezone = db, None, None, "UTC"
        clock = staticmethod(lambda: NOW)

    families = {f.name: f for f in DatabaseCollector(Site()).collect()}
    assert "alx_report_api_database_up" not in families and "alx_report_api_up" in families
    assert "reading the database gauges failed" in caplog.text and "Traceback" in caplog.text
