"""Formulas and scope (course-progress.md sections 7–9, worked examples of section 14)."""

import pytest

from local_alx_report_api.classes.progress import Scope, live_rows, percentage_hundredths
from tests.oracle import expected_rows
from tests.sites import NOW, acme_and_globex, new_site, worked_examples


@pytest.mark.parametrize("done, tracked, expected", [
    (2, 3, 6667), (1, 3, 3333), (1, 6, 1667), (1, 8, 1250), (1, 800, 13), (3, 3, 10000), (0, 4, 0)])
def test_percentage_rounds_halves_up_exactly(done, tracked, expected):
    assert percentage_hundredths(done, tracked, completed=False) == expected


def test_percentage_of_a_completed_course_is_100_and_without_tracking_0():
    assert percentage_hundredths(1, 3, completed=True) == 10000
    assert percentage_hundredths(0, 0, completed=False) == 0


def rows_of(engine, companyid=5, now=NOW, roles=("student",)):
    scope = Scope.load(engine, companyid, roles)
    return {p.key: p for p in live_rows(engine, scope, now)}


def test_worked_examples_a_to_g(db):
    b = new_site(db)
    worked_examples(b)
    rows = rows_of(db)
    a = rows[(101, 12)]
    assert (a.percentage, a.status, a.timecompleted, a.timestarted) == (6667, "in_progress", 0, 1705309200)
    assert (a.firstname, a.lastname, a.email, a.coursename) == ("Sarah", "Connor", "sarah@example.com", "Safety Training")
    bb = rows[(102, 12)]
    assert (bb.percentage, bb.status, bb.timecompleted, bb.timestarted) == (10000, "completed", 1705329000, 1705309200)
    c = rows[(103, 12)]
    assert (c.percentage, c.status, c.timestarted) == (0, "not_started", 1704067200)
    d = rows[(104, 13)]
    assert (d.percentage, d.status, d.timecompleted) == (0, "in_progress", 0)
    e = rows[(105, 12)]
    assert (e.percentage, e.status) == (10000, "in_progress")
    f = rows[(106, 12)]
    assert f.timestarted == 1705309200
    assert (107, 12) not in rows and (108, 12) not in rows
    assert sorted(rows) == [(101, 12), (102, 12), (103, 12), (104, 13), (105, 12), (106, 12)]
    assert rows == {k: v for k, v in rows.items()} and list(rows) == sorted(rows)  # key order
    assert {k: v.values() for k, v in rows.items()} == expected_rows(db, 5, NOW)


def test_course_switch_and_hidden_course_leave_scope(db):
    b = new_site(db)
    worked_examples(b)
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (5, 'course_12', 0, ?, ?)", (NOW, NOW))
    assert sorted(rows_of(db)) == [(104, 13)]
    db.execute("UPDATE {t:course} SET visible = 0 WHERE id = 13")
    assert rows_of(db) == {}
    db.execute("UPDATE {t:local_alx_api_settings} SET setting_value = 1 WHERE setting_name = 'course_12'")
    assert sorted(rows_of(db)) == [(101, 12), (102, 12), (103, 12), (105, 12), (106, 12)]


def test_every_scope_condition_removes_the_pair(db):
    b = new_site(db)
    ids = worked_examples(b)
    base = set(rows_of(db))
    checks = [
        ("UPDATE {t:user} SET suspended = 1 WHERE id = 101", (101, 12)),
        ("UPDATE {t:user} SET deleted = 1 WHERE id = 102", (102, 12)),
        ("UPDATE {t:company_users} SET suspended = 1 WHERE userid = 103", (103, 12)),
        ("DELETE FROM {t:role_assignments} WHERE userid = 104", (104, 13)),
        ("UPDATE {t:user_enrolments} SET status = 1 WHERE userid = 105", (105, 12)),
    ]
    for statement, gone in checks:
        db.execute(statement)
        now_rows = set(rows_of(db))
        assert gone not in now_rows, statement
        base.discard(gone)
        assert now_rows == base, statement
    # 106 has two enrolments: one suspended keeps the pair, both gone removes it
    db.execute("UPDATE {t:user_enrolments} SET status = 1 WHERE userid = 106 AND enrolid = ?", (ids["manual12"],))
    assert rows_of(db)[(106, 12)].timestarted == 1705309200
    db.execute("UPDATE {t:enrol} SET status = 1 WHERE id = ?", (ids["self12"],))
    assert (106, 12) not in rows_of(db)


def test_enrolment_window_start_and_end(db):
    b = new_site(db)
    worked_examples(b)
    db.execute("UPDATE {t:user_enrolments} SET timestart = ? WHERE userid = 103", (NOW + 10,))
    assert (103, 12) not in rows_of(db)
    assert (103, 12) in rows_of(db, now=NOW + 11)
    db.execute("UPDATE {t:user_enrolments} SET timestart = 0, timeend = ? WHERE userid = 103", (NOW + 5,))
    assert (103, 12) in rows_of(db)
    assert (103, 12) not in rows_of(db, now=NOW + 5)


def test_report_roles_setting_decides_who_counts(db):
    b = new_site(db)
    worked_examples(b)
    assert (107, 12) in rows_of(db, roles=("student", "editingteacher"))
    assert set(rows_of(db, roles=("editingteacher",))) == {(107, 12)}
    assert rows_of(db, roles=()) == {}


def test_untracked_deleted_and_disabled_modules_do_not_count(db):
    b = new_site(db)
    worked_examples(b)
    # a module being deleted and a module of a disabled type leave the tracked set
    db.execute("UPDATE {t:course_modules} SET deletioninprogress = 1 WHERE id = 203")
    assert rows_of(db)[(101, 12)].percentage == 10000  # 2 of 2
    db.execute("UPDATE {t:course_modules} SET deletioninprogress = 0 WHERE id = 203")
    db.execute("UPDATE {t:course_modules} SET module = 9 WHERE id = 202")  # survey: disabled type
    row = rows_of(db)[(101, 12)]
    assert row.percentage == 5000  # 201 done of {201, 203}
    assert {k: v.values() for k, v in rows_of(db).items()} == expected_rows(db, 5, NOW)


def test_completed_fail_only_makes_the_course_in_progress(db):
    b = new_site(db)
    worked_examples(b)
    b.activity(203, 103, 3, 1705400000)
    b.flush()
    row = rows_of(db)[(103, 12)]
    assert (row.percentage, row.status) == (0, "in_progress")


def test_user_in_two_companies_is_reported_in_both(db):
    b = acme_and_globex(db)
    b.flush()
    assert set(rows_of(db, companyid=6)) == {(101, 12)}
    assert (101, 12) in rows_of(db, companyid=5)


def test_multi_course_user_keeps_every_course(db):
    b = new_site(db)
    ids = worked_examples(b)
    b.enrol(ids["manual13"], 101, timecreated=1704067200)
    b.assign(5, 13, 101)
    b.flush()
    rows = rows_of(db)
    assert (101, 12) in rows and (101, 13) in rows
