"""An independent, deliberately naive reading of course-progress.md sections 7–9 for tests:
every table is loaded into Python and the rules are applied one by one, in the words of the spec.
It shares no code with the product's SQL, so agreement between the two means something."""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal


def _table(engine, name, columns):
    return [dict(zip(columns, row, strict=True)) for row in engine.rows(f"SELECT {', '.join(columns)} FROM {{t:{name}}}")]


def expected_rows(engine, companyid: int, now: int, report_roles=("student",)) -> dict:
    """{(userid, courseid): (firstname, lastname, email, coursename, timecompleted, timestarted,
    percentage_hundredths, status)} for every in-scope pair of the company."""
    courses = {c["id"]: c for c in _table(engine, "course", ["id", "category", "fullname", "visible"])}
    users = {u["id"]: u for u in _table(engine, "user", ["id", "firstname", "lastname", "email", "deleted", "suspended"])}
    settings = {s["setting_name"]: int(s["setting_value"]) for s in
                _table(engine, "local_alx_api_settings", ["companyid", "setting_name", "setting_value"])
                if s["companyid"] == companyid}
    scope_courses = set()
    for row in _table(engine, "company_course", ["companyid", "courseid"]):
        c = courses.get(row["courseid"])
        if row["companyid"] == companyid and c and c["visible"] == 1 and c["category"] != 0 \
                and settings.get(f"course_{c['id']}", 1) != 0:
            scope_courses.add(c["id"])
    members = {r["userid"] for r in _table(engine, "company_users", ["companyid", "userid", "suspended"])
               if r["companyid"] == companyid and r["suspended"] == 0}
    enrols = {e["id"]: e for e in _table(engine, "enrol", ["id", "courseid", "status"])}
    active = defaultdict(list)
    for ue in _table(engine, "user_enrolments", ["userid", "enrolid", "status", "timestart", "timeend", "timecreated"]):
        e = enrols[ue["enrolid"]]
        if ue["status"] == 0 and e["status"] == 0 and ue["timestart"] < now and (ue["timeend"] == 0 or ue["timeend"] > now):
            active[(ue["userid"], e["courseid"])].append(ue)
    roles = {r["id"] for r in _table(engine, "role", ["id", "shortname"]) if r["shortname"] in report_roles}
    contexts = {c["id"]: c for c in _table(engine, "context", ["id", "contextlevel", "instanceid"])}
    has_role = set()
    for ra in _table(engine, "role_assignments", ["userid", "contextid", "roleid"]):
        ctx = contexts.get(ra["contextid"])
        if ctx and ctx["contextlevel"] == 50 and ra["roleid"] in roles:
            has_role.add((ra["userid"], ctx["instanceid"]))
    modules = {m["id"]: m for m in _table(engine, "modules", ["id", "visible"])}
    cms = {cm["id"]: cm for cm in _table(engine, "course_modules", ["id", "course", "module", "completion", "deletioninprogress"])}
    tracked = defaultdict(set)
    for cm in cms.values():
        if cm["completion"] > 0 and cm["deletioninprogress"] == 0 and modules[cm["module"]]["visible"] == 1:
            tracked[cm["course"]].add(cm["id"])
    states = defaultdict(dict)
    for cmc in _table(engine, "course_modules_completion", ["coursemoduleid", "userid", "completionstate"]):
        cm = cms.get(cmc["coursemoduleid"])
        if cm:
            states[(cmc["userid"], cm["course"])][cm["id"]] = cmc["completionstate"]
    completions = {(cc["userid"], cc["course"]): cc for cc in
                   _table(engine, "course_completions", ["userid", "course", "timestarted", "timecompleted"])}
    out = {}
    for (userid, courseid), enrolments in active.items():
        user = users.get(userid)
        if courseid not in scope_courses or userid not in members or (userid, courseid) not in has_role:
            continue
        if user["deleted"] or user["suspended"]:
            continue
        cc = completions.get((userid, courseid))
        completed = bool(cc and (cc["timecompleted"] or 0) > 0)
        mine = states[(userid, courseid)]
        done = sum(1 for cm in tracked[courseid] if mine.get(cm) in (1, 2))
        n = len(tracked[courseid])
        if completed:
            pct = 10000
        elif n == 0:
            pct = 0
        else:
            exact = (Decimal(done) * 100 / Decimal(n)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
            pct = int(exact * 100)
        touched = any(state > 0 for cm, state in mine.items() if cms[cm]["deletioninprogress"] == 0)
        if completed:
            status = "completed"
        elif touched or (cc and cc["timestarted"] > 0):
            status = "in_progress"
        else:
            status = "not_started"
        starts = [e["timestart"] for e in enrolments if e["timestart"] > 0]
        if cc and cc["timestarted"] > 0:
            started = cc["timestarted"]
        elif starts:
            started = min(starts)
        else:
            started = min(e["timecreated"] for e in enrolments)
        out[(userid, courseid)] = (user["firstname"], user["lastname"], user["email"], courses[courseid]["fullname"],
                                   cc["timecompleted"] if completed else 0, started, pct, status)
    return out


def stored(engine, companyid: int, active_only: bool = True) -> dict:
    """The company's reporting rows in the same shape as expected_rows."""
    rows = engine.rows("SELECT userid, courseid, firstname, lastname, email, coursename, timecompleted, timestarted, "
                       "percentage, status, is_deleted FROM {t:local_alx_api_reporting} WHERE companyid = ?", (companyid,))
    return {(r[0], r[1]): (r[2], r[3], r[4], r[5], int(r[6]), int(r[7]), int(Decimal(str(r[8])) * 100), r[9])
            for r in rows if not (active_only and r[10])}
