"""Logs (admin-ui.md 3.9): the request log with filters, one row in full, and the CSV export of
the filtered rows.

The list and the export share one WHERE clause (`read_filters`) and one keyset reader (`fetch`),
newest first by (timeaccessed, id): every filter is an indexed column or narrows an index range
(install.json: timeaccessed, companyid_timeaccessed, userid_timeaccessed, errorcode_timeaccessed),
and no page ever counts or skips rows, so page 1000 costs what page 1 does on millions of rows."""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import falcon

from local_alx_report_api.classes import installer, metrics
from local_alx_report_api.controlcenter.web import Ctx, Page
from local_alx_report_api.db.services import FUNCTIONS
from moodle_core.engines import Engine
from moodle_core.moodle import Moodle

PER_PAGE = 50
CSV_MAX = 100000
CSV_BATCH = 1000  # rows per query while streaming: memory stays flat whatever the export size
FILTERS = ("from", "to", "company", "user", "function", "outcome", "ip", "source")
SOURCES = ("table", "cache", "live")
ADMIN_LOGIN = "admin:login"
# Error codes the service answers (protocol.md 8, course-progress.md) and sign-in failures
# (admin-ui.md 2.2), offered in the outcome filter; any other code can still be given in the URL.
ERRORCODES = ("accessexception", "dbconnectionfailed", "dmlreadexception", "dmlwriteexception", "invalidlimit",
              "invalidlogin", "invalidoffset", "invalidparameter", "invalidrecord", "invalidrequestmethod",
              "invalidresponse", "invalidtoken", "limittoolarge", "loginlocked", "nocompanyassociation",
              "ratelimitexceeded", "sitemaintenance", "unexpectederror", "wsaccessuserdeleted",
              "wsaccessuserexpired", "wsaccessusernologin", "wsaccessusersuspended", "wsaccessuserunconfirmed")
DATE_ERROR = "Use YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS] (site time zone)."
LIST_COLUMNS = ("id", "timeaccessed", "userid", "companyid", "company_shortname", "endpoint", "record_count",
                "errorcode", "error_message", "response_time_ms", "data_source", "cache_status", "ip_address")
_LOCAL = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would start a formula with


def an_id(text: str) -> int | None:
    """A non-negative integer that fits the id columns, else None."""
    return int(text) if re.fullmatch(r"[0-9]{1,18}", text) else None


def log_table():
    return next(t for t in installer.plugin_tables() if t.name == "local_alx_api_logs")


def local_span(text: str, tz: ZoneInfo) -> tuple[int, int] | None:
    """The instants [start, end) a typed site-time date or date-time covers: a whole day, minute or
    second, so `to` includes everything it names. None when the text is not one of the forms."""
    m = _LOCAL.fullmatch(text)
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) if g is not None else None for g in m.groups())
    try:
        if hour is None:
            first = date(year, month, day)
            start, end = datetime.combine(first, datetime.min.time()), datetime.combine(first + timedelta(1),
                                                                                       datetime.min.time())
        else:
            start = datetime(year, month, day, hour, minute, second or 0)
            end = start + timedelta(seconds=1 if second is not None else 60)
    except ValueError:  # 2024-02-30, 25:00
        return None
    return int(start.replace(tzinfo=tz).timestamp()), int(end.replace(tzinfo=tz).timestamp())


@dataclass
class Filters:
    """The typed filters, their errors and the one WHERE clause the list and the export use."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    where: list[str] = field(default_factory=list)
    params: list = field(default_factory=list)

    def add(self, clause: str, *params) -> None:
        self.where.append(clause)
        self.params.extend(params)

    @property
    def query(self) -> dict[str, str]:
        """The non-empty filters, for links that keep them."""
        return {k: v for k, v in self.values.items() if v}


def read_filters(ctx: Ctx) -> Filters:
    f = Filters({name: ctx.query.get(name).strip() for name in FILTERS})
    v, tz = f.values, ZoneInfo(ctx.cc.site.timezone)
    spans = {}
    for name in ("from", "to"):
        if v[name]:
            spans[name] = local_span(v[name], tz)
            if spans[name] is None:
                f.errors[name] = DATE_ERROR
    if spans.get("from"):
        f.add("timeaccessed >= ?", spans["from"][0])
    if spans.get("to"):
        if spans.get("from") and spans["to"][1] <= spans["from"][0]:
            f.errors["to"] = "The end is before the start."
        f.add("timeaccessed < ?", spans["to"][1])
    if v["company"]:
        if an_id(v["company"]) is not None:
            f.add("companyid = ?", an_id(v["company"]))
        else:
            f.errors["company"] = "Choose a company from the list."
    if v["user"]:
        user_filter(ctx.engine, f)
    if v["function"]:
        f.add("endpoint = ?", v["function"])
    if v["function"] != ADMIN_LOGIN:  # sign-in attempts only when asked for by name (admin-ui.md 3.9)
        f.add(metrics.API)
    outcome = v["outcome"]
    if outcome == "success":
        f.add("errorcode IS NULL")
    elif outcome == "error":
        f.add("errorcode IS NOT NULL")
    elif outcome:
        if re.fullmatch(r"[a-z0-9_]{1,100}", outcome):
            f.add("errorcode = ?", outcome)
        else:
            f.errors["outcome"] = "Choose an outcome from the list."
    if v["ip"]:
        try:
            f.add("ip_address = ?", str(ipaddress.ip_address(v["ip"])))
        except ValueError:
            f.errors["ip"] = "Enter an IPv4 or IPv6 address."
    if v["source"]:
        if v["source"] in SOURCES:
            f.add("data_source = ?", v["source"])
        else:
            f.errors["source"] = "Choose a data source from the list."
    return f


def user_filter(engine: Engine, f: Filters) -> None:
    """A number is a user id; anything else a username (Moodle stores them lower-cased)."""
    text = f.values["user"]
    if an_id(text) is not None:
        return f.add("userid = ?", an_id(text))
    ids = [int(r[0]) for r in engine.rows("SELECT id FROM {t:user} WHERE username = ?", (text.lower(),))]
    if not ids:
        f.errors["user"] = "No user has this username."
    else:
        f.add(f"userid IN ({', '.join(str(i) for i in ids)})")


def cursor(row: dict) -> str:
    return f"{int(row['timeaccessed'])}.{int(row['id'])}"


def parse_cursor(text: str) -> tuple[int, int] | None:
    """`<timeaccessed>.<id>` of the row a page continues from."""
    m = re.fullmatch(r"(\d{1,12})\.(\d{1,12})", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def fetch(engine: Engine, f: Filters, columns: tuple[str, ...], limit: int, *, before=None, after=None) -> list[tuple]:
    """Filtered rows newest first, continuing below `before` or (read oldest first, then turned)
    above `after`. `timeaccessed <= ?` comes first so every engine can use it as an index range."""
    where, params = list(f.where), list(f.params)
    order = "DESC"
    if before:
        where.append("timeaccessed <= ? AND (timeaccessed < ? OR id < ?)")
        params += [before[0], before[0], before[1]]
    elif after:
        where.append("timeaccessed >= ? AND (timeaccessed > ? OR id > ?)")
        params += [after[0], after[0], after[1]]
        order = "ASC"
    rows = engine.rows(f"SELECT {', '.join(columns)} FROM {{t:local_alx_api_logs}} "
                       f"WHERE {' AND '.join(where) or '1 = 1'} "
                       f"ORDER BY timeaccessed {order}, id {order} LIMIT {int(limit)}", params)
    return rows[::-1] if after else rows


def list_page(ctx: Ctx, f: Filters) -> dict:
    """One page of rows and the cursors of its neighbours (no counting: the cost of a page does
    not grow with the number of rows before it)."""
    before, after = parse_cursor(ctx.query.get("before")), parse_cursor(ctx.query.get("after"))
    if after:
        rows = fetch(ctx.engine, f, LIST_COLUMNS, PER_PAGE + 1, after=after)
        if len(rows) > PER_PAGE:  # a full page above the cursor, and more above that
            return page_of(ctx.cc.moodle, rows[1:], older=True, newer=True)
        before = None  # fewer than a page above: that is the first page
    rows = fetch(ctx.engine, f, LIST_COLUMNS, PER_PAGE + 1, before=before)
    return page_of(ctx.cc.moodle, rows[:PER_PAGE], older=len(rows) > PER_PAGE, newer=before is not None)


def page_of(moodle: Moodle, rows: list[tuple], *, older: bool, newer: bool) -> dict:
    rows = [dict(zip(LIST_COLUMNS, r, strict=True)) for r in rows]
    return {"rows": rows, "users": moodle.users(r["userid"] for r in rows),
            "older": cursor(rows[-1]) if rows and older else None,
            "newer": cursor(rows[0]) if rows and newer else None, "first_page": not newer}


def render_list(ctx: Ctx, f: Filters) -> None:
    page = page_of(ctx.cc.moodle, [], older=False, newer=False) if f.errors else list_page(ctx, f)
    companies = ctx.cc.moodle.companies()
    ctx.render("logs.html", title="Logs", filters=f, errors=f.errors, page=page, companies=companies,
               company_ids={str(c.id) for c in companies}, functions=[*FUNCTIONS, ADMIN_LOGIN], errorcodes=ERRORCODES,
               sources=SOURCES, csv_max=CSV_MAX, per_page=PER_PAGE)


def pretty_json(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return text  # not JSON (e.g. a row of the original plugin): shown as stored


class Logs(Page):
    def get(self, ctx: Ctx) -> None:
        if "id" in ctx.query:
            return self.detail(ctx)
        render_list(ctx, read_filters(ctx))

    def detail(self, ctx: Ctx) -> None:
        rid = an_id(ctx.query.get("id").strip())
        columns = [c["name"] for c in log_table().fields]
        row = ctx.engine.execute(f"SELECT {', '.join(columns)} FROM {{t:local_alx_api_logs}} WHERE id = ?",
                                 (rid,)).fetchone() if rid is not None else None
        if row is None:
            return ctx.not_found("There is no log entry with this id.")
        values = dict(zip(columns, row, strict=True))
        ctx.render("log_detail.html", title=f"Log entry {values['id']}", row=values, columns=columns,
                   user=ctx.cc.moodle.users([values["userid"]]).get(int(values["userid"])),
                   additional=pretty_json(values["additional_data"]))


def csv_cell(value, kind: str):
    """A stored value as its CSV cell: numbers as numbers, text guarded against formulas."""
    if value is None:
        return ""
    if kind == "number":
        return f"{float(value):.2f}"
    if kind == "int":
        return int(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def csv_chunks(engine: Engine, f: Filters) -> Iterator[bytes]:
    """The export, written batch by batch as the client reads it (never the whole file in memory)."""
    fields = log_table().fields
    columns = tuple(c["name"] for c in fields)
    kinds = [c["type"] for c in fields]
    at_id, at_time = columns.index("id"), columns.index("timeaccessed")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def drain() -> bytes:
        data = buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        return data

    opened = engine.db.is_closed()  # the request's connection is closed by now: streaming opens its own
    try:
        writer.writerow(columns)
        yield drain()
        written, before = 0, None
        while written < CSV_MAX:
            rows = fetch(engine, f, columns, min(CSV_BATCH, CSV_MAX - written), before=before)
            for row in rows:
                writer.writerow([csv_cell(v, k) for v, k in zip(row, kinds, strict=True)])
            written += len(rows)
            if rows:
                yield drain()
            if len(rows) < CSV_BATCH:
                break
            before = (int(rows[-1][at_time]), int(rows[-1][at_id]))
    finally:
        if opened and not engine.db.is_closed():
            engine.db.close()


class LogsCsv(Page):
    def get(self, ctx: Ctx) -> None:
        f = read_filters(ctx)
        if f.errors:
            return render_list(ctx, f)
        stamp = datetime.fromtimestamp(ctx.now, ZoneInfo(ctx.cc.site.timezone)).strftime("%Y%m%d_%H%M")
        ctx.resp.status = falcon.HTTP_200
        ctx.resp.content_type = "text/csv; charset=utf-8"
        ctx.resp.set_header("Content-Disposition", f'attachment; filename="alx_api_logs_{stamp}.csv"')
        ctx.resp.stream = csv_chunks(ctx.engine, f)


ROUTES = {"/logs": Logs, "/logs.csv": LogsCsv}
