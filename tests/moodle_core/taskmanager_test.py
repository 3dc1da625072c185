"""The task manager: due tasks, fail delay, locks between runners, crashed runners (tasks.md 3–4)."""

import subprocess
import sys
import textwrap
import threading

import pytest

from moodle_core import engines
from moodle_core.taskmanager import TaskDef, TaskManager
from tests.sites import NOW, new_site

HOURLY = TaskDef("\\local_alx_report_api\\task\\fake_hourly", "tests.fake_tasks", "0 * * * *")
EVERY = TaskDef("\\local_alx_report_api\\task\\fake_every", "tests.fake_tasks", "* * * * *")


@pytest.fixture
def site(db, tmp_path, monkeypatch):
    new_site(db)
    monkeypatch.setenv("FAKE_TASK_LOG", str(tmp_path / "runs.log"))
    (tmp_path / "runs.log").write_text("")
    return db, tmp_path / "runs.log"


def manager(engine, now, tasks=(HOURLY, EVERY)):
    clock = now if callable(now) else (lambda: now)
    return TaskManager(engine, list(tasks), "UTC", clock=clock, output=lambda text: None)


def starts(log):
    return log.read_text().count("start")


def test_new_tasks_wait_for_their_next_run_and_then_run_once(site):
    db, log = site
    m = manager(db, NOW)  # 15:00:00 exactly
    assert m.run_pass(1800) == []  # state created: next runs lie after now
    assert m.state(HOURLY).nextrun == NOW + 3600 and m.state(EVERY).nextrun == NOW + 60
    assert manager(db, NOW + 60).run_pass(1800) == [("fake_every", "success")]
    outcomes = manager(db, NOW + 3600).run_pass(1800)
    assert sorted(outcomes) == [("fake_every", "success"), ("fake_hourly", "success")]
    assert outcomes[0][0] == "fake_hourly"  # never run before: first
    state = m.state(HOURLY)
    assert (state.status, state.lastrun, state.nextrun, state.data["summary"]) == ("success", NOW + 3600,
                                                                                  NOW + 7200, {"ok": 1})
    assert starts(log) == 3


def test_failures_back_off_and_count(site, monkeypatch):
    db, _ = site
    monkeypatch.setenv("FAKE_TASK_FAIL", "1")
    m = manager(db, NOW, [EVERY])
    m.ensure_states(NOW - 60)
    delays = []
    for _ in range(4):
        assert m.run(EVERY) == "failed"
        delays.append(m.state(EVERY).faildelay)
    state = m.state(EVERY)
    assert delays == [60, 120, 240, 480] and state.consecutive_failures == 4
    assert state.nextrun == NOW + 480 and state.error == "RuntimeError: asked to fail"
    monkeypatch.delenv("FAKE_TASK_FAIL")
    assert manager(db, NOW + 480, [EVERY]).run_pass(1800) == [("fake_every", "success")]
    assert (m.state(EVERY).faildelay, m.state(EVERY).consecutive_failures) == (0, 0)


def test_two_runners_started_together_run_the_task_once(site, monkeypatch):
    db, log = site
    monkeypatch.setenv("FAKE_TASK_SLEEP", "1.0")
    manager(db, NOW - 3600, [HOURLY]).ensure_states(NOW - 3600)
    results, barrier = [], threading.Barrier(2)

    def runner():
        other = engines.connect(db.url, db.prefix)  # a runner of its own, as on another host
        barrier.wait()
        results.append(manager(other, NOW, [HOURLY]).run_pass(1800))
        other.db.close()

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = sorted(o for r in results for o in r)
    assert starts(log) == 1
    assert ("fake_hourly", "success") in outcomes and all(o[1] in ("success", "busy", "not due") for o in outcomes)


def test_a_killed_runner_releases_its_lock_and_the_run_is_recorded_as_failed(site, tmp_path):
    db, log = site
    code = textwrap.dedent(f"""
        import os
        os.environ["FAKE_TASK_SLEEP"] = "60"
        os.environ["FAKE_TASK_LOG"] = {str(log)!r}
        from moodle_core import engines
        from moodle_core.taskmanager import TaskDef, TaskManager
        e = engines.connect({db.url!r}, {db.prefix!r})
        task = TaskDef({HOURLY.classname!r}, "tests.fake_tasks", "0 * * * *")
        TaskManager(e, [task], "UTC", clock=lambda: {NOW}, output=print).run(task)
    """)
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        for _ in range(200):
            if starts(log):
                break
            threading.Event().wait(0.05)
        assert manager(db, NOW, [HOURLY]).run(HOURLY) == "busy"
        child.kill()
        child.wait()
    finally:
        child.kill()
    m = manager(db, NOW + 10, [HOURLY])
    assert m.state(HOURLY).status == "running"
    assert m.run(HOURLY) == "success"
    state = m.state(HOURLY)
    assert state.status == "success" and state.consecutive_failures == 0
    assert starts(log) == 2


def test_disabled_tasks_are_never_due(site):
    db, log = site
    off = TaskDef(EVERY.classname, "tests.fake_tasks", "disabled")
    m = manager(db, NOW, [off])
    m.ensure_states(NOW - 120)
    assert m.due_tasks(NOW + 3600) == [] and m.run_pass(60) == []
    assert m.run(off) == "success"  # task run NAME ignores the schedule and the disabled flag
