"""The named DB lock shared by populate, cron and the admin pages (tasks.md 3.3)."""

import subprocess
import sys
import textwrap
import time

import pytest

from moodle_core import engines
from moodle_core.engines import LockBusy


def second_handle(db):
    """Another 'runner': a separate engine (own connections) on the same database."""
    return engines.connect(db.url, db.prefix)


def test_a_lock_excludes_other_holders_and_is_released(db):
    other = second_handle(db)
    with db.lock("company_1"):
        with pytest.raises(LockBusy):
            with other.lock("company_1"):
                pass
        with other.lock("company_2"):  # other names are independent
            pass
    with other.lock("company_1"):
        pass


def test_waiting_for_a_lock_times_out(db):
    other = second_handle(db)
    with db.lock("task_x"):
        started = time.monotonic()
        with pytest.raises(LockBusy):
            with other.lock("task_x", timeout=0.3):
                pass
        assert time.monotonic() - started >= 0.3


def test_the_lock_of_a_killed_process_is_recovered(db):
    code = textwrap.dedent(f"""
        import sys, time
        from moodle_core import engines
        e = engines.connect({db.url!r}, {db.prefix!r})
        with e.lock("company_7"):
            print("held", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockBusy):
            with db.lock("company_7"):
                pass
        child.kill()
        child.wait()
        with db.lock("company_7", timeout=5):
            pass
    finally:
        child.kill()


def test_slow_queries_are_logged_with_kind_and_company(db, caplog):
    from moodle_core.engines import QUERY_COMPANY, measure_db_time

    db.slow_query_ms = 0  # every statement counts as slow here
    token = QUERY_COMPANY.set(7)
    try:
        with measure_db_time() as total, caplog.at_level("WARNING", logger="alx_report_api.db"):
            db.execute("SELECT 1 FROM (SELECT 1 AS x) t WHERE 1 = ?", (1,))
    finally:
        QUERY_COMPANY.reset(token)
    assert total[0] > 0
    line = caplog.records[-1].getMessage()
    assert line.startswith("slow query select ") and "(company 7)" in line and "WHERE 1 =" in line
