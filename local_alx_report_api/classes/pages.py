"""Turning rows into response elements (course-progress.md sections 4, 5 and 10)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from local_alx_report_api.classes.company_settings import FIELDS
from local_alx_report_api.classes.progress import Progress

QUARTER = 900  # every UTC offset of today's time zones is a multiple of 15 minutes


class LocalTimes:
    """Unix time → "Y-m-d H:i:s" in a zone, "" for 0. A page formats two times per row: the
    date and hour are worked out once per quarter hour, the minutes and seconds added to them;
    a quarter with an offset change in it, or an offset that is not whole quarters (old local
    mean times), is formatted exactly every time."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        self.quarters: dict[int, tuple[str, int] | None] = {}

    def exact(self, ts: int) -> str:
        return datetime.fromtimestamp(ts, self.zone).strftime("%Y-%m-%d %H:%M:%S")

    def _quarter(self, quarter: int) -> tuple[str, int] | None:
        start = datetime.fromtimestamp(quarter * QUARTER, self.zone)
        end = datetime.fromtimestamp(quarter * QUARTER + QUARTER - 1, self.zone)
        offset = start.utcoffset()
        if offset != end.utcoffset() or offset.total_seconds() % QUARTER:
            return None
        return start.strftime("%Y-%m-%d %H:"), start.minute

    def __call__(self, ts: int) -> str:
        if not ts:
            return ""
        quarter, into = divmod(ts, QUARTER)
        known = self.quarters.get(quarter, False)
        if known is False:
            if len(self.quarters) > 100_000:
                self.quarters.clear()
            known = self.quarters[quarter] = self._quarter(quarter)
        if known is None:
            return self.exact(ts)
        minutes, seconds = divmod(into, 60)
        return f"{known[0]}{known[1] + minutes:02d}:{seconds:02d}"


def element(row: Progress, fields: tuple[str, ...], readable: LocalTimes, *, deleted: bool = False) -> dict:
    """One response element with only the enabled keys, in response order; a tombstone carries
    its last stored values and the status `deleted` (course-progress.md 10)."""
    full = {"userid": row.userid, "firstname": row.firstname, "lastname": row.lastname, "email": row.email,
            "courseid": row.courseid, "coursename": row.coursename, "timecompleted": readable(row.timecompleted),
            "timecompleted_unix": row.timecompleted, "timestarted": readable(row.timestarted),
            "timestarted_unix": row.timestarted, "percentage": row.percentage / 100,
            "status": "deleted" if deleted else row.status}
    return full if fields == FIELDS else {key: full[key] for key in fields}
