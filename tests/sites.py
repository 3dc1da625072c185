"""Small hand-made sites for formula and scope tests, written with the generator's row builder."""

from __future__ import annotations

from local_alx_report_api.classes import installer
from moodle_core.generator import SiteBuilder, moodle_password_hash

NOW = 1732546800  # 2024-11-25 15:00:00 UTC
_ADMIN_HASH = None


def new_site(engine, timezone: str = "99") -> SiteBuilder:
    """An empty Moodle site (admin, roles, modules, config) with the plugin tables installed."""
    global _ADMIN_HASH
    _ADMIN_HASH = _ADMIN_HASH or moodle_password_hash("Admin#12345", 4)
    from tests.conftest import SCHEMAS

    pooled = SCHEMAS.take(engine)  # an emptied standard schema of an earlier test, if there is one
    b = SiteBuilder(engine)
    if not pooled:
        b.create_schema()
    b.base_site(admin_password_hash=_ADMIN_HASH, timezone=timezone)
    b.flush()
    installer.install(engine, NOW)
    if not pooled:
        SCHEMAS.made(engine)
    return b


def worked_examples(b: SiteBuilder) -> dict:
    """The site of course-progress.md section 14: company 5 `acme`, course 12 with modules
    201–204 (204 untracked), course 13 with no tracked module, users 101–108."""
    ids = {}
    t0 = 1700000000  # every generated time lies before NOW, so only real changes are detected later
    b.company("Acme Learning Ltd", "acme", companyid=5)
    b.course("Safety Training", "SAFE", courseid=12, timemodified=t0)
    b.course("No Tracking", "NOTR", courseid=13, timemodified=t0)
    for cmid, completion in ((201, 1), (202, 2), (203, 2), (204, 0)):
        b.add("course_modules", id=cmid, course=12, module=1, instance=0, section=0, added=0,
              completion=completion, deletioninprogress=0)
    b.add("course_modules", id=301, course=13, module=1, instance=0, section=0, added=0, completion=0,
          deletioninprogress=0)
    ids["manual12"] = b.enrol_instance(12, "manual")
    ids["self12"] = b.enrol_instance(12, "self")
    ids["manual13"] = b.enrol_instance(13, "manual")
    b.company_course(5, 12)
    b.company_course(5, 13)
    people = {101: ("Sarah", "Connor"), 102: ("Kyle", "Reese"), 103: ("John", "Connor"), 104: ("Miles", "Dyson"),
              105: ("Marcus", "Wright"), 106: ("Kate", "Brewster"), 107: ("Peter", "Silberman"), 108: ("Danny", "Dyson")}
    for uid, (first, last) in people.items():
        b.user(f"u{uid}", first, last, f"{first.lower()}@example.com", userid=uid, timecreated=t0)
        b.member(5, uid)
    b.flush()
    # A: 2 of 3 tracked done (203 completed-fail; 204 untracked)
    b.enrol(ids["manual12"], 101, timestart=1705309200, timecreated=1704067200)
    b.assign(5, 12, 101, t0)
    for cm, state in ((201, 1), (202, 2), (203, 3), (204, 1)):
        b.activity(cm, 101, state, 1705400000)
    # B: course completed
    b.enrol(ids["manual12"], 102, timestart=1705309200, timecreated=1704067200)
    b.assign(5, 12, 102, t0)
    b.activity(201, 102, 1, 1705320000)
    b.course_completion(102, 12, timestarted=1705309200, timecompleted=1705329000)
    # C: nothing done
    b.enrol(ids["manual12"], 103, timestart=0, timecreated=1704067200)
    b.assign(5, 12, 103, t0)
    # D: no tracked activities, course started
    b.enrol(ids["manual13"], 104, timestart=0, timecreated=1704067200)
    b.assign(5, 13, 104, t0)
    b.course_completion(104, 13, timestarted=1705309200, timecompleted=None)
    # E: all tracked done, course not complete
    b.enrol(ids["manual12"], 105, timestart=0, timecreated=1704067200)
    b.assign(5, 12, 105, t0)
    for cm, state in ((201, 1), (202, 2), (203, 1)):
        b.activity(cm, 105, state, 1705400000)
    # F: two active enrolments
    b.enrol(ids["manual12"], 106, timestart=0, timecreated=1704067200)
    b.enrol(ids["self12"], 106, timestart=1705309200, timecreated=1705309200)
    b.assign(5, 12, 106, t0)
    # G: teacher only; ended enrolment
    b.enrol(ids["manual12"], 107, timestart=0, timecreated=1704067200)
    b.assign(3, 12, 107, t0)
    b.enrol(ids["manual12"], 108, timestart=0, timeend=1700000000, timecreated=1690000000)
    b.assign(5, 12, 108, t0)
    b.flush()
    return ids


def acme_and_globex(engine, *, shared: bool = True) -> SiteBuilder:
    """A new site with the worked examples (acme, company 5) and globex (company 6); `shared` also
    gives globex course 12 and makes user 101 a member of both companies."""
    b = new_site(engine)
    worked_examples(b)
    b.company("Globex", "globex", companyid=6)
    if shared:
        b.company_course(6, 12)
        b.member(6, 101)
    b.flush()
    return b


def company_setting(engine, companyid: int, name: str, value: int) -> None:
    """A per-company setting row (settings.md 2), as the control center writes it."""
    engine.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
                   "timemodified) VALUES (?, ?, ?, ?, ?)", (companyid, name, value, NOW, NOW))


def api_token(b: SiteBuilder, companyid: int, token: str = "a" * 32, username: str = "api") -> str:
    """A company manager with a web-service token of `alx_report_api_custom` (created once)."""
    if "serviceid" not in b.next_ids:
        b.next_ids["serviceid"] = b.web_service()
    uid = b.user(username, "API", "User", f"{username}@example.com")
    b.member(companyid, uid, managertype=1)
    b.add("role_assignments", roleid=13, contextid=1, userid=uid, timemodified=NOW)
    b.token(uid, b.next_ids["serviceid"], token)
    b.flush()
    return token


def full_company(b: SiteBuilder, *, users: int, courses: int, companyid: int = 1) -> None:
    """A company where every one of `users` learners is a student in each of its `courses`."""
    b.company("Big", "big", companyid=companyid)
    ids = [b.course(f"Course {n}", f"C{n}") for n in range(courses)]
    enrols = {c: b.enrol_instance(c) for c in ids}
    for c in ids:
        b.company_course(companyid, c)
    for n in range(users):
        uid = b.user(f"u{n}", "U", str(n), f"u{n}@example.com")
        b.member(companyid, uid)
        for c in ids:
            b.enrol(enrols[c], uid, timecreated=1704067200)
            b.assign(5, c, uid)
    b.flush()


def synced_company(engine, *, users: int = 60, courses: int = 5) -> str:
    """Company 1 of `users` learners in each of `courses` courses on a new site, synced at NOW;
    returns its manager's token."""
    from local_alx_report_api.task import sync_reporting_data_task as sync_task
    from tests.tasks import task_env

    b = new_site(engine)
    full_company(b, users=users, courses=courses)
    token = api_token(b, 1)
    sync_task.execute(task_env(engine, NOW))
    return token


def generated_site(engine, now: int, **params):
    """A generated demo site (moodle_core.generator) with the plugin installed at `now`."""
    from moodle_core.generator import generate

    demo = generate(engine, **params)
    installer.install(engine, now)
    return demo
