"""Change detection for a sync run, once for all its companies (tasks.md 5.3, 5.4).

Each change source is read once per run, from the earliest bound of the run's companies, and its
rows are split by company in the database (a pair belongs to the companies whose member and
course it is, or that store a row for it); each company then keeps the rows at or after its own
bound. The set difference of 5.4 costs a pass over the company's whole scope, so it runs only
where an input that can change scope without a timestamp moved: a fingerprint of the company's
memberships and course scope, and per course of its enrolments, enrolment instances and role
assignments (counts and id sums: ids only grow, so a row deleted and another added still moves
the sum). Times that just passed (an enrolment's start or end) are a source of their own,
`ue_time`. Reconcile (section 9) shares none of this: it checks the table against the whole
scope, company by company."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from local_alx_report_api.classes.progress import Key, Scope
from moodle_core.engines import Engine

PAIR_SOURCES = ("cmc", "cc_completed", "cc_started", "cc_reaggregate", "ue_created", "ue_modified", "ra", "ue_time")
SOURCES = (*PAIR_SOURCES, "user", "course", "cm_added")
CLOCK_SOURCES = ("ue_time",)  # marks of the clock, not of data: their high mark is the run's now

# (userid AS u, courseid AS c, timestamp AS t) of the rows changed at or after the bound (one `?`,
# ue_time also takes the run's now): every pair a change touches
_PAIR_SQL = {
    "cmc": "SELECT cmc.userid AS u, cm.course AS c, cmc.timemodified AS t FROM {t:course_modules_completion} cmc "
           "JOIN {t:course_modules} cm ON cm.id = cmc.coursemoduleid WHERE cmc.timemodified >= ?",
    "cc_completed": "SELECT userid AS u, course AS c, timecompleted AS t FROM {t:course_completions} "
                    "WHERE timecompleted >= ? AND timecompleted > 0",
    "cc_started": "SELECT userid AS u, course AS c, timestarted AS t FROM {t:course_completions} "
                  "WHERE timestarted >= ? AND timestarted > 0",
    "cc_reaggregate": "SELECT userid AS u, course AS c, reaggregate AS t FROM {t:course_completions} "
                      "WHERE reaggregate >= ? AND reaggregate > 0",
    "ue_created": "SELECT ue.userid AS u, e.courseid AS c, ue.timecreated AS t FROM {t:user_enrolments} ue "
                  "JOIN {t:enrol} e ON e.id = ue.enrolid WHERE ue.timecreated >= ?",
    "ue_modified": "SELECT ue.userid AS u, e.courseid AS c, ue.timemodified AS t FROM {t:user_enrolments} ue "
                   "JOIN {t:enrol} e ON e.id = ue.enrolid WHERE ue.timemodified >= ?",
    "ra": "SELECT ra.userid AS u, ctx.instanceid AS c, ra.timemodified AS t FROM {t:role_assignments} ra "
          "JOIN {t:context} ctx ON ctx.id = ra.contextid WHERE ctx.contextlevel = 50 AND ra.timemodified >= ?",
    # an enrolment whose start or end has just been passed (scope changed with the clock): a row
    # for each, so that each is held against every company's own bound
    "ue_time": "SELECT ue.userid AS u, e.courseid AS c, ue.timestart AS t FROM {t:user_enrolments} ue "
               "JOIN {t:enrol} e ON e.id = ue.enrolid WHERE ue.timestart >= ? AND ue.timestart <= ? UNION ALL "
               "SELECT ue.userid, e.courseid, ue.timeend FROM {t:user_enrolments} ue "
               "JOIN {t:enrol} e ON e.id = ue.enrolid WHERE ue.timeend >= ? AND ue.timeend <= ?",
}


def _ints(values: Iterable[int]) -> str:
    return ", ".join(str(int(v)) for v in values)


def _digest(*parts) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


@dataclass
class Found:
    """What the sources say changed for one company since its bounds."""

    pairs: set[Key] = field(default_factory=set)
    users: set[int] = field(default_factory=set)  # every pair of these users
    courses: set[int] = field(default_factory=set)  # every pair of these courses
    seen: dict[str, int] = field(default_factory=dict)  # the largest timestamp kept, per source

    def note(self, source: str, stamp) -> None:
        if stamp is not None:
            self.seen[source] = max(self.seen.get(source, 0), int(stamp))


def changes(engine: Engine, bounds: dict[int, dict[str, int]], now: int) -> tuple[dict[int, Found], dict[str, int]]:
    """Per company of `bounds` (company → source → lower bound): the changed pairs, users and
    courses, read in one statement for all of them; and per source the largest timestamp the
    statement read, whatever its company (see `plan`'s high marks). Each source is read once:
    rows no company takes come back too (company NULL or 0), for those largest timestamps."""
    found = {cid: Found() for cid in bounds}
    if not bounds:
        return found, {}
    lo = {s: min(b[s] for b in bounds.values()) for s in SOURCES}
    parts, params = [], []
    for n, source in enumerate(PAIR_SOURCES):
        parts.append(f"SELECT {n} AS src, q.u, q.c, q.t FROM ({_PAIR_SQL[source]}) q")
        params += [lo[source], now] * 2 if source == "ue_time" else [lo[source]]
    user, course, added = (SOURCES.index(s) for s in ("user", "course", "cm_added"))
    sql = (
        # a pair: to the companies whose member and course it is, and to those storing a row for it
        f"SELECT x.src, cu.companyid, r.companyid, x.u, x.c, x.t FROM ({' UNION ALL '.join(parts)}) x "
        "LEFT JOIN {t:company_users} cu ON cu.userid = x.u AND EXISTS (SELECT 1 FROM {t:company_course} cc "
        "WHERE cc.companyid = cu.companyid AND cc.courseid = x.c) "
        "LEFT JOIN {t:local_alx_api_reporting} r ON r.userid = x.u AND r.courseid = x.c"
        # a user: to the companies it is a member of or stores rows of
        f" UNION ALL SELECT {user}, cu.companyid, 0, u.id, 0, u.timemodified FROM {{t:user}} u "
        "LEFT JOIN {t:company_users} cu ON cu.userid = u.id WHERE u.timemodified >= ?"
        f" UNION ALL SELECT DISTINCT {user}, r.companyid, 0, u.id, 0, u.timemodified FROM {{t:user}} u "
        "JOIN {t:local_alx_api_reporting} r ON r.userid = u.id WHERE u.timemodified >= ?"
        # a course: to the companies it belongs to (a course that left a company changed the
        # company's course scope, whose fingerprint makes that company's set difference run)
        f" UNION ALL SELECT {course}, cc.companyid, 0, 0, c.id, c.timemodified FROM {{t:course}} c "
        "LEFT JOIN {t:company_course} cc ON cc.courseid = c.id WHERE c.timemodified >= ?"
        f" UNION ALL SELECT {added}, cc.companyid, 0, 0, cm.course, cm.added FROM {{t:course_modules}} cm "
        "LEFT JOIN {t:company_course} cc ON cc.courseid = cm.course WHERE cm.added >= ?")
    params += [lo["user"], lo["user"], lo["course"], lo["cm_added"]]
    read: dict[str, int] = {}
    for src, member, storing, u, c, t in engine.rows(sql, params):
        if t is None:
            continue
        source, t = SOURCES[int(src)], int(t)
        read[source] = max(read.get(source, t), t)
        for companyid in {int(member or 0), int(storing or 0)}:
            if companyid not in found or t < bounds[companyid][source]:
                continue
            f = found[companyid]
            f.note(source, t)
            if source in PAIR_SOURCES:
                f.pairs.add((int(u), int(c)))
            elif source == "user":
                f.users.add(int(u))
            else:
                f.courses.add(int(c))
    return found, read


def stored_of_users(engine: Engine, wanted: dict[int, set[int]]) -> dict[int, set[Key]]:
    """The reporting keys (any state) of some users per company, read for all companies at once."""
    users = sorted({u for us in wanted.values() for u in us})
    out: dict[int, set[Key]] = {cid: set() for cid in wanted}
    for start in range(0, len(users), 1000):
        for cid, u, c in engine.rows("SELECT companyid, userid, courseid FROM {t:local_alx_api_reporting} "
                                     f"WHERE userid IN ({_ints(users[start:start + 1000])})"):
            if int(cid) in wanted and int(u) in wanted[int(cid)]:
                out[int(cid)].add((int(u), int(c)))
    return out


@dataclass
class Site:
    """What every company's detection compares against, read once per run: fingerprints of the
    inputs of scope that leave no timestamp, the courses' cache revisions and company courses."""

    members: dict[int, str]  # company → its memberships
    courses: dict[int, str]  # course → its enrolments, enrolment instances and course role assignments
    cacherevs: dict[int, int]
    company_courses: dict[int, set[int]]  # company_course, any visibility or switch

    @classmethod
    def read(cls, engine: Engine) -> Site:
        members = {int(cid): _digest(*rest) for cid, *rest in engine.rows(
            "SELECT companyid, COUNT(*), SUM(id), SUM(CASE WHEN suspended <> 0 THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN suspended <> 0 THEN id ELSE 0 END), "
            "SUM(CASE WHEN suspended <> 0 THEN (id % 2147483647) * (id % 2147483647) % 2147483647 ELSE 0 END) "
            "FROM {t:company_users} GROUP BY companyid")}
        parts: dict[int, list] = {}
        for kind, course, *rest in engine.rows(
                "SELECT 0, e.courseid, COUNT(*), SUM(ue.id), 0, 0 FROM {t:user_enrolments} ue "
                "JOIN {t:enrol} e ON e.id = ue.enrolid GROUP BY e.courseid UNION ALL "
                "SELECT 1, courseid, COUNT(*), SUM(id), SUM(CASE WHEN status = 0 THEN id ELSE 0 END), "
                "SUM(CASE WHEN status = 0 THEN (id % 2147483647) * (id % 2147483647) % 2147483647 ELSE 0 END) "
                "FROM {t:enrol} GROUP BY courseid UNION ALL "
                "SELECT 2, ctx.instanceid, COUNT(*), SUM(ra.id), 0, 0 FROM {t:role_assignments} ra "
                "JOIN {t:context} ctx ON ctx.id = ra.contextid AND ctx.contextlevel = 50 GROUP BY ctx.instanceid"):
            parts.setdefault(int(course), []).append((int(kind), *(int(v or 0) for v in rest)))
        courses = {course: _digest(*sorted(p)) for course, p in parts.items()}
        company_courses: dict[int, set[int]] = {}
        for cid, course in engine.rows("SELECT companyid, courseid FROM {t:company_course}"):
            company_courses.setdefault(int(cid), set()).add(int(course))
        revs = {int(c): int(r) for c, r in engine.rows("SELECT id, cacherev FROM {t:course}")}
        return cls(members, courses, revs, company_courses)

    def prints(self, scope: Scope) -> dict:
        """The company's fingerprints, as its state records them."""
        return {"members": self.members.get(scope.companyid, ""), "scope": _digest(scope.courses, scope.roles),
                "courses": {str(c): self.courses.get(c, "") for c in scope.courses}}

    def cacherev_snapshot(self, companyid: int, recorded: dict[str, int]) -> dict[str, int]:
        watched = self.company_courses.get(companyid, set()) | {int(c) for c in recorded}
        return {str(c): self.cacherevs[c] for c in sorted(watched) if c in self.cacherevs}


def to_difference(recorded: dict | None, current: dict) -> set[int] | None:
    """Where the company's set difference must run: None for all of its scope, else the courses
    whose fingerprint moved (often none)."""
    if not recorded or recorded.get("members") != current["members"] or recorded.get("scope") != current["scope"]:
        return None
    before = recorded.get("courses", {})
    return {int(c) for c, value in current["courses"].items() if before.get(c) != value}
