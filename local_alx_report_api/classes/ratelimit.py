"""The daily request limit per token user (course-progress.md section 12, protocol.md 14)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from local_alx_report_api.classes import company_settings
from local_alx_report_api.lang import get_string
from webservice.errors import DmlWriteException, MoodleException

FUNCTION = "local_alx_report_api_get_course_progress"


def effective_limit(engine, settings, company, loaded=None) -> int:
    """The company's `rate_limit` row if present, else the global setting; 0 = unlimited.
    `loaded`: the company's settings when the caller has them already."""
    if company is not None:
        loaded = loaded or company_settings.load(engine, company.id)
        value = loaded.values.get("rate_limit")
        if value is not None:
            return int(value)
    return int(settings.local_alx_report_api.rate_limit)


def per_pull(settings, loaded=None) -> bool:
    """Issue 12: whether the limit counts pulls (a pull's next pages are free) rather than every
    request; the company's `rate_limit_per_pull` row if present, else the global setting."""
    value = loaded.values.get("rate_limit_per_pull") if loaded is not None else None
    return bool(settings.local_alx_report_api.rate_limit_per_pull if value is None else value)


def admit_free(call, settings=None) -> None:
    """Step 5 for the next page of an open pull when the limit counts pulls: admitted without
    being counted (counted = 0, additional_data.free_page); headers show the day's count."""
    call.rate = {"limit": effective_limit(call.engine, call.settings, call.company, settings),
                 "reset": day_bounds(call.now, call.timezone)[1], "count": None}
    call.log.extra["free_page"] = True


def day_bounds(now: int, timezone: str) -> tuple[int, int]:
    """Unix times of this and the next midnight in the site time zone (23 or 25 hours on DST days)."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now, zone)
    start = datetime(local.year, local.month, local.day, tzinfo=zone)
    following = start.date() + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return int(start.timestamp()), int(end.timestamp())


def counted_today(engine, userid: int, start: int, end: int) -> int:
    """The user's requests admitted by the limiter between `start` and `end` (what the limit checks)."""
    return counted_by_user(engine, [userid], start, end).get(int(userid), 0)


def counted_by_user(engine, userids, start: int, end: int) -> dict[int, int]:
    """`counted_today` for many users in one query (pages listing token users)."""
    ids = sorted({int(u) for u in userids})
    if not ids:
        return {}
    return {int(u): int(n) for u, n in engine.rows_in(
        "SELECT userid, COUNT(*) FROM {t:local_alx_api_logs} WHERE userid IN ({in}) AND timeaccessed >= ? "
        "AND timeaccessed < ? AND counted = 1 GROUP BY userid", ids, (start, end))}


def rejected_today(engine, userid: int, start: int, end: int) -> int:
    return int(engine.scalar(
        "SELECT COUNT(*) FROM {t:local_alx_api_logs} WHERE userid = ? AND timeaccessed >= ? AND timeaccessed < ? "
        "AND errorcode = 'ratelimitexceeded'", (userid, start, end)))


def admit(call, settings=None) -> None:
    """Step 5: admit the request (its log row is written at once with counted = 1) or reject it.

    Count and insert run in one short transaction under a lock keyed by the user, so any number
    of simultaneous requests from any processes admit exactly the remaining quota."""
    limit = effective_limit(call.engine, call.settings, call.company, settings)
    start, end = day_bounds(call.now, call.timezone)
    call.rate = {"limit": limit, "reset": end, "count": None}
    if limit == 0:
        return
    try:
        with call.engine.locked_transaction(f"ratelimit_{call.caller.userid}"):
            count = counted_today(call.engine, call.caller.userid, start, end)
            if count < limit:
                call.log.set(counted=1)
                call.log.insert()
                count += 1
            else:  # the rejection is logged under the same lock: exactly one is the day's first
                call.rate["first_rejection"] = rejected_today(call.engine, call.caller.userid, start, end) == 0
                call.log.set(counted=0, errorcode="ratelimitexceeded", error_message=get_string("ratelimitexceeded"))
                call.log.insert()
    except MoodleException:
        raise
    except Exception as exc:
        call.log.set(counted=0)
        call.log.row_id = None
        raise DmlWriteException(str(exc).splitlines()[0] if str(exc) else None) from exc
    call.rate["count"] = count
    if call.log.fields.get("counted") != 1:
        call.log.extra.update(rate_count=count, rate_limit=limit)
        call.rate["rejected"] = True
        raise MoodleException("ratelimitexceeded", get_string("ratelimitexceeded"),
                              get_string("ratelimitexceeded_debug", n=count, limit=limit))


def response_headers(call) -> dict[str, str]:
    """X-RateLimit-* (and Retry-After on a rejection) once the token and user are known."""
    if call.rate is None:
        call.rate = {"limit": effective_limit(call.engine, call.settings, call.company),
                     "reset": day_bounds(call.now, call.timezone)[1], "count": None}
    limit = call.rate["limit"]
    if limit == 0:
        return {}
    count = call.rate["count"]
    if count is None:
        count = counted_today(call.engine, call.caller.userid, *day_bounds(call.now, call.timezone))
    headers = {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(max(0, limit - count)),
               "X-RateLimit-Reset": str(call.rate["reset"])}
    if call.rate.get("rejected"):
        headers["Retry-After"] = str(max(1, call.rate["reset"] - call.now))
    return headers
