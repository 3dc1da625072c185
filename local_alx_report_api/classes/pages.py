"""Reading a page of a company's rows and turning rows into response elements
(course-progress.md sections 4, 5 and 11)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from local_alx_report_api.classes.progress import Progress, Scope, live_rows
from moodle_core.engines import Engine

_COLUMNS = "userid, courseid, firstname, lastname, email, coursename, timecompleted, timestarted, percentage, status"


def has_rows(engine: Engine, companyid: int) -> bool:
    """Whether the reporting table was ever filled for the company (active or deleted rows)."""
    return engine.scalar("SELECT 1 FROM {t:local_alx_api_reporting} WHERE companyid = ? LIMIT 1",
                         (companyid,)) is not None


def table_page(engine: Engine, companyid: int, courses: tuple[int, ...], offset: int, limit: int) -> list[Progress]:
    """Active rows of the company's courses in scope, ordered by key, by offset."""
    if not courses:
        return []
    marks = ", ".join(str(int(c)) for c in courses)
    rows = engine.rows(f"SELECT {_COLUMNS} FROM {{t:local_alx_api_reporting}} WHERE companyid = ? AND is_deleted = 0 "
                       f"AND courseid IN ({marks}) ORDER BY userid, courseid LIMIT {int(limit)} OFFSET {int(offset)}",
                       (companyid,))
    return [Progress(u, c, fn, ln, em, cn, int(tc), int(ts), int(Decimal(str(pct)) * 100), st)
            for u, c, fn, ln, em, cn, tc, ts, pct, st in rows]


def live_page(engine: Engine, scope: Scope, now: int, offset: int, limit: int) -> list[Progress]:
    """The live fallback (sync-and-cache.md 8): the same rows computed from Moodle's tables."""
    return live_rows(engine, scope, now, limit=limit, offset=offset)


def element(row: Progress, fields: tuple[str, ...], zone: ZoneInfo, *, deleted: bool = False) -> dict:
    """One response element with only the enabled keys, in response order; a tombstone carries
    its last stored values and the status `deleted` (course-progress.md 10)."""
    def readable(ts: int) -> str:
        return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S") if ts else ""

    full = {"userid": row.userid, "firstname": row.firstname, "lastname": row.lastname, "email": row.email,
            "courseid": row.courseid, "coursename": row.coursename, "timecompleted": readable(row.timecompleted),
            "timecompleted_unix": row.timecompleted, "timestarted": readable(row.timestarted),
            "timestarted_unix": row.timestarted, "percentage": row.percentage / 100, "status": "deleted" if deleted else row.status}
    return {key: full[key] for key in fields}
