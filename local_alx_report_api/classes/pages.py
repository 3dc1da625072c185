"""Turning rows into response elements (course-progress.md sections 4, 5 and 10)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from local_alx_report_api.classes.progress import Progress


def element(row: Progress, fields: tuple[str, ...], zone: ZoneInfo, *, deleted: bool = False) -> dict:
    """One response element with only the enabled keys, in response order; a tombstone carries
    its last stored values and the status `deleted` (course-progress.md 10)."""
    def readable(ts: int) -> str:
        return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S") if ts else ""

    full = {"userid": row.userid, "firstname": row.firstname, "lastname": row.lastname, "email": row.email,
            "courseid": row.courseid, "coursename": row.coursename, "timecompleted": readable(row.timecompleted),
            "timecompleted_unix": row.timecompleted, "timestarted": readable(row.timestarted),
            "timestarted_unix": row.timestarted, "percentage": row.percentage / 100,
            "status": "deleted" if deleted else row.status}
    return {key: full[key] for key in fields}
