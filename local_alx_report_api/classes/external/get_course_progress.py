"""`local_alx_report_api_get_course_progress` (course-progress.md)."""

from __future__ import annotations

from local_alx_report_api.classes import cache, company_settings, pages, pulls, ratelimit, replica_reads
from local_alx_report_api.classes.progress import Scope
from local_alx_report_api.lang import get_string
from moodle_core.engines import QUERY_COMPANY
from webservice.errors import InvalidParameterException, MoodleException
from webservice.external import Encoded, multiple, single, value


def execute_parameters() -> dict:
    return single({
        "limit": value("PARAM_INT", "Number of records to return (1 to max_records)", required=False, default=100),
        "offset": value("PARAM_INT", "Number of records already read in the pull", required=False, default=0),
        "mode": value("PARAM_ALPHA", "Which rows a pull started at offset 0 holds: auto (the company's sync mode), "
                      "full (every row) or incremental (the changes since the token's last completed pull)",
                      required=False, default="auto"),
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


def execute(call, limit: int = 100, offset: int = 0, mode: str = "auto") -> list[dict] | Encoded:
    plugin = call.settings.local_alx_report_api
    if mode not in pulls.MODES:
        raise InvalidParameterException(f"mode => Invalid parameter value detected: \"{mode}\" is not one of "
                                        f"{', '.join(pulls.MODES)}")
    if mode != "auto":
        call.log.extra["mode"] = mode
    if limit < 1:
        raise _error("invalidlimit", limit=limit)
    if limit > plugin.max_records:
        raise _error("limittoolarge", limit=limit, max=plugin.max_records)
    if offset < 0:
        raise _error("invalidoffset", offset=offset)
    # the company was resolved with the caller (step 4); its settings are read once, for both
    # the rate limit (step 5) and the page (step 8)
    settings = (company_settings.load(call.engine, call.company.id, with_table=True) if call.company is not None
                else None)
    client = pulls.client_key(call.pull_id, call.user_agent, mode)
    # issue 12: the next page of the caller's open pull is not counted (one refresh, one request)
    free = (settings is not None and ratelimit.per_pull(call.settings, settings) and settings.get("sync_mode") != 3
            and (plugin.allow_get_method or call.method == "POST")
            and pulls.is_next_page(call.engine, call.company.id, call.log.fields["token_hash"], offset, client,
                                   call.now))
    if free:
        ratelimit.admit_free(call, settings)
    else:
        ratelimit.admit(call, settings)
    if not plugin.allow_get_method and call.method != "POST":
        raise _error("invalidrequestmethod")
    if call.company is None:
        raise _error("nocompanyassociation")
    engine, companyid = call.engine, call.company.id
    QUERY_COMPANY.set(companyid)
    readable = pages.local_times(call.timezone)
    fields = settings.fields
    req = pulls.PageRequest(companyid, call.log.fields["token_hash"], call.caller.userid, limit, offset,
                            lambda: Scope.load(engine, companyid, plugin.report_roles, settings.switched_off),
                            settings.get("sync_mode"),
                            settings.get("sync_window_hours"), settings.get("adaptive_sync_window") == 1,
                            settings.get("incremental_deletions") == 1, call.now, call.timezone, mode, client,
                            call.user_agent, tuple(plugin.full_pull_user_agents), settings.table)
    use_cache = settings.get("enable_cache") == 1
    sig = cache.signature(fields, req.deletions, call.timezone, call.format)
    status = {"cache": "off" if not use_cache else None}

    def to_elements(rows) -> list[dict]:
        return [pages.element(r.progress, fields, readable, deleted=r.deleted) for r in rows]

    def from_table(definition, after, at_offset, dataversion: int) -> pulls.Slice:
        rows, on_replica = replica_reads.company_rows(
            engine, companyid, dataversion,
            lambda server: pulls.table_tuples(server, req, definition, after=after, offset=at_offset))
        if on_replica:
            call.log.extra["replica"] = True
        return pulls.Slice(pages.table_elements(rows, fields, readable),
                           (int(rows[-1][0]), int(rows[-1][1])) if rows else None, len(rows))

    def read_table(definition, after, at_offset, dataversion: int) -> pulls.Slice:
        if not use_cache:
            return from_table(definition, after, at_offset, dataversion)
        position = f"a{after[0]}-{after[1]}" if after is not None else f"o{at_offset}"
        since = definition.since if definition.mode == "incremental" or definition.deletions else 0
        key = cache.key(companyid, definition.mode, since, position, limit, sig, dataversion)
        (hit, corrupt), on_replica = replica_reads.on_replica(  # an entry's bytes are the same on any copy
            engine, lambda server: cache.read(engine, companyid, key, call.now, None if server is engine else server))
        if corrupt:
            call.log.extra["cache_corrupt"] = True
        if hit is not None:
            status["cache"] = "hit"
            if on_replica:
                call.log.extra["replica"] = True
            return pulls.Slice(hit.encoded, hit.last, hit.encoded.count)
        status["cache"] = "miss"
        served = from_table(definition, after, at_offset, dataversion)
        page = cache.Page(call.encode(served.elements), served.last)
        cache.write(engine, companyid, key, page, call.format, call.now, settings.get("cache_ttl_minutes"))
        return pulls.Slice(page.encoded, page.last, served.count)

    # a database error that survived the retries and the live fallback reaches the REST server,
    # which answers dmlreadexception or dbconnectionfailed
    if req.sync_mode == 3:
        outcome = pulls.serve_stateless(engine, req, read_table=read_table, to_elements=to_elements)
    else:
        outcome = serve_pull(call, settings, req, read_table, to_elements, free)
    definition = outcome.definition
    call.log.set(sync_mode=definition.mode, data_source="cache" if status["cache"] == "hit" else outcome.source,
                 cache_status="off" if outcome.source == "live" else status["cache"], record_count=outcome.slice.count)
    call.log.extra.update(page=outcome.page, since=definition.since, until=definition.until)
    if outcome.pull is not None:
        call.log.extra["pull_id"] = outcome.pull["id"]
    if outcome.page == "start" and definition.reason:
        call.log.extra["reason"] = definition.reason
    if outcome.fallback_reason:
        call.log.extra["fallback_reason"] = outcome.fallback_reason
    return outcome.slice.elements


def serve_pull(call, settings, req: pulls.PageRequest, read_table, to_elements, free: bool) -> pulls.Outcome:
    """The page of a pull; a page admitted free that turns out not to continue the caller's pull
    (another request of the token took its place) is admitted again, counted, and served."""
    database = call.settings.database
    try:
        return pulls.serve(call.engine, req, read_table=read_table, to_elements=to_elements,
                           attempts=database.retry_attempts, base_delay=database.retry_base_delay, free=free)
    except pulls.NotANextPage:
        call.log.extra.pop("free_page", None)
        ratelimit.admit(call, settings)
        return pulls.serve(call.engine, req, read_table=read_table, to_elements=to_elements,
                           attempts=database.retry_attempts, base_delay=database.retry_base_delay)
