"""The replica test of issue 5: a client that merges incremental pulls by (userid, courseid),
applying `deleted` rows as removals, always ends equal to a fresh full pull and to the live
truth, whatever Moodle changes happen and whenever the sync task runs between pages."""

import itertools
import json
import secrets

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_alx_report_api.classes import installer
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from moodle_core import generator
from tests.oracle import expected_rows
from tests.tasks import task_env
from tests.webapp import make_app, progress

START = 1770000000  # after the generator's history
COMPANY = 1
KEYS = ("firstname", "lastname", "email", "coursename", "timecompleted_unix", "timestarted_unix", "percentage",
        "status")


class Site:
    """A generated site, a moving clock and the Moodle changes the test can make."""

    def __init__(self, db, companies=2, users=24):
        self.db, self.now = db, START
        generator.generate(db, companies=companies, users=users, courses=5, enrolments_per_user=3, seed=3)
        installer.install(db, START)
        self.companies = list(range(1, companies + 1))
        for company in self.companies:
            db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
                       "timemodified) VALUES (?, 'sync_mode', 1, 0, 0)", (company,))  # always incremental
        self.users = [r[0] for r in db.rows("SELECT userid FROM {t:company_users} WHERE managertype = 0 "
                                            "ORDER BY userid")]
        self.courses = [r[0] for r in db.rows("SELECT id FROM {t:course} WHERE category <> 0 ORDER BY id")]
        self.managers = {c: db.scalar("SELECT userid FROM {t:company_users} WHERE companyid = ? AND managertype = 1",
                                      (c,)) for c in self.companies}
        self.app = make_app(db, lambda: self.now)
        self.sync()

    def tick(self, seconds=61):
        self.now += seconds

    def sync(self):
        self.tick()
        sync_task.execute(task_env(self.db, self.now))

    def new_token(self, company: int = COMPANY) -> str:
        token = secrets.token_hex(16)
        service = self.db.scalar("SELECT id FROM {t:external_services} WHERE shortname = 'alx_report_api_custom'")
        self.db.execute("INSERT INTO {t:external_tokens} (token, tokentype, userid, externalserviceid, contextid, "
                        "creatorid, validuntil, timecreated) VALUES (?, 0, ?, ?, 1, 2, 0, ?)",
                        (token, self.managers[company], service, self.now))
        return token

    def change(self, kind: str, a: int, b: int) -> None:
        db, now = self.db, self.now
        user, course = self.users[a % len(self.users)], self.courses[b % len(self.courses)]
        if kind == "complete":
            cm = db.scalar("SELECT id FROM {t:course_modules} WHERE course = ? AND completion > 0 ORDER BY id LIMIT 1",
                           (course,))
            if cm is not None:
                db.execute("DELETE FROM {t:course_modules_completion} WHERE userid = ? AND coursemoduleid = ?",
                           (user, cm))
                db.execute("INSERT INTO {t:course_modules_completion} (coursemoduleid, userid, completionstate, "
                           "timemodified) VALUES (?, ?, ?, ?)", (cm, user, 1 + b % 3, now))
        elif kind == "enrol":
            enrol = db.scalar("SELECT id FROM {t:enrol} WHERE courseid = ? ORDER BY id LIMIT 1", (course,))
            if db.scalar("SELECT id FROM {t:user_enrolments} WHERE enrolid = ? AND userid = ?", (enrol, user)) is None:
                db.execute("INSERT INTO {t:user_enrolments} (status, enrolid, userid, timestart, timeend, timecreated, "
                           "timemodified) VALUES (0, ?, ?, 0, 0, ?, ?)", (enrol, user, now, now))
                context = db.scalar("SELECT id FROM {t:context} WHERE contextlevel = 50 AND instanceid = ?", (course,))
                db.execute("INSERT INTO {t:role_assignments} (roleid, contextid, userid, timemodified) "
                           "VALUES (5, ?, ?, ?)", (context, user, now))
        elif kind == "unenrol":
            db.execute("DELETE FROM {t:user_enrolments} WHERE userid = ? AND enrolid IN (SELECT id FROM {t:enrol} "
                       "WHERE courseid = ?)", (user, course))
        elif kind == "suspend":
            db.execute("UPDATE {t:user} SET suspended = 1 - suspended, timemodified = ? WHERE id = ?", (now, user))
        elif kind == "rename_user":
            db.execute("UPDATE {t:user} SET lastname = ?, timemodified = ? WHERE id = ?", (f"L{now}", now, user))
        elif kind == "rename_course":
            db.execute("UPDATE {t:course} SET fullname = ?, timemodified = ? WHERE id = ?", (f"C{now}", now, course))
        elif kind == "hide_course":
            db.execute("UPDATE {t:course} SET visible = 1 - visible, timemodified = ? WHERE id = ?", (now, course))
        elif kind == "move_company":  # to the next company
            n = len(self.companies)
            db.execute(f"UPDATE {{t:company_users}} SET companyid = companyid % {n} + 1 WHERE userid = ? "
                       "AND managertype = 0", (user,))

    def pages(self, token: str, sizes, between=lambda: None):
        """One pull: the rows of its pages from offset 0 until a short page; `between` runs after
        every full page."""
        return [row for page in self.each_page(token, sizes, between) for row in page]

    def each_page(self, token: str, sizes, between=lambda: None):
        """`pages`, a page at a time."""
        offset = 0
        for size in itertools.chain(sizes, itertools.repeat(7)):
            page = json.loads(progress(self.app, token, limit=size, offset=offset).body)
            assert isinstance(page, list), page
            yield page
            offset += len(page)
            if len(page) < size:
                return
            between()


def merge(replica: dict, rows: list) -> None:
    for row in rows:
        key = (row["userid"], row["courseid"])
        if row["status"] == "deleted":
            replica.pop(key, None)
        else:
            replica[key] = tuple(row[k] for k in KEYS)


def truth(site: Site, company: int = COMPANY) -> dict:
    out = {}
    for key, (fn, ln, em, cn, tc, ts, pct, status) in expected_rows(site.db, company, site.now).items():
        out[key] = (fn, ln, em, cn, tc, ts, pct / 100 if pct % 100 else pct // 100, status)
    return out


CHANGES = st.tuples(st.sampled_from(["complete", "enrol", "unenrol", "suspend", "rename_user", "rename_course",
                                     "hide_course", "move_company"]), st.integers(0, 60), st.integers(0, 8))
ROUND = st.fixed_dictionaries({"changes": st.lists(CHANGES, max_size=6),
                               "between": st.lists(st.lists(CHANGES, max_size=3), max_size=4),
                               "sizes": st.lists(st.integers(1, 12), min_size=1, max_size=6)})


def changes_and_sync(site: Site, changes) -> None:
    """A round's `between` steps by default: Moodle changes, then the sync task, between pages."""
    for change in changes or []:
        site.change(*change)
    site.tick(5)
    site.sync()


def run_rounds(site: Site, rounds, *, step=changes_and_sync, pages=None, before_quiet=lambda: None) -> None:
    """A replica client through `rounds`: each round's Moodle changes and a sync run, a pull with
    `step(site, spec)` for each of its `between` specs run after each full page, then a quiet sync
    and pull; the client then equals a fresh full pull and the live truth. `pages`: how a pull's
    rows are read (site.pages); `before_quiet`: run before the quiet sync."""
    pages = pages or site.pages
    token = site.new_token()
    replica: dict = {}
    merge(replica, pages(token, [50]))  # the first pull of a new token delivers every active row
    for spec in rounds:
        for change in spec["changes"]:
            site.change(*change)
        site.sync()
        injected = iter(spec["between"])
        merge(replica, pages(token, spec["sizes"], lambda injected=injected: step(site, next(injected, None))))
        before_quiet()
        site.sync()  # quiet: no further changes
        merge(replica, pages(token, [9]))
        fresh = {}
        merge(fresh, pages(site.new_token(), [100]))
        assert replica == fresh
        assert replica == truth(site)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"], indirect=True)
def test_replica_equals_full_pull_and_truth(db):
    site = Site(db)

    @settings(max_examples=8 if db.kind == "sqlite" else 4, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(ROUND, min_size=2, max_size=4))
    def check(rounds):
        run_rounds(site, rounds)

    check()


CHANGES_MANY = st.tuples(st.sampled_from(["complete", "enrol", "unenrol", "suspend", "rename_user", "rename_course",
                                          "hide_course", "move_company"]), st.integers(0, 90), st.integers(0, 8))


@pytest.mark.parametrize("db", ["sqlite", "postgresql", "mariadb"], indirect=True)
def test_replicas_of_many_companies_changing_in_one_run(db):
    """Issue 16: one run detects the changes of every company at once. A replica client per
    company pulls between runs; each ends equal to a fresh full pull and to its company's truth."""
    site = Site(db, companies=5, users=60)

    @settings(max_examples=4 if db.kind == "sqlite" else 2, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(st.lists(CHANGES_MANY, max_size=10), min_size=2, max_size=3))
    def check(rounds):
        tokens = {c: site.new_token(c) for c in site.companies}
        replicas = {c: {} for c in site.companies}
        for c in site.companies:
            merge(replicas[c], site.pages(tokens[c], [200]))
        for changes in rounds:
            for change in changes:
                site.change(*change)
            site.sync()  # one run for every company
            for c in site.companies:
                merge(replicas[c], site.pages(tokens[c], [3, 7]))
        for c in site.companies:
            fresh = {}
            merge(fresh, site.pages(site.new_token(c), [200]))
            assert replicas[c] == fresh == truth(site, c), f"company {c}"

    check()
