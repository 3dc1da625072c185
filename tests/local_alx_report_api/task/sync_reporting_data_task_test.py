"""sync_reporting_data_task: every change source alone changes exactly the affected rows
(tasks.md 5.3, 5.4), time limit and resume (ST2, ST3), failures stay per company (ST6)."""

import pytest

from local_alx_report_api.classes import company_state
from local_alx_report_api.task import sync_reporting_data_task as task
from tests.oracle import expected_rows, stored
from tests.sites import NOW, full_company, new_site, worked_examples
from tests.tasks import task_env

T1 = NOW + 100  # when the Moodle change happens
T2 = NOW + 200  # when the next sync runs


def seqs(db, companyid=5):
    return {(r[0], r[1]): (int(r[2]), int(r[3])) for r in db.rows(
        "SELECT userid, courseid, change_seq, is_deleted FROM {t:local_alx_api_reporting} WHERE companyid = ?",
        (companyid,))}


@pytest.fixture
def synced(db):
    """The worked-example site after its first (full) sync at NOW."""
    b = new_site(db)
    ids = worked_examples(b)
    summary = task.execute(task_env(db, NOW))
    assert summary["processed"] == 1 and summary["inserted"] == 6
    assert stored(db, 5) == expected_rows(db, 5, NOW)
    return db, b, ids


def changed_after_sync(db, now=T2):
    before = seqs(db)
    summary = task.execute(task_env(db, now))
    after = seqs(db)
    assert stored(db, 5) == expected_rows(db, 5, now), "the table matches the live truth"
    return {k for k in after if before.get(k) != after[k]}, summary


def test_second_run_without_changes_writes_nothing(synced):
    db, _, _ = synced
    changed, summary = changed_after_sync(db)
    assert changed == set() and summary["unchanged"] == summary["pairs"]


@pytest.mark.parametrize("change, expected", [
    # activity completion (cmc)
    (lambda db, b, ids: (b.activity(201, 103, 1, T1), b.flush()), {(103, 12)}),
    # course completion, timecompleted (cc_completed)
    (lambda db, b, ids: db.execute("UPDATE {t:course_completions} SET timecompleted = ? WHERE userid = 104", (T1,)),
     {(104, 13)}),
    # course started (cc_started)
    (lambda db, b, ids: (b.course_completion(103, 12, timestarted=T1), b.flush()), {(103, 12)}),
    # new enrolment with its role (ue_created, ra)
    (lambda db, b, ids: (b.enrol(ids["manual13"], 101, timecreated=T1), b.assign(5, 13, 101, T1), b.flush()),
     {(101, 13)}),
    # enrolment suspended (ue_modified)
    (lambda db, b, ids: db.execute("UPDATE {t:user_enrolments} SET status = 1, timemodified = ? WHERE userid = 105",
                                   (T1,)), {(105, 12)}),
    # profile edit (user)
    (lambda db, b, ids: db.execute("UPDATE {t:user} SET lastname = 'Reese-Connor', timemodified = ? WHERE id = 102",
                                   (T1,)), {(102, 12)}),
    # user suspended (user)
    (lambda db, b, ids: db.execute("UPDATE {t:user} SET suspended = 1, timemodified = ? WHERE id = 106", (T1,)),
     {(106, 12)}),
    # course renamed (course)
    (lambda db, b, ids: db.execute("UPDATE {t:course} SET fullname = 'No Tracking II', timemodified = ? WHERE id = 13",
                                   (T1,)), {(104, 13)}),
    # course hidden (course)
    (lambda db, b, ids: db.execute("UPDATE {t:course} SET visible = 0, timemodified = ? WHERE id = 12", (T1,)),
     {(101, 12), (102, 12), (103, 12), (105, 12), (106, 12)}),
    # a new tracked activity changes the percentages of the course (cm_added)
    (lambda db, b, ids: db.execute("INSERT INTO {t:course_modules} (course, module, instance, section, added, "
                                   "completion, deletioninprogress) VALUES (12, 1, 0, 0, ?, 1, 0)", (T1,)),
     {(101, 12), (105, 12)}),
    # completion settings edited: only cacherev moves (cacherev)
    (lambda db, b, ids: (db.execute("UPDATE {t:course_modules} SET completion = 0 WHERE id = 203"),
                         db.execute("UPDATE {t:course} SET cacherev = ? WHERE id = 12", (T1,))),
     {(101, 12)}),  # 2 of 2 tracked now; 105 stays at 100
], ids=["cmc", "cc_completed", "cc_started", "ue_created+ra", "ue_modified", "user_profile", "user_suspended",
        "course_rename", "course_hidden", "cm_added", "cacherev"])
def test_each_timestamped_source_alone(synced, change, expected):
    db, b, ids = synced
    change(db, b, ids)
    changed, _ = changed_after_sync(db)
    assert changed == expected


@pytest.mark.parametrize("change, expected", [
    (lambda db, b, ids: db.execute("DELETE FROM {t:user_enrolments} WHERE userid = 101"), {(101, 12)}),
    (lambda db, b, ids: db.execute("DELETE FROM {t:company_users} WHERE userid = 102"), {(102, 12)}),
    (lambda db, b, ids: db.execute("UPDATE {t:company_users} SET suspended = 1 WHERE userid = 103"), {(103, 12)}),
    (lambda db, b, ids: db.execute("DELETE FROM {t:role_assignments} WHERE userid = 104"), {(104, 13)}),
    (lambda db, b, ids: db.execute("DELETE FROM {t:company_course} WHERE courseid = 13"), {(104, 13)}),
    # 106 keeps the manual enrolment, so scope is unchanged: its earlier start is healed by reconcile (5.5)
    (lambda db, b, ids: db.execute("UPDATE {t:enrol} SET status = 1 WHERE id = ?", (ids["self12"],)), set()),
    (lambda db, b, ids: db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, "
                                   "timecreated, timemodified) VALUES (5, 'course_13', 0, 0, 0)"), {(104, 13)}),
    # an enrolment whose end has just passed: nothing changed in Moodle, the clock did
    (lambda db, b, ids: db.execute("UPDATE {t:user_enrolments} SET timeend = ? WHERE userid = 103", (NOW + 150,)),
     {(103, 12)}),
], ids=["unenrol", "left_company", "member_suspended", "role_unassigned", "course_removed", "instance_off_other_left",
        "course_switch", "enrolment_ended"])
def test_changes_without_timestamps_by_set_difference(synced, change, expected):
    db, b, ids = synced
    change(db, b, ids)
    before = seqs(db)
    summary = task.execute(task_env(db, T2))
    changed = {k for k, v in seqs(db).items() if before.get(k) != v}
    assert changed == expected and summary["deleted"] == len(expected)
    assert all(seqs(db)[k][1] == 1 for k in expected), "rows that left scope are soft-deleted"


def test_reentering_scope_reactivates(synced):
    db, b, ids = synced
    db.execute("DELETE FROM {t:user_enrolments} WHERE userid = 101")
    changed_after_sync(db)
    b.enrol(ids["manual12"], 101, timecreated=1704067200)  # an old timecreated: found by set difference
    b.flush()
    changed, summary = changed_after_sync(db, now=T2 + 100)
    assert changed == {(101, 12)} and summary["reactivated"] == 1 and seqs(db)[(101, 12)][1] == 0


def test_a_stopped_run_resumes_and_loses_nothing(db):
    b = new_site(db)
    full_company(b, users=60, courses=5)
    batches = []
    stop_after_two = lambda: len(batches) >= 2  # noqa: E731
    env = task_env(db, NOW, should_stop=stop_after_two, local_alx_report_api__sync_batch_size=100)
    original = env.engine.execute

    def counting(sql, params=()):
        if sql.startswith("UPDATE {t:local_alx_api_sync_status} SET state_data"):
            batches.append(1)
        return original(sql, params)

    env.engine.execute = counting
    summary = task.execute(env)
    env.engine.execute = original
    assert summary["stopped"] == "time_limit"
    state = company_state.load(db, 1, NOW)
    assert state["pending"]["after"] != [0, 0] and "cutoffs" not in state
    assert 0 < len(stored(db, 1)) < 300
    summary = task.execute(task_env(db, NOW + 60, local_alx_report_api__sync_batch_size=100))
    assert summary["stopped"] == "complete"
    assert stored(db, 1) == expected_rows(db, 1, NOW + 60) and len(stored(db, 1)) == 300
    assert company_state.load(db, 1, NOW)["pending"] is None


def test_a_busy_company_is_skipped_and_others_run(synced):
    db, b, _ = synced
    b.company("Other", "other", companyid=6)
    b.flush()
    lines = []
    with db.lock("company_5"):
        summary = task.execute(task_env(db, T2, lines))
    assert summary["skipped"] == 1 and summary["processed"] == 1
    assert "Company 5 (acme) is busy; skipped" in lines


def test_a_runner_killed_mid_sync_loses_no_change(db, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time as clock

    from local_alx_report_api.classes import installer
    from moodle_core import generator

    generator.generate(db, companies=2, users=400, courses=6, enrolments_per_user=4, seed=9)
    installer.install(db, NOW)
    db.db.close()
    env = {**os.environ, "ALX_DATABASE_URL": db.url, "ALX_DATABASE_PREFIX": db.prefix,
           "ALX_REPORT_API_SETTINGS": str(tmp_path / "none.ini"), "ALX_LOCAL_ALX_REPORT_API_SYNC_BATCH_SIZE": "100"}
    child = subprocess.Popen([sys.executable, "-m", "local_alx_report_api.cli", "task", "run",
                              "sync_reporting_data_task"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rows = lambda: db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting}")  # noqa: E731
    deadline = clock.monotonic() + 60
    while rows() < 150 and clock.monotonic() < deadline and child.poll() is None:
        clock.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    partial = rows()
    assert 0 < partial, child.stderr.read()
    done = subprocess.run([sys.executable, "-m", "local_alx_report_api.cli", "task", "run", "sync_reporting_data_task"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    now = int(clock.time())
    for companyid in (1, 2):
        assert stored(db, companyid) == expected_rows(db, companyid, now)


def test_a_failing_company_never_stops_the_others(synced):
    db, b, _ = synced
    b.company("Other", "other", companyid=6)
    b.course("Other course", "OC", courseid=20)
    b.company_course(6, 20)
    b.flush()
    # a real fault: company 5's stored sync state is no longer readable
    db.execute("UPDATE {t:local_alx_api_sync_status} SET state_data = '{broken' WHERE companyid = 5 AND kind = 'cron'")
    lines = []
    summary = task.execute(task_env(db, T2, lines))
    assert (summary["failed"], summary["processed"]) == (1, 1)
    row = db.execute("SELECT last_sync_status, consecutive_failures, last_sync_error FROM {t:local_alx_api_sync_status} "
                     "WHERE companyid = 5 AND kind = 'cron'").fetchone()
    assert row[0] == "failed" and row[1] == 1 and row[2].startswith("JSONDecodeError")
    assert any(line.startswith("Company 5 (acme) failed (1 in a row)") for line in lines)
