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


def test_a_wait_blocks_in_the_server_on_one_connection_and_ends_at_release(db):
    """Issue 19: a waiter does not reconnect every poll; on PostgreSQL and MariaDB it waits inside
    the server (pg_advisory_lock with lock_timeout, GET_LOCK with a timeout) and gets the lock as
    soon as the holder lets go."""
    import threading

    other, watcher = second_handle(db), second_handle(db)
    waiting_sql = {
        "postgresql": "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        "mariadb": "SELECT id FROM information_schema.processlist WHERE info LIKE 'SELECT GET_LOCK(%' "
                   "AND state = 'User lock'",
    }.get(db.kind)
    got = []

    def wait():
        with other.lock("company_9", timeout=20):
            got.append(time.monotonic())

    with db.lock("company_9"):
        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(1.0)
        if waiting_sql:
            seen = [sorted(r[0] for r in watcher.rows(waiting_sql)) for _ in range(3) if not time.sleep(0.3)]
            assert len(seen[0]) == 1 and seen[0] == seen[1] == seen[2]  # one backend, the same throughout
        released = time.monotonic()
    waiter.join(10)
    assert got and got[0] - released < 0.15  # no 0.2 s polling step


def test_recording_sees_every_statement_in_its_block(db):
    """Issue 19: the public statement hook (statement-count tests, the benchmark's floors)."""
    db.execute("SELECT 1")
    with db.recording() as outer:
        db.execute("SELECT 2 WHERE 1 = ?", (1,))
        with db.recording() as inner:
            db.scalar("SELECT 3")
    db.execute("SELECT 4")
    assert [sql.split()[1] for sql, _ in outer] == ["2", "3"] and [sql for sql, _ in inner] == ["SELECT 3"]
    assert outer[0][1] == (1,)


def test_a_lock_set_takes_many_locks_on_one_connection_and_excludes_like_a_lock(db):
    """A sync run's lock set: the same names as `lock`, taken without waiting, many at once."""
    other = second_handle(db)
    names = [f"company_{n}" for n in range(1, 451)]  # more than one statement's worth
    with other.lock("company_7"):
        with db.lock_set() as locks:
            got = locks.take(names)
            assert got == set(names) - {"company_7"}, "a lock held elsewhere is busy"
            with pytest.raises(LockBusy):
                with other.lock("company_8"):
                    pass
            locks.release(["company_8"])
            assert locks.take(["company_8"]) == {"company_8"}, "taken again"
            locks.release(["company_8"])
            with other.lock("company_8"):  # released on its own
                pass
    with other.lock("company_9"):  # everything is released when the set closes
        pass
    with db.lock("company_9"), db.lock_set() as locks:
        assert locks.take(["company_9", "company_10"]) == {"company_10"}, "a lock of another connection"


def test_a_lock_set_waits_for_a_lock_when_asked(db):
    other = second_handle(db)
    with other.lock("company_3"), db.lock_set() as locks:
        started = time.monotonic()
        assert locks.take(["company_3"], timeout=0.3) == set()
        assert time.monotonic() - started >= 0.3
        assert locks.take(["company_4"], timeout=0.3) == {"company_4"}
