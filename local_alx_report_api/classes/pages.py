"""Turning rows into response elements (course-progress.md sections 4, 5 and 10)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from local_alx_report_api.classes.company_settings import FIELDS
from local_alx_report_api.classes.progress import Progress
from local_alx_report_api.classes.reporting import hundredths

QUARTER = 900  # every UTC offset of today's time zones is a multiple of 15 minutes
_MINUTES_SECONDS = tuple(f"{m:02d}:{s:02d}" for m in range(60) for s in range(60))  # "MM:SS" by second of the hour


def _offset(moment: datetime) -> str:
    """ISO 8601's zone designator: Z, or +hh:mm / -hh:mm."""
    minutes = int(moment.utcoffset().total_seconds()) // 60
    if minutes == 0:
        return "Z"
    sign, minutes = ("-", -minutes) if minutes < 0 else ("+", minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


class LocalTimes:
    """Unix time → "Y-m-d H:i:s" in a zone, "" for 0; with `iso`, "Y-m-dTH:i:s+hh:mm" (OData's
    Edm.DateTimeOffset), None for 0. A page formats two times or more per row: the date and hour
    are worked out once per quarter hour, the minutes and seconds added to them; a quarter with an
    offset change in it, or an offset that is not whole quarters (old local mean times), is
    formatted exactly every time."""

    def __init__(self, zone: ZoneInfo, iso: bool = False):
        self.zone, self.iso = zone, iso
        self.empty = None if iso else ""
        self.quarters: dict[int, tuple[str, int, str] | None] = {}

    def exact(self, ts: int) -> str:
        moment = datetime.fromtimestamp(ts, self.zone)
        if self.iso:
            if moment.utcoffset().total_seconds() % 60:  # no ISO designator for it: the same instant in UTC
                moment = datetime.fromtimestamp(ts, UTC)
            return moment.strftime("%Y-%m-%dT%H:%M:%S") + _offset(moment)
        return moment.strftime("%Y-%m-%d %H:%M:%S")

    def _quarter(self, quarter: int) -> tuple[str, int, str] | None:
        start = datetime.fromtimestamp(quarter * QUARTER, self.zone)
        end = datetime.fromtimestamp(quarter * QUARTER + QUARTER - 1, self.zone)
        offset = start.utcoffset()
        if offset != end.utcoffset() or offset.total_seconds() % QUARTER:
            return None
        if self.iso:
            return start.strftime("%Y-%m-%dT%H:"), start.minute, _offset(start)
        return start.strftime("%Y-%m-%d %H:"), start.minute, ""

    def __call__(self, ts: int) -> str | None:
        if not ts:
            return self.empty
        quarter, into = divmod(ts, QUARTER)
        known = self.quarters.get(quarter, False)
        if known is False:
            if len(self.quarters) > 100_000:
                self.quarters.clear()
            known = self.quarters[quarter] = self._quarter(quarter)
        if known is None:
            return self.exact(ts)
        return known[0] + _MINUTES_SECONDS[known[1] * 60 + into] + known[2]


@functools.lru_cache(maxsize=16)
def local_times(timezone: str, iso: bool = False) -> LocalTimes:
    """The worker's formatter for a zone: its quarter-hour memo serves every request."""
    return LocalTimes(ZoneInfo(timezone), iso)


def _element(userid: int, firstname: str, lastname: str, email: str, courseid: int, coursename: str, completed: int,
             started: int, percentage: float, status: str, fields: tuple[str, ...], readable: LocalTimes) -> dict:
    full = {"userid": userid, "firstname": firstname, "lastname": lastname, "email": email, "courseid": courseid,
            "coursename": coursename, "timecompleted": readable(completed), "timecompleted_unix": completed,
            "timestarted": readable(started), "timestarted_unix": started, "percentage": percentage,
            "status": status}
    return full if fields == FIELDS else {key: full[key] for key in fields}


def element(row: Progress, fields: tuple[str, ...], readable: LocalTimes, *, deleted: bool = False) -> dict:
    """One response element with only the enabled keys, in response order; a tombstone carries
    its last stored values and the status `deleted` (course-progress.md 10)."""
    return _element(row.userid, row.firstname, row.lastname, row.email, row.courseid, row.coursename,
                    row.timecompleted, row.timestarted, row.percentage / 100, "deleted" if deleted else row.status,
                    fields, readable)


def table_elements(rows: list[tuple], fields: tuple[str, ...], readable: LocalTimes) -> list[dict]:
    """`element` of each row as pulls.table_tuples reads it (pulls.TABLE_COLUMNS), without a
    Progress per row (a page is 1000 of them)."""
    return [_element(int(userid), firstname, lastname, email, int(courseid), coursename, int(completed), int(started),
                     # NUMERIC(5,2) as PostgreSQL and MariaDB give it is exact: float() is hundredths / 100
                     float(percentage) if percentage.__class__ is Decimal else hundredths(percentage) / 100,
                     "deleted" if gone else status, fields, readable)
            for userid, courseid, firstname, lastname, email, coursename, completed, started, percentage, status, gone
            in rows]
