"""A Moodle + IOMAD site written the way Moodle stores it: a row builder for tests and the
seeded demo-site generator built on it (the same one the benchmarks use).

Rows are buffered per table and written with multi-row INSERTs, so memory stays bounded at any
size. Ids that other rows refer to are assigned here; sequences are reset at the end."""

from __future__ import annotations

import hashlib
import random
import string
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import bcrypt

from moodle_core.engines import Engine
from moodle_core.moodle_schema import moodle_tables
from moodle_core.xmldb import create_tables

BASE_TIME = 1760000000  # 2025-10-09: generated history lies before this, so data do not depend on today
FUNCTION = "local_alx_report_api_get_course_progress"
SERVICE_SHORTNAME = "alx_report_api_custom"
ROLES = [  # id, shortname, archetype (Moodle's standard roles, then IOMAD's)
    (1, "manager", "manager"), (2, "coursecreator", "coursecreator"), (3, "editingteacher", "editingteacher"),
    (4, "teacher", "teacher"), (5, "student", "student"), (6, "guest", "guest"), (7, "user", "user"),
    (8, "frontpage", "frontpage"), (9, "companymanager", ""), (10, "companydepartmentmanager", ""),
    (11, "companycoursenoneditor", ""), (12, "companycourseeditor", ""), (13, "alxapiuser", "")]
MODULES = [("assign", 1), ("quiz", 1), ("page", 1), ("resource", 1), ("url", 1), ("forum", 1), ("scorm", 1),
           ("label", 1), ("survey", 0)]  # survey: a disabled module type


def moodle_password_hash(password: str, rounds: int = 10) -> str:
    """bcrypt as PHP's password_hash() writes it (`$2y$`)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode().replace("$2b$", "$2y$", 1)


@dataclass
class SiteBuilder:
    """Appends rows to a Moodle site. Call `flush()` (or `finish()`) to write what is buffered."""

    engine: Engine
    chunk: int = 2000
    buffers: dict = field(default_factory=lambda: defaultdict(list))
    columns: dict = field(default_factory=dict)
    next_ids: dict = field(default_factory=dict)
    course_context: dict = field(default_factory=dict)

    def create_schema(self) -> None:
        create_tables(self.engine, moodle_tables())

    def _id(self, table: str) -> int:
        if table not in self.next_ids:
            self.flush(table)
            self.next_ids[table] = int(self.engine.scalar(f"SELECT COALESCE(MAX(id), 0) FROM {{t:{table}}}")) + 1
        value = self.next_ids[table]
        self.next_ids[table] += 1
        return value

    def add(self, table: str, **row) -> int | None:
        """Buffer one row; returns its id when the builder assigns ids for that table."""
        if row.get("id") is None and table in _EXPLICIT_IDS:
            row["id"] = self._id(table)
        columns = self.columns.setdefault((table, tuple(row)), tuple(row))
        self.buffers[(table, columns)].append(tuple(row.values()))
        if len(self.buffers[(table, columns)]) >= self.chunk:
            self._write(table, columns)
        return row.get("id")

    def _write(self, table: str, columns: tuple) -> None:
        rows = self.buffers.pop((table, columns), [])
        if rows:
            with self.engine.db.atomic():
                self.engine.insert_rows(table, list(columns), rows)

    def flush(self, table: str | None = None) -> None:
        for tab, columns in list(self.buffers):
            if table is None or tab == table:
                self._write(tab, columns)

    def finish(self) -> None:
        self.flush()
        for table in _EXPLICIT_IDS:
            self.engine.reset_sequence(table)
        self.engine.analyze([t.name for t in moodle_tables()])

    # -- Moodle objects -------------------------------------------------------------------------
    def config(self, name: str, value: str) -> None:
        self.add("config", name=name, value=value)

    def context(self, level: int, instanceid: int, parent_path: str = "/1", depth: int = 2) -> int:
        cid = self._id("context")
        self.add("context", id=cid, contextlevel=level, instanceid=instanceid, path=f"{parent_path}/{cid}", depth=depth)
        return cid

    def user(self, username: str, firstname: str, lastname: str, email: str, *, password_hash: str = "",
             suspended: int = 0, deleted: int = 0, timecreated: int = BASE_TIME, timemodified: int | None = None,
             userid: int | None = None) -> int:
        uid = userid or self._id("user")
        if deleted:  # what delete_user() leaves behind
            email = hashlib.md5(username.encode()).hexdigest()
            username = f"{email}.{timecreated}"
        self.add("user", id=uid, auth="manual", confirmed=1, mnethostid=1, username=username, password=password_hash,
                 firstname=firstname, lastname=lastname, email=email, suspended=suspended, deleted=deleted,
                 timecreated=timecreated, timemodified=timemodified or timecreated)
        self.context(30, uid)
        return uid

    def course(self, fullname: str, shortname: str, *, visible: int = 1, category: int = 1,
               timemodified: int = BASE_TIME, courseid: int | None = None) -> int:
        cid = courseid or self._id("course")
        self.add("course", id=cid, category=category, fullname=fullname, shortname=shortname, visible=visible,
                 startdate=BASE_TIME - 86400 * 365, timecreated=timemodified, timemodified=timemodified,
                 enablecompletion=1, cacherev=timemodified)
        self.course_context[cid] = self.context(50, cid, "/1/2", 3)
        return cid

    def module(self, courseid: int, moduleid: int, completion: int, *, deletioninprogress: int = 0,
               added: int = BASE_TIME) -> int:
        return self.add("course_modules", id=None, course=courseid, module=moduleid, instance=0, section=0,
                        added=added, completion=completion, deletioninprogress=deletioninprogress)

    def enrol_instance(self, courseid: int, method: str = "manual", status: int = 0) -> int:
        return self.add("enrol", id=None, enrol=method, status=status, courseid=courseid, roleid=5,
                        timecreated=BASE_TIME, timemodified=BASE_TIME)

    def enrol(self, enrolid: int, userid: int, *, status: int = 0, timestart: int = 0, timeend: int = 0,
              timecreated: int = BASE_TIME) -> None:
        self.add("user_enrolments", status=status, enrolid=enrolid, userid=userid, timestart=timestart,
                 timeend=timeend, timecreated=timecreated, timemodified=timecreated)

    def assign(self, roleid: int, courseid: int, userid: int, timemodified: int = BASE_TIME) -> None:
        self.add("role_assignments", roleid=roleid, contextid=self.course_context[courseid], userid=userid,
                 timemodified=timemodified)

    def activity(self, cmid: int, userid: int, state: int, timemodified: int) -> None:
        self.add("course_modules_completion", coursemoduleid=cmid, userid=userid, completionstate=state,
                 timemodified=timemodified)

    def course_completion(self, userid: int, courseid: int, *, timestarted: int = 0,
                          timecompleted: int | None = None, timeenrolled: int = 0) -> None:
        self.add("course_completions", userid=userid, course=courseid, timeenrolled=timeenrolled,
                 timestarted=timestarted, timecompleted=timecompleted, reaggregate=0)

    def company(self, name: str, shortname: str, companyid: int | None = None) -> int:
        cid = companyid or self._id("company")
        self.add("company", id=cid, name=name, shortname=shortname, city="", country="GB")
        self.add("department", id=None, name=name, shortname=shortname, company=cid, parent=0)
        return cid

    def member(self, companyid: int, userid: int, *, managertype: int = 0, suspended: int = 0,
               departmentid: int = 0) -> None:
        self.add("company_users", companyid=companyid, userid=userid, managertype=managertype,
                 departmentid=departmentid or companyid, suspended=suspended, educator=0)

    def company_course(self, companyid: int, courseid: int, departmentid: int = 0) -> None:
        self.add("company_course", companyid=companyid, courseid=courseid, departmentid=departmentid or companyid)

    def token(self, userid: int, serviceid: int, token: str, *, name: str = "", validuntil: int = 0) -> None:
        self.add("external_tokens", token=token, privatetoken=None, tokentype=0, userid=userid,
                 externalserviceid=serviceid, sid=None, contextid=1, creatorid=2, iprestriction=None,
                 validuntil=validuntil, timecreated=BASE_TIME, lastaccess=None, name=name or None)

    def base_site(self, *, admin_password_hash: str, timezone: str = "99") -> None:
        """What Moodle's installer leaves: guest and admin, the site course, roles, modules,
        system context, the config rows the service reads, web services switched on."""
        self.add("context", id=1, contextlevel=10, instanceid=0, path="/1", depth=1)
        self.add("context", id=2, contextlevel=40, instanceid=1, path="/1/2", depth=2)
        self.next_ids["context"] = 3
        self.user("guest", "Guest user", " ", "root@localhost", userid=1)
        self.user("admin", "Admin", "User", "admin@example.com", password_hash=admin_password_hash, userid=2)
        self.course("Demo Moodle site", "demo", category=0, courseid=1)
        for rid, short, arche in ROLES:
            self.add("role", id=rid, name="", shortname=short, description="", sortorder=rid, archetype=arche)
        for index, (name, visible) in enumerate(MODULES, start=1):
            self.add("modules", id=index, name=name, visible=visible)
        self.add("role_capabilities", contextid=1, roleid=13, capability="webservice/rest:use", permission=1)
        for name, value in [("siteadmins", "2"), ("siteguest", "1"), ("defaultuserroleid", "7"),
                            ("mnet_localhost_id", "1"), ("timezone", timezone), ("enablewebservices", "1"),
                            ("webserviceprotocols", "rest"), ("maintenance_enabled", "0"),
                            ("version", "2024042205"), ("release", "4.4.5+ (Build: 20241125)"), ("lang", "en"),
                            ("theme", "boost"), ("calendartype", "gregorian"), ("enablecompletion", "1")]:
            self.config(name, value)

    def web_service(self) -> int:
        """The service `alx_report_api_custom` with both functions, as protocol.md section 9 has it."""
        for name, classname, method, path, component in [
                (FUNCTION, "local_alx_report_api_external", "get_course_progress",
                 "local/alx_report_api/externallib.php", "local_alx_report_api"),
                ("core_webservice_get_site_info", "core_webservice_external", "get_site_info",
                 "webservice/externallib.php", "moodle")]:
            self.add("external_functions", id=None, name=name, classname=classname, methodname=method,
                     classpath=path, component=component, capabilities="", services=None)
        sid = self.add("external_services", id=None, name="ALX Report API Custom Service", enabled=1,
                       requiredcapability=None, restrictedusers=0, component=None, timecreated=BASE_TIME,
                       timemodified=BASE_TIME, shortname=SERVICE_SHORTNAME, downloadfiles=0, uploadfiles=0)
        for name in (FUNCTION, "core_webservice_get_site_info"):
            self.add("external_services_functions", externalserviceid=sid, functionname=name)
        return sid


_EXPLICIT_IDS = ("user", "course", "context", "course_modules", "enrol", "company", "department", "role",
                 "modules", "external_services", "external_functions")

FIRST = ["Ana", "Bob", "Carol", "Dávid", "Eve", "Frank", "Grace", "Heidi", "Ivan", "Judy", "Kofi", "Léa",
         "Mallory", "Niamh", "Oscar", "Peggy", "Quentin", "Rupert", "Siobhán", "Trent", "Uma", "Victor",
         "Walter", "Xiu", "Yusuf", "Zoë"]
LAST = ["Smith", "O'Brien", "Müller", "García", "Nguyen", "Kowalski", "Rossi", "Jackson", "Lee", "Fischer",
        "Dubois", "Andersson", "Novák", "Öztürk", "Tanaka", "Silva"]
TOPICS = ["Workplace Safety", "Data Protection & GDPR", "Anti-Bribery", "Leadership", "First Aid",
          "Fire Safety", "Cyber Security", "Diversity & Inclusion", "Customer Care", "Manual Handling",
          "Project Management", "Excel Skills", "Time Management", "Negotiation", "Risk Assessment"]


@dataclass
class DemoSite:
    """What the generator made that a person or a test needs to know."""

    companies: list[tuple[int, str]]
    tokens: list[tuple[str, str, int]]  # (token, manager username, company id)
    admin_password: str
    users: int
    enrolments: int


def generate(engine: Engine, *, companies: int = 3, users: int = 60, courses: int = 8, enrolments_per_user: int = 3,
             seed: int = 1, admin_password: str = "Admin#12345", timezone: str = "99",
             progress: Callable[[str], None] = lambda text: None) -> DemoSite:
    """Write a deterministic IOMAD site: `users` learners spread over `companies`, each company
    with its own slice of `courses`, `enrolments_per_user` enrolments per learner."""
    rnd = random.Random(seed)
    b = SiteBuilder(engine)
    b.create_schema()
    b.base_site(admin_password_hash=moodle_password_hash(admin_password), timezone=timezone)
    service = b.web_service()
    learner_hash = moodle_password_hash("Learner#12345", 4)
    course_ids, manual, tracked_cms = [], {}, {}
    for n in range(courses):
        topic = TOPICS[n % len(TOPICS)]
        cid = b.course(f"{topic} {n // len(TOPICS) + 1}" if n >= len(TOPICS) else topic, f"C{n + 1:04d}",
                       visible=0 if n % 13 == 12 else 1)
        course_ids.append(cid)
        manual[cid] = b.enrol_instance(cid, "manual")
        tracked_cms[cid] = []
        for _ in range(rnd.randint(3, 6)):
            completion = rnd.choice([0, 1, 2, 2])
            module = rnd.randint(1, len(MODULES))
            cmid = b.module(cid, module, completion, deletioninprogress=1 if rnd.random() < 0.03 else 0)
            if completion and MODULES[module - 1][1]:
                tracked_cms[cid].append(cmid)
    company_courses: dict[int, list[int]] = {}
    made = []
    per_company = max(1, min(courses, max(4, enrolments_per_user * 2)))
    for n in range(companies):
        short = f"co{n + 1:04d}" if companies > 26 else f"company{string.ascii_lowercase[n]}"
        cid = b.company(f"Company {n + 1} Ltd", short)
        start = (n * per_company // 2) % courses
        chosen = sorted({course_ids[(start + k) % courses] for k in range(per_company)})
        company_courses[cid] = chosen
        for course in chosen:
            b.company_course(cid, course)
        made.append((cid, short))
    tokens = []
    for cid, short in made:  # one API manager per company, with a token
        uid = b.user(f"{short}_api", "API", short.capitalize(), f"{short}_api@example.com",
                     password_hash=learner_hash)
        b.member(cid, uid, managertype=1)
        b.add("role_assignments", roleid=13, contextid=1, userid=uid, timemodified=BASE_TIME)  # may use REST
        token = f"{rnd.getrandbits(128):032x}"
        b.token(uid, service, token, name=f"{short} token")
        tokens.append((token, f"{short}_api", cid))
    enrolled = 0
    for n in range(users):
        cid, _ = made[n % companies]
        first, last = FIRST[rnd.randrange(len(FIRST))], LAST[rnd.randrange(len(LAST))]
        roll = rnd.random()
        uid = b.user(f"learner{n + 1}", first, last, f"learner{n + 1}@example.com", password_hash=learner_hash,
                     suspended=1 if roll < 0.01 else 0, deleted=1 if 0.01 <= roll < 0.015 else 0,
                     timecreated=BASE_TIME - rnd.randint(0, 400) * 86400)
        b.member(cid, uid, suspended=1 if rnd.random() < 0.01 else 0)
        if companies > 1 and rnd.random() < 0.01:
            b.member(made[(n + 1) % companies][0], uid)
        for course in rnd.sample(company_courses[cid], min(enrolments_per_user, len(company_courses[cid]))):
            enrolled += 1
            _learner_course(b, rnd, uid, course, manual[course], tracked_cms[course])
        if n % 5000 == 4999:
            progress(f"{n + 1}/{users} users")
    b.finish()
    return DemoSite(made, tokens, admin_password, users, enrolled)


def _learner_course(b: SiteBuilder, rnd: random.Random, uid: int, course: int, enrolid: int, cms: list[int]) -> None:
    """One enrolment with its role, activity completions and course completion."""
    created = BASE_TIME - rnd.randint(1, 300) * 86400
    roll = rnd.random()
    status = 1 if roll < 0.02 else 0
    timeend = created + 30 * 86400 if 0.02 <= roll < 0.04 else 0  # an ended enrolment
    timestart = 0 if rnd.random() < 0.5 else created + rnd.randint(0, 5) * 86400
    b.enrol(enrolid, uid, status=status, timestart=timestart, timeend=timeend, timecreated=created)
    b.assign(3 if rnd.random() < 0.03 else 5, course, uid, created)
    done_time = created
    for cmid in cms:
        if rnd.random() < 0.6:
            done_time += rnd.randint(1, 20) * 3600
            b.activity(cmid, uid, rnd.choice([1, 1, 1, 2, 3, 0]), done_time)
    progress_roll = rnd.random()
    if progress_roll < 0.3:
        b.course_completion(uid, course, timestarted=created + 3600, timecompleted=done_time + 3600,
                            timeenrolled=created)
    elif progress_roll < 0.6:
        b.course_completion(uid, course, timestarted=created + 3600, timeenrolled=created)
