"""Course scope, row scope and the progress formulas of course-progress.md sections 7–9.

The only implementation: populate, the sync task, reconcile and the live fallback all read
live rows through `live_rows`. SQL gathers the raw facts of each in-scope pair; `progress`
turns them into reported values."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from moodle_core.engines import Engine

Key = tuple[int, int]  # (userid, courseid)
REPORTED = ("firstname", "lastname", "email", "coursename", "timecompleted", "timestarted",
            "percentage", "status")


@dataclass(frozen=True)
class Progress:
    """The reported values of one (user, course) pair; percentage in hundredths."""

    userid: int
    courseid: int
    firstname: str
    lastname: str
    email: str
    coursename: str
    timecompleted: int
    timestarted: int
    percentage: int
    status: str

    @property
    def key(self) -> Key:
        return (self.userid, self.courseid)

    def values(self) -> tuple:
        return tuple(getattr(self, name) for name in REPORTED)


def percentage_hundredths(done: int, tracked: int, completed: bool) -> int:
    """Section 9.1: exact rounding, halves up."""
    if completed:
        return 10000
    if tracked == 0:
        return 0
    return (20000 * done + tracked) // (2 * tracked)


def progress(userid, courseid, firstname, lastname, email, coursename, cc_completed, cc_started,
             done, tracked, touched, min_timestart, min_timecreated) -> Progress:
    """Sections 9.1–9.4 from the raw facts of one pair."""
    timecompleted = int(cc_completed or 0)
    completed = timecompleted > 0
    cc_started = int(cc_started or 0)
    if completed:
        status = "completed"
    elif touched or cc_started > 0:
        status = "in_progress"
    else:
        status = "not_started"
    if cc_started > 0:
        timestarted = cc_started
    elif min_timestart:
        timestarted = int(min_timestart)
    else:
        timestarted = int(min_timecreated or 0)
    return Progress(int(userid), int(courseid), firstname, lastname, email, coursename,
                    timecompleted if completed else 0, timestarted,
                    percentage_hundredths(int(done or 0), int(tracked or 0), completed), status)


def report_role_ids(engine: Engine, shortnames: Iterable[str]) -> list[int]:
    names = list(shortnames)
    if not names:
        return []
    marks = ", ".join("?" * len(names))
    return [r[0] for r in engine.rows(f"SELECT id FROM {{t:role}} WHERE shortname IN ({marks}) ORDER BY id", names)]


def course_scopes(engine: Engine) -> dict[int, list[int]]:
    """Section 7 for every company: its visible, non-site courses that are not switched off, in
    two queries (pages and checks that list companies)."""
    return {cid: [course for course, _ in pairs] for cid, pairs in _course_scope_contexts(engine).items()}


def _course_scope_contexts(engine: Engine, companyid: int | None = None,
                           switched_off: frozenset[int] | None = None) -> dict[int, list[tuple[int, int | None]]]:
    """Per company (one, or every company with a course): the course scope with each course's
    context id (None when the course has none). `switched_off`: the one company's switched-off
    courses, when known."""
    one, params = ("AND cc.companyid = ? ", (companyid,)) if companyid is not None else ("", ())
    rows = engine.rows(
        "SELECT DISTINCT cc.companyid, c.id, ctx.id FROM {t:company_course} cc JOIN {t:course} c ON c.id = cc.courseid "
        "LEFT JOIN {t:context} ctx ON ctx.contextlevel = 50 AND ctx.instanceid = c.id "
        f"WHERE c.visible = 1 AND c.category <> 0 {one}ORDER BY cc.companyid, c.id", params)
    if companyid is not None and switched_off is not None:
        off = {(companyid, course) for course in switched_off}
    else:
        off = {(int(cid), int(name[7:])) for cid, name, value in engine.rows(
            "SELECT companyid, setting_name, setting_value FROM {t:local_alx_api_settings} WHERE "
            + ("companyid = ? AND " if companyid is not None else "") + "setting_name LIKE 'course%'", params)
            if name[7:].isdigit() and int(value) == 0}
    out: dict[int, list[tuple[int, int | None]]] = {}
    for cid, course, context in rows:
        if (int(cid), int(course)) not in off:
            out.setdefault(int(cid), []).append((int(course), None if context is None else int(context)))
    return out


@dataclass(frozen=True)
class Scope:
    """What row scope needs beyond the clock: the company, its course scope, the report roles
    and (when loaded) each scope course's context id, as (course, context) pairs."""

    companyid: int
    courses: tuple[int, ...]
    roles: tuple[int, ...]
    contexts: tuple[tuple[int, int], ...] = ()

    @classmethod
    def load(cls, engine: Engine, companyid: int, report_roles: Iterable[str],
             switched_off: frozenset[int] | None = None) -> Scope:
        """`switched_off`: the company's switched-off courses when its settings are read already."""
        scoped = _course_scope_contexts(engine, companyid, switched_off).get(companyid, [])
        return cls._of(companyid, scoped, tuple(report_role_ids(engine, report_roles)))

    @classmethod
    def load_all(cls, engine: Engine, companyids: Iterable[int], report_roles: Iterable[str]) -> dict[int, Scope]:
        """The scopes of many companies in three queries (a sync run)."""
        scoped, roles = _course_scope_contexts(engine), tuple(report_role_ids(engine, report_roles))
        return {cid: cls._of(cid, scoped.get(cid, []), roles) for cid in companyids}

    @classmethod
    def _of(cls, companyid: int, scoped: list[tuple[int, int | None]], roles: tuple[int, ...]) -> Scope:
        return cls(companyid, tuple(c for c, _ in scoped), roles, tuple((c, x) for c, x in scoped if x is not None))

    @property
    def empty(self) -> bool:
        return not self.courses or not self.roles


def _in(values: Iterable[int]) -> str:
    return ", ".join(str(int(v)) for v in values)


# In-scope pairs of one company (section 8), one group per (user, course) with the enrolment
# facts; {where} narrows the users. Integers of the scope are inlined (they are ints we built).
_PAIRS = """
SELECT ue.userid AS userid, e.courseid AS courseid,
       MIN(CASE WHEN ue.timestart > 0 THEN ue.timestart END) AS min_timestart,
       MIN(ue.timecreated) AS min_timecreated
FROM {{t:company_users}} cu
JOIN {{t:user}} u ON u.id = cu.userid AND u.deleted = 0 AND u.suspended = 0
JOIN {{t:user_enrolments}} ue ON ue.userid = cu.userid AND ue.status = 0
     AND ue.timestart < ? AND (ue.timeend = 0 OR ue.timeend > ?)
JOIN {{t:enrol}} e ON e.id = ue.enrolid AND e.status = 0 AND e.courseid IN ({courses})
{ctxjoin}
WHERE cu.companyid = ? AND cu.suspended = 0 {where}
  AND EXISTS (SELECT 1 FROM {{t:role_assignments}} ra
              WHERE ra.userid = ue.userid AND ra.contextid = {ctxid} AND ra.roleid IN ({roles}))
GROUP BY ue.userid, e.courseid
"""


def _pairs_sql(scope: Scope, where: str, courses: Iterable[int] | None = None) -> str:
    """_PAIRS for a scope. With the scope's context ids known, a course's context is a CASE over
    them instead of a join to `context`: planners misjudge that join (PostgreSQL estimates
    enrol ⋈ context at one row and then plans courses × members), 2-5× slower on the bench."""
    if scope.contexts:
        ctxjoin = ""
        ctxid = "CASE e.courseid " + " ".join(f"WHEN {int(c)} THEN {int(x)}" for c, x in scope.contexts) + " END"
    else:
        ctxjoin = "JOIN {t:context} ctx ON ctx.contextlevel = 50 AND ctx.instanceid = e.courseid"
        ctxid = "ctx.id"
    return _PAIRS.format(courses=_in(scope.courses if courses is None else courses), roles=_in(scope.roles),
                         where=where, ctxjoin=ctxjoin, ctxid=ctxid)

_TRACKED = """{t:course_modules} cm JOIN {t:modules} m ON m.id = cm.module
    WHERE cm.course = p.courseid AND cm.completion > 0 AND cm.deletioninprogress = 0 AND m.visible = 1"""

_VALUES = """
SELECT p.userid, p.courseid, u.firstname, u.lastname, u.email, c.fullname,
       cc.timecompleted, cc.timestarted,
       (SELECT COUNT(*) FROM {t:course_modules_completion} cmc
          JOIN {t:course_modules} cm ON cm.id = cmc.coursemoduleid JOIN {t:modules} m ON m.id = cm.module
         WHERE cmc.userid = p.userid AND cm.course = p.courseid AND cm.completion > 0
           AND cm.deletioninprogress = 0 AND m.visible = 1 AND cmc.completionstate IN (1, 2)) AS done,
       (SELECT COUNT(*) FROM {tracked}) AS tracked,
       CASE WHEN EXISTS (SELECT 1 FROM {t:course_modules_completion} cmc
          JOIN {t:course_modules} cm ON cm.id = cmc.coursemoduleid
         WHERE cmc.userid = p.userid AND cm.course = p.courseid AND cm.deletioninprogress = 0
           AND cmc.completionstate > 0) THEN 1 ELSE 0 END AS touched,
       p.min_timestart, p.min_timecreated
FROM ({pairs}) p
JOIN {t:user} u ON u.id = p.userid
JOIN {t:course} c ON c.id = p.courseid
LEFT JOIN {t:course_completions} cc ON cc.userid = p.userid AND cc.course = p.courseid
ORDER BY p.userid, p.courseid
""".replace("{tracked}", _TRACKED)


def _values_query(scope: Scope, now: int, *, after: Key, upto_user: int | None, users: Iterable[int] | None,
                  limit: int | None, offset: int) -> tuple[str, list] | None:
    """The raw facts query of `live_rows` (None: nothing can be in scope)."""
    if scope.empty:
        return None
    params: list = [now, now, scope.companyid]
    if users is not None:
        users = sorted(set(users))
        if not users:
            return None
        where = f"AND cu.userid IN ({_in(users)}) AND ue.userid IN ({_in(users)})"
    else:
        # the bounds are repeated on ue.userid: planners do not carry a range across the join,
        # and without it a window of users reads every enrolment of the company's courses
        where = "AND cu.userid >= ? AND ue.userid >= ?"
        params += [after[0], after[0]]
        if upto_user is not None:
            where += " AND cu.userid <= ? AND ue.userid <= ?"
            params += [upto_user, upto_user]
    pairs = _pairs_sql(scope, where)
    if users is None:
        pairs = f"SELECT * FROM ({pairs}) g WHERE g.userid > ? OR (g.userid = ? AND g.courseid > ?)"
        params += [after[0], after[0], after[1]]
        if limit is not None:
            pairs += f" ORDER BY g.userid, g.courseid LIMIT {int(limit)} OFFSET {int(offset)}"
    return _VALUES.replace("{pairs}", pairs), params


def live_rows(engine: Engine, scope: Scope, now: int, *, after: Key = (0, 0), upto_user: int | None = None,
              users: Iterable[int] | None = None, limit: int | None = None, offset: int = 0) -> list[Progress]:
    """In-scope pairs with their values, in key order.

    Either a window: keys > `after` whose user is ≤ `upto_user` (None: no bound), at most `limit`
    after skipping `offset`; or the pairs of an explicit set of `users`."""
    query = _values_query(scope, now, after=after, upto_user=upto_user, users=users, limit=limit, offset=offset)
    if query is None:
        return []
    return [progress(*row) for row in engine.rows(*query)]


# progress() of sections 9.1-9.4 as SQL over the columns of _VALUES, for the bulk path that writes
# a window of live pairs with INSERT ... SELECT (reporting.py). Same rules, same results: the
# populate, sync and reference-site tests compare what either path stores with the oracle.
_REPORTED_SQL = """
SELECT v.userid, v.courseid, v.firstname, v.lastname, v.email, v.fullname AS coursename,
       CASE WHEN COALESCE(v.timecompleted, 0) > 0 THEN v.timecompleted ELSE 0 END AS timecompleted,
       CASE WHEN COALESCE(v.timestarted, 0) > 0 THEN v.timestarted
            WHEN COALESCE(v.min_timestart, 0) <> 0 THEN v.min_timestart
            ELSE COALESCE(v.min_timecreated, 0) END AS timestarted,
       CASE WHEN COALESCE(v.timecompleted, 0) > 0 THEN 10000 WHEN v.tracked = 0 THEN 0
            ELSE {hundredths} END AS hundredths,
       CASE WHEN COALESCE(v.timecompleted, 0) > 0 THEN 'completed'
            WHEN v.touched = 1 OR COALESCE(v.timestarted, 0) > 0 THEN 'in_progress'
            ELSE 'not_started' END AS status
FROM ({values}) v
"""


def reported_query(engine: Engine, scope: Scope, now: int, *, after: Key, upto_user: int | None,
                   limit: int) -> tuple[str, list] | None:
    """The window of `live_rows` with the reported values computed in SQL: columns userid,
    courseid, firstname, lastname, email, coursename, timecompleted, timestarted, hundredths
    (the percentage in hundredths) and status. None when nothing can be in scope."""
    query = _values_query(scope, now, after=after, upto_user=upto_user, users=None, limit=limit, offset=0)
    if query is None:
        return None
    hundredths = engine.int_div("20000 * v.done + v.tracked", "2 * v.tracked")
    return _REPORTED_SQL.format(hundredths=hundredths, values=query[0]), query[1]


def pairs_bound(engine: Engine, scope: Scope) -> int:
    """The progress total of tasks.md 10.3 (keys in the union of live scope and the company's
    reporting rows), bounded from above without computing scope: the members' enrolments in the
    scope courses plus the stored rows. Computing scope for the exact count cost 15 % of a
    populate (issue 16); progress stays below 100 % until the company's last batch."""
    stored = "SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = ?"
    if not scope.courses:
        return int(engine.scalar(stored, (scope.companyid,)))
    return int(engine.scalar(
        f"SELECT ({stored}) + (SELECT COUNT(*) FROM {{t:company_users}} cu JOIN {{t:user_enrolments}} ue "
        "ON ue.userid = cu.userid JOIN {t:enrol} e ON e.id = ue.enrolid "
        f"WHERE cu.companyid = ? AND e.courseid IN ({_in(scope.courses)}))", (scope.companyid, scope.companyid)))


def member_window_end(engine: Engine, companyid: int, after_user: int, size: int) -> int | None:
    """The user id `size` membership rows after `after_user`, bounding one batch's users;
    None when fewer remain (the window reaches the end)."""
    return engine.scalar(
        f"SELECT userid FROM {{t:company_users}} WHERE companyid = ? AND userid > ? "
        f"ORDER BY userid LIMIT 1 OFFSET {int(size)}", (companyid, after_user))


def scope_keys(engine: Engine, scope: Scope, now: int, *, users: Iterable[int] | None = None,
               courses: Iterable[int] | None = None) -> set[Key]:
    """Keys of the in-scope pairs of the company (optionally of some users or courses only)."""
    if scope.empty:
        return set()
    where, wanted = "", scope.courses
    if users is not None:
        users = sorted(set(users))
        if not users:
            return set()
        where = f"AND cu.userid IN ({_in(users)}) AND ue.userid IN ({_in(users)})"
    if courses is not None:
        wanted = tuple(sorted(set(courses) & set(scope.courses)))
        if not wanted:
            return set()
    pairs = _pairs_sql(scope, where, wanted)
    return {(int(r[0]), int(r[1])) for r in engine.rows(f"SELECT g.userid, g.courseid FROM ({pairs}) g",
                                                         (now, now, scope.companyid))}


def scope_difference(engine: Engine, scope: Scope, now: int, courses: Iterable[int] | None = None) -> set[Key]:
    """Keys in exactly one of (the live row scope, the company's active reporting rows): the set
    difference of tasks.md 5.4 computed by the database, so only the differences travel.
    `courses`: only pairs of these courses (all of the company's when None)."""
    active = ("SELECT r.userid, r.courseid, 2 AS side FROM {t:local_alx_api_reporting} r "
              "WHERE r.companyid = ? AND r.is_deleted = 0")
    wanted = scope.courses
    if courses is not None:
        courses = sorted(set(courses))
        if not courses:
            return set()
        active += f" AND r.courseid IN ({_in(courses)})"
        wanted = tuple(c for c in scope.courses if c in set(courses))
    if scope.empty or not wanted:
        return {(int(u), int(c)) for u, c, _ in engine.rows(active, (scope.companyid,))}
    pairs = _pairs_sql(scope, "", wanted)
    sql = (f"SELECT k.userid, k.courseid FROM (SELECT g.userid, g.courseid, 1 AS side FROM ({pairs}) g "
           f"UNION ALL {active}) k GROUP BY k.userid, k.courseid HAVING SUM(k.side) <> 3")
    return {(int(u), int(c)) for u, c in engine.rows(sql, (now, now, scope.companyid, scope.companyid))}
