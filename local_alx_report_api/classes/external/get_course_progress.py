"""`local_alx_report_api_get_course_progress` (course-progress.md)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from local_alx_report_api.classes import company_settings, pages, ratelimit
from local_alx_report_api.classes.progress import Scope
from local_alx_report_api.lang import get_string
from webservice.errors import MoodleException
from webservice.external import multiple, single, value


def execute_parameters() -> dict:
    return single({
        "limit": value("PARAM_INT", "Number of records to return (1 to max_records)", required=False, default=100),
        "offset": value("PARAM_INT", "Number of records already read in the pull", required=False, default=0),
    })


def execute_returns() -> dict:
    opt = {"required": False}
    return multiple(single({
        "userid": value("PARAM_INT", "User ID", **opt),
        "firstname": value("PARAM_TEXT", "First name", **opt),
        "lastname": value("PARAM_TEXT", "Last name", **opt),
        "email": value("PARAM_EMAIL", "Email address", **opt),
        "courseid": value("PARAM_INT", "Course ID", **opt),
        "coursename": value("PARAM_TEXT", "Course name", **opt),
        "timecompleted": value("PARAM_TEXT", "Completion time (readable)", **opt),
        "timecompleted_unix": value("PARAM_INT", "Completion time (Unix)", **opt),
        "timestarted": value("PARAM_TEXT", "Start time (readable)", **opt),
        "timestarted_unix": value("PARAM_INT", "Start time (Unix)", **opt),
        "percentage": value("PARAM_FLOAT", "Completion percentage", **opt),
        "status": value("PARAM_TEXT", "completed, in_progress, not_started or deleted", **opt),
    }))


def _error(code: str, **values) -> MoodleException:
    return MoodleException(code, get_string(code, **values), get_string(f"{code}_debug", **values))


def execute(call, limit: int = 100, offset: int = 0) -> list[dict]:
    plugin = call.settings.local_alx_report_api
    if limit < 1:
        raise _error("invalidlimit", limit=limit)
    if limit > plugin.max_records:
        raise _error("limittoolarge", limit=limit, max=plugin.max_records)
    if offset < 0:
        raise _error("invalidoffset", offset=offset)
    ratelimit.admit(call)  # the company was resolved with the caller (step 4)
    if not plugin.allow_get_method and call.method != "POST":
        raise _error("invalidrequestmethod")
    if call.company is None:
        raise _error("nocompanyassociation")
    settings = company_settings.load(call.engine, call.company.id)
    scope = Scope.load(call.engine, call.company.id, plugin.report_roles)
    call.log.set(sync_mode="full")
    call.log.extra["page"] = "stateless"
    if pages.has_rows(call.engine, call.company.id):
        rows = pages.table_page(call.engine, call.company.id, scope.courses, offset, limit)
        call.log.set(data_source="table")
    else:
        rows = pages.live_page(call.engine, scope, call.now, offset, limit)
        call.log.set(data_source="live", cache_status="off")
        call.log.extra["fallback_reason"] = "never_filled"
    zone = ZoneInfo(call.timezone)
    elements = [pages.element(row, settings.fields, zone) for row in rows]
    call.log.set(record_count=len(elements))
    return elements
