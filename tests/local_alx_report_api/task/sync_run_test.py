"""The run-wide sync (issue 16): detection once for all companies, set differences only where a
fingerprint moved, the companies where nothing changed recorded together. Many companies change
in one run, from every source of tasks.md 5.3 and 5.4 mixed; after every run each company's table
equals the live truth. Stopped runs, failing companies and states written before fingerprints
existed lose nothing."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_alx_report_api.classes import company_state, installer
from local_alx_report_api.task import sync_reporting_data_task as task
from moodle_core import generator
from tests.oracle import expected_rows, stored
from tests.tasks import task_env

START = 1770000000  # after the generator's history


class Site:
    """A generated site of several companies (some learners in two), a clock and every kind of
    Moodle change, each aimed at a (learner, course) by index."""

    def __init__(self, db, companies=6, users=60, synced=True):
        self.db, self.now = db, START
        generator.generate(db, companies=companies, users=users, courses=8, enrolments_per_user=3, seed=5)
        installer.install(db, START)
        self.companies = [r[0] for r in db.rows("SELECT id FROM {t:company} ORDER BY id")]
        self.users = [r[0] for r in db.rows("SELECT DISTINCT userid FROM {t:company_users} WHERE managertype = 0 "
                                            "ORDER BY userid")]
        self.courses = [r[0] for r in db.rows("SELECT id FROM {t:course} WHERE category <> 0 ORDER BY id")]
        first = self.companies[0]
        for user in self.users[::4]:  # a second membership: one change, two companies
            if not db.scalar("SELECT id FROM {t:company_users} WHERE companyid = ? AND userid = ?", (first, user)):
                db.execute("INSERT INTO {t:company_users} (companyid, userid, managertype, departmentid, suspended) "
                           "VALUES (?, ?, 0, 0, 0)", (first, user))
        if synced:
            self.sync()

    def sync(self, tick=61, **kw):
        self.now += tick
        return task.execute(task_env(self.db, self.now, **kw))

    def busy(self):
        """Other enrolments edited now: the run's cutoffs move on, so an older edit falls out of
        the lookback window and only the clock source sees its start or end pass."""
        first = self.db.scalar("SELECT MIN(id) FROM {t:user_enrolments}")
        self.db.execute("UPDATE {t:user_enrolments} SET timemodified = ? WHERE id = ?", (self.now, first))

    def check(self):
        for companyid in self.companies:
            assert stored(self.db, companyid) == expected_rows(self.db, companyid, self.now), f"company {companyid}"

    def _enrolment(self, user, course):
        return self.db.scalar("SELECT ue.id FROM {t:user_enrolments} ue JOIN {t:enrol} e ON e.id = ue.enrolid "
                              "WHERE ue.userid = ? AND e.courseid = ? ORDER BY ue.id LIMIT 1", (user, course))

    def change(self, kind: str, a: int, b: int) -> None:
        db, now = self.db, self.now
        user, course = self.users[a % len(self.users)], self.courses[b % len(self.courses)]
        if kind in ("ends_soon", "starts_soon"):  # an enrolment behind an active row: its scope will change
            active = db.rows("SELECT userid, courseid FROM {t:local_alx_api_reporting} WHERE is_deleted = 0 "
                             "ORDER BY id")
            if active:
                user, course = active[(a * 31 + b) % len(active)]
        company = self.companies[(a + b) % len(self.companies)]
        context = db.scalar("SELECT id FROM {t:context} WHERE contextlevel = 50 AND instanceid = ?", (course,))
        enrolment = self._enrolment(user, course)
        # timestamped sources (tasks.md 5.3)
        if kind == "cmc":
            cm = db.scalar("SELECT id FROM {t:course_modules} WHERE course = ? AND completion > 0 ORDER BY id LIMIT 1",
                           (course,))
            if cm is not None:
                db.execute("DELETE FROM {t:course_modules_completion} WHERE userid = ? AND coursemoduleid = ?", (user, cm))
                db.execute("INSERT INTO {t:course_modules_completion} (coursemoduleid, userid, completionstate, "
                           "timemodified) VALUES (?, ?, ?, ?)", (cm, user, 1 + b % 3, now))
        elif kind in ("cc_completed", "cc_started", "cc_reaggregate"):
            column = {"cc_completed": "timecompleted", "cc_started": "timestarted", "cc_reaggregate": "reaggregate"}[kind]
            if not db.scalar("SELECT id FROM {t:course_completions} WHERE userid = ? AND course = ?", (user, course)):
                db.execute("INSERT INTO {t:course_completions} (userid, course, timeenrolled, timestarted, "
                           "timecompleted, reaggregate) VALUES (?, ?, 0, 0, NULL, 0)", (user, course))
            db.execute(f"UPDATE {{t:course_completions}} SET {column} = ? WHERE userid = ? AND course = ?",
                       (now, user, course))
        elif kind == "enrol" and enrolment is None:
            enrol = db.scalar("SELECT id FROM {t:enrol} WHERE courseid = ? ORDER BY id LIMIT 1", (course,))
            db.execute("INSERT INTO {t:user_enrolments} (status, enrolid, userid, timestart, timeend, timecreated, "
                       "timemodified) VALUES (0, ?, ?, 0, 0, ?, ?)", (enrol, user, now, now))
            db.execute("INSERT INTO {t:role_assignments} (roleid, contextid, userid, timemodified) VALUES (5, ?, ?, ?)",
                       (context, user, now))
        elif kind == "ue_status" and enrolment is not None:
            db.execute("UPDATE {t:user_enrolments} SET status = 1 - status, timemodified = ? WHERE id = ?",
                       (now, enrolment))
        elif kind == "ends_soon" and enrolment is not None:
            # passes later than sync_lookback_seconds after the edit: only the clock changes scope then
            db.execute("UPDATE {t:user_enrolments} SET timeend = ?, timemodified = ? WHERE id = ?",
                       (now + 1500 + 61 * (b % 5), now, enrolment))
        elif kind == "starts_soon" and enrolment is not None:
            db.execute("UPDATE {t:user_enrolments} SET timestart = ?, timemodified = ? WHERE id = ?",
                       (now + 1500 + 61 * (b % 5), now, enrolment))
        elif kind == "user_profile":
            db.execute("UPDATE {t:user} SET lastname = ?, timemodified = ? WHERE id = ?", (f"L{now}", now, user))
        elif kind == "user_suspended":
            db.execute("UPDATE {t:user} SET suspended = 1 - suspended, timemodified = ? WHERE id = ?", (now, user))
        elif kind == "course_rename":
            db.execute("UPDATE {t:course} SET fullname = ?, timemodified = ? WHERE id = ?", (f"C{now}", now, course))
        elif kind == "course_hidden":
            db.execute("UPDATE {t:course} SET visible = 1 - visible, timemodified = ? WHERE id = ?", (now, course))
        elif kind == "cm_added":
            db.execute("INSERT INTO {t:course_modules} (course, module, instance, section, added, completion, "
                       "deletioninprogress) VALUES (?, 1, 0, 0, ?, 1, 0)", (course, now))
        elif kind == "cacherev":
            db.execute("UPDATE {t:course_modules} SET completion = 1 - SIGN(completion) WHERE id = (SELECT MIN(id) "
                       "FROM (SELECT id FROM {t:course_modules} WHERE course = ?) m)", (course,))
            db.execute("UPDATE {t:course} SET cacherev = ? WHERE id = ?", (now, course))
        # changes that leave no timestamp (tasks.md 5.4)
        elif kind == "unenrol":
            db.execute("DELETE FROM {t:user_enrolments} WHERE userid = ? AND enrolid IN (SELECT id FROM {t:enrol} "
                       "WHERE courseid = ?)", (user, course))
        elif kind == "leave_company":
            db.execute("DELETE FROM {t:company_users} WHERE companyid = ? AND userid = ?", (company, user))
        elif kind == "join_company":
            if not db.scalar("SELECT id FROM {t:company_users} WHERE companyid = ? AND userid = ?", (company, user)):
                db.execute("INSERT INTO {t:company_users} (companyid, userid, managertype, departmentid, suspended) "
                           "VALUES (?, ?, 0, 0, 0)", (company, user))
        elif kind == "member_suspended":
            db.execute("UPDATE {t:company_users} SET suspended = 1 - suspended WHERE userid = ?", (user,))
        elif kind == "role_unassigned":
            db.execute("DELETE FROM {t:role_assignments} WHERE userid = ? AND contextid = ?", (user, context))
        elif kind == "course_removed":
            db.execute("DELETE FROM {t:company_course} WHERE companyid = ? AND courseid = ?", (company, course))
        elif kind == "course_added":
            if not db.scalar("SELECT id FROM {t:company_course} WHERE companyid = ? AND courseid = ?", (company, course)):
                db.execute("INSERT INTO {t:company_course} (companyid, courseid, departmentid) VALUES (?, ?, 0)",
                           (company, course))
        elif kind == "instance_off":
            db.execute("UPDATE {t:enrol} SET status = 1 - status WHERE courseid = ?", (course,))
        elif kind == "course_switch":
            name = f"course_{course}"
            value = db.scalar("SELECT setting_value FROM {t:local_alx_api_settings} WHERE companyid = ? "
                              "AND setting_name = ?", (company, name))
            db.execute("DELETE FROM {t:local_alx_api_settings} WHERE companyid = ? AND setting_name = ?", (company, name))
            db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
                       "timemodified) VALUES (?, ?, ?, 0, 0)", (company, name, 1 if value == 0 else 0))


KINDS = ["cmc", "cc_completed", "cc_started", "cc_reaggregate", "enrol", "ue_status", "ends_soon", "starts_soon",
         "user_profile", "user_suspended", "course_rename", "course_hidden", "cm_added", "cacherev", "unenrol",
         "leave_company", "join_company", "member_suspended", "role_unassigned", "course_removed", "course_added",
         "instance_off", "course_switch"]


def test_every_source_in_many_companies_in_one_run(db):
    site = Site(db)
    site.check()
    for n, kind in enumerate(KINDS * 2):  # each kind twice, aimed at different learners and courses
        site.change(kind, 7 * n + 3, 5 * n + 1)
    summary = site.sync()
    assert summary["failed"] == 0 and summary["processed"] == len(site.companies)
    site.check()
    for _ in range(6):  # the enrolments that start or end soon pass with the clock
        site.busy()
        site.sync(tick=400)
        site.check()


def test_a_quiet_run_records_every_company_and_writes_no_row(db):
    site = Site(db)
    seqs = db.rows("SELECT companyid, change_seq FROM {t:local_alx_api_sync_status} WHERE kind = 'cron' ORDER BY 1")
    lines = []
    summary = task.execute(task_env(db, site.now + 61, lines))
    assert summary["processed"] == len(site.companies) and summary["pairs"] == 0
    assert db.rows("SELECT companyid, change_seq FROM {t:local_alx_api_sync_status} WHERE kind = 'cron' "
                   "ORDER BY 1") == seqs
    assert f"{len(site.companies)} companies unchanged" in lines[0]
    rows = company_state.rows(db)
    assert {rows[c]["total_syncs"] for c in site.companies} == {2}
    assert {rows[c]["last_sync_timestamp"] for c in site.companies} == {site.now + 61}


def test_after_a_populate_the_first_sync_goes_on_from_it(db):
    """A populate records where its walk started: the next sync run checks the changes since, not
    every pair again, and misses none (timestamped or not)."""
    from local_alx_report_api.classes import populate
    from moodle_core.moodle import Moodle

    site = Site(db, synced=False)
    site.now += 61
    populate.populate(db, Moodle(db).companies(), batch_size=100, report_roles=["student"], now=lambda: site.now,
                      lock_wait=0)
    site.check()
    assert all("cutoffs" in company_state.load(db, c, site.now) for c in site.companies)
    rows = db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting}")
    for n, kind in enumerate(["user_profile", "cmc", "unenrol", "leave_company", "member_suspended"]):
        site.change(kind, 3 * n + 1, n)
    summary = site.sync()
    assert summary["processed"] == len(site.companies) and summary["pairs"] < rows / 4
    site.check()
    for n, kind in enumerate(KINDS):  # and every other kind of change
        site.change(kind, 3 * n + 2, n)
    site.sync()
    site.check()


def test_a_state_from_before_fingerprints_gets_a_full_set_difference(db):
    """A company's state written by the code before issue 16 (no fingerprints, no clock source):
    its first run checks its whole scope, so a change without a timestamp is still found."""
    site = Site(db)
    for companyid in site.companies:
        state = company_state.load(db, companyid, site.now)
        del state["fp"]
        del state["cutoffs"]["ue_time"]
        company_state.save(db, companyid, state, site.now)
    site.change("unenrol", 3, 1)
    site.change("leave_company", 10, 2)
    site.sync()
    site.check()
    assert all("fp" in company_state.load(db, c, site.now) for c in site.companies)


def test_a_stopped_run_resumes_and_loses_no_change(db):
    site = Site(db, companies=3, users=300)
    for n, kind in enumerate(KINDS):
        site.change(kind, 11 * n + 1, 3 * n)
    for b in range(len(site.courses)):  # every pair of every course: several batches per company
        site.change("cm_added", 0, b)
    asked = []
    stop = lambda: asked.append(1) or len(asked) > 3  # noqa: E731 - before the 3rd batch, or between companies
    summary = site.sync(should_stop=stop, local_alx_report_api__sync_batch_size=100)
    assert summary["stopped"] == "time_limit"
    pending = [company_state.load(db, c, site.now).get("pending") for c in site.companies]
    assert any(p and p["after"] for p in pending), "a company stopped after a committed batch"
    for n, kind in enumerate(KINDS):  # more changes while the run is stopped
        site.change(kind, 5 * n + 2, 7 * n + 3)
    summary = site.sync(local_alx_report_api__sync_batch_size=100)
    assert summary["stopped"] == "complete"
    # the continuation processed keys after where it stopped (tasks.md 5.6 step 2); changes to
    # keys before it lie after its cutoffs, so the next run finds them
    site.sync(local_alx_report_api__sync_batch_size=100)
    site.check()
    assert not any(company_state.load(db, c, site.now).get("pending") for c in site.companies)


_TRIGGERS = {
    "sqlite": ["CREATE TRIGGER {p}fail_{c} BEFORE UPDATE ON {p}local_alx_api_reporting WHEN NEW.companyid = {c} "
               "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"],
    "postgresql": ["CREATE FUNCTION {p}fail_{c}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                   "RAISE EXCEPTION 'injected fault'; END $$",
                   "CREATE TRIGGER {p}fail_{c} BEFORE UPDATE ON {p}local_alx_api_reporting FOR EACH ROW "
                   "WHEN (NEW.companyid = {c}) EXECUTE FUNCTION {p}fail_{c}()"],
    "mariadb": ["CREATE TRIGGER {p}fail_{c} BEFORE UPDATE ON {p}local_alx_api_reporting FOR EACH ROW "
                "BEGIN IF NEW.companyid = {c} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected fault'; "
                "END IF; END"],
}


def test_a_company_whose_batch_fails_neither_stops_nor_corrupts_the_others(db):
    site = Site(db)
    broken = site.companies[0]  # the one that shares learners with every other company
    for statement in _TRIGGERS[db.kind]:
        db.db.execute_sql(statement.format(p=db.prefix, c=broken))
    for n in range(0, 60, 3):
        site.change("user_profile", n, 0)
    before = stored(db, broken)
    summary = site.sync()
    assert summary["failed"] == 1 and summary["processed"] == len(site.companies) - 1
    for companyid in site.companies[1:]:
        assert stored(db, companyid) == expected_rows(db, companyid, site.now)
    assert stored(db, broken) == before, "the failed batch wrote nothing"
    row = company_state.rows(db)[broken]
    assert row["last_sync_status"] == "failed" and "injected fault" in row["last_sync_error"]
    db.db.execute_sql(f"DROP TRIGGER {db.prefix}fail_{broken}" + (f" ON {db.prefix}local_alx_api_reporting"
                                                                  if db.kind == "postgresql" else ""))
    site.sync()
    site.check()
    assert company_state.rows(db)[broken]["last_sync_status"] == "success"


CHANGES = st.tuples(st.sampled_from(KINDS), st.integers(0, 80), st.integers(0, 10))


@pytest.mark.parametrize("db", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_mixed_changes_in_many_companies_always_end_at_the_truth(db):
    site = Site(db, companies=5, users=40)

    @settings(max_examples=6 if db.kind == "sqlite" else 3, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(st.lists(CHANGES, max_size=12), min_size=1, max_size=3))
    def check(rounds):
        for changes in rounds:
            for change in changes:
                site.change(*change)
            site.busy()
            site.sync(tick=400)  # now and then past the start or end of an earlier round's enrolment
            site.check()

    check()


def test_state_json_keeps_fingerprints_small(db):
    """The fingerprints a company's state keeps: one short digest per course of its scope."""
    site = Site(db)
    state = json.loads(db.scalar("SELECT state_data FROM {t:local_alx_api_sync_status} WHERE kind = 'cron' "
                                 "AND companyid = ?", (site.companies[0],)))
    assert set(state["fp"]) == {"members", "scope", "courses"}
    assert all(len(v) == 16 for v in state["fp"]["courses"].values())
    assert state["cutoffs"]["ue_time"] == site.now


def _member_of(site, company):
    """A learner of the company with an active row (and the row's course)."""
    return site.db.rows("SELECT userid, courseid FROM {t:local_alx_api_reporting} WHERE companyid = ? AND "
                        "is_deleted = 0 ORDER BY userid LIMIT 1", (company,))[0]


def test_rows_written_by_another_writer_make_the_next_run_check_all_scope(db):
    """A flag flipped and flipped back leaves the same fingerprint; reconcile wrote the rows of the
    flipped state in between: the counter it moved tells the next run to check all scope."""
    from local_alx_report_api.task import reconcile_task

    site = Site(db)
    company = site.companies[1]
    user, _ = _member_of(site, company)
    db.execute("UPDATE {t:company_users} SET suspended = 1 WHERE companyid = ? AND userid = ?", (company, user))
    site.now += 61
    reconcile_task.execute(task_env(db, site.now))  # soft-deletes the suspended member's rows
    site.check()
    db.execute("UPDATE {t:company_users} SET suspended = 0 WHERE companyid = ? AND userid = ?", (company, user))
    site.sync()
    site.check()


def test_a_flag_flipped_during_a_populate_and_back_after_it_is_found(db):
    """The populate's snapshot is older than its walk: a member suspended before the walk reaches
    it and unsuspended after the populate must still come back."""
    from local_alx_report_api.classes import populate
    from moodle_core.moodle import Moodle

    site = Site(db, synced=False)
    first, later = site.companies[0], site.companies[-1]
    user = db.scalar("SELECT MIN(userid) FROM {t:company_users} WHERE companyid = ? AND managertype = 0", (later,))
    flipped = []

    def on_progress(state):
        if state.companies_done == 1 and not flipped:  # the first company done, the last not yet walked
            flipped.append(1)
            db.execute("UPDATE {t:company_users} SET suspended = 1 WHERE companyid = ? AND userid = ?", (later, user))

    site.now += 61
    populate.populate(db, Moodle(db).companies(), batch_size=100, report_roles=["student"], now=lambda: site.now,
                      lock_wait=0, on_progress=on_progress)
    assert flipped and first != later
    db.execute("UPDATE {t:company_users} SET suspended = 0 WHERE companyid = ? AND userid = ?", (later, user))
    site.sync()
    site.check()


def test_an_enrolment_end_is_held_against_each_company_own_bound(db):
    """One company's old bound makes the run read far back; another company's enrolment that
    started inside that window and ended inside its own is still found by the clock source."""
    site = Site(db)
    old, other = site.companies[0], site.companies[2]
    state = company_state.load(db, old, site.now)
    cut = state["cutoffs"]  # a run of days ago, stopped and pending since
    state["pending"] = {"from": {s: v - 2 * 86400 for s, v in cut.items()}, "high": dict(cut), "after": None,
                        "cacherev": state["cacherev"], "fp": state["fp"], "seq": state["seq"], "written": 0}
    company_state.save(db, old, state, site.now)
    user, course = _member_of(site, other)
    enrolment = site._enrolment(user, course)
    db.execute("UPDATE {t:user_enrolments} SET timestart = ?, timeend = ? WHERE id = ?",
               (site.now - 86400, site.now + 30, enrolment))  # an edit without a timestamp (reconcile's)
    site.sync(tick=400)
    site.check()
    assert db.scalar("SELECT is_deleted FROM {t:local_alx_api_reporting} WHERE companyid = ? AND userid = ? AND "
                     "courseid = ?", (other, user, course)) == 1


def test_a_quiet_company_cutoffs_follow_what_the_run_read(db):
    """A company where nothing changes for long does not keep every run reading from its old
    cutoffs: its marks move with the largest timestamps the run read for other companies."""
    site = Site(db)
    quiet, busy = site.companies[3], site.companies[1]
    user, _ = _member_of(site, busy)
    before = company_state.load(db, quiet, site.now)["cutoffs"]["user"]
    db.execute("UPDATE {t:user} SET lastname = 'Moved', timemodified = ? WHERE id = ?", (site.now + 30, user))
    site.sync()
    site.check()
    after = company_state.load(db, quiet, site.now)["cutoffs"]["user"]
    assert before < after == site.now - 31  # the edit's timestamp (the run's clock is 61 s on)


def test_an_idle_company_whose_run_had_failed_resolves_its_alert(db):
    site = Site(db)
    company = site.companies[2]
    good = db.scalar("SELECT state_data FROM {t:local_alx_api_sync_status} WHERE companyid = ? AND kind = 'cron'",
                     (company,))
    db.execute("UPDATE {t:local_alx_api_sync_status} SET state_data = '{broken' WHERE companyid = ? "
               "AND kind = 'cron'", (company,))
    for _ in range(3):  # the default threshold of failures in a row
        assert site.sync(local_alx_report_api__enable_alerting=1)["failed"] == 1
    open_alerts = "SELECT COUNT(*) FROM {t:local_alx_api_alerts} WHERE subject = ? AND resolved = 0"
    assert db.scalar(open_alerts, (f"company:{company}",)) == 1
    db.execute("UPDATE {t:local_alx_api_sync_status} SET state_data = ? WHERE companyid = ? AND kind = 'cron'",
               (good, company))
    lines = []
    summary = task.execute(task_env(db, site.now + 61, lines, local_alx_report_api__enable_alerting=1))
    assert summary["failed"] == 0 and "unchanged" in lines[0]
    assert db.scalar(open_alerts, (f"company:{company}",)) == 0


def test_a_flag_flipped_during_a_sync_job_and_back_after_it_is_found(db):
    """A `sync` job settles its fingerprints too: a member suspended while the job recomputes
    their pairs and unsuspended after it comes back at the next run."""
    from local_alx_report_api.classes import sync

    site = Site(db, companies=3, users=300)
    company = site.companies[1]
    user = db.scalar("SELECT MAX(userid) FROM {t:local_alx_api_reporting} WHERE companyid = ? AND is_deleted = 0",
                     (company,))
    for b in range(len(site.courses)):  # every pair of the company, by a change not found again later
        site.change("cacherev", 0, b)
    flipped = []

    def on_batch(counts, processed, total):
        if not flipped:  # after the first batch, before the batch of the last member
            flipped.append(1)
            db.execute("UPDATE {t:company_users} SET suspended = 1 WHERE companyid = ? AND userid = ?",
                       (company, user))

    site.now += 61
    env = task_env(db, site.now)
    [target] = [c for c in env.moodle.companies() if c.id == company]
    outcome = sync.sync_company(env, target, out_of_time=lambda: False, batch_size=100, on_batch=on_batch)
    assert outcome.status == "done" and flipped
    assert not any(stored(db, company).get((user, c)) for c in site.courses), "written while suspended"
    db.execute("UPDATE {t:company_users} SET suspended = 0 WHERE companyid = ? AND userid = ?", (company, user))
    site.sync(tick=700)
    site.check()


def test_a_state_damaged_beyond_json_fails_its_company_only(db):
    site = Site(db)
    broken = site.companies[2]
    state = company_state.load(db, broken, site.now)
    state["cacherev"] = [1, 2]  # valid JSON, not the shape a run writes
    company_state.save(db, broken, state, site.now)
    site.change("user_profile", 5, 0)
    summary = site.sync()
    assert summary["failed"] == 1 and summary["processed"] == len(site.companies) - 1
    for companyid in site.companies:
        if companyid != broken:
            assert stored(db, companyid) == expected_rows(db, companyid, site.now)
