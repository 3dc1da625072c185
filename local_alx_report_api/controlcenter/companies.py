"""Companies (admin-ui.md 3.2) and one company's page (3.3): its state, the per-company settings
form of settings.md section 2, and its actions (sync now, rebuild, clear cache, reset client
states, clear company data)."""

from __future__ import annotations

from dataclasses import dataclass

from local_alx_report_api.classes import client_state, company_settings, company_state, jobs, metrics, pulls, ratelimit
from local_alx_report_api.classes.company_settings import FIELDS, RANGES, SYNC_MODES, CompanySettings
from local_alx_report_api.classes.progress import course_scopes
from local_alx_report_api.classes.reporting import purge_cache
from local_alx_report_api.controlcenter.web import Ctx, Page, whole
from moodle_core.engines import LockBusy
from moodle_core.moodle import Company
from webservice.call import token_hash

CHECKBOXES = ("adaptive_sync_window", "incremental_deletions", "enable_cache")
NUMBERS = ("sync_mode", "sync_window_hours", "cache_ttl_minutes")
OPTIONAL = ("rate_limit", "rate_limit_per_pull")  # empty: the global setting applies
BUSY = "Company is busy; try again later."
SWITCHED_ON = "Courses switched on will appear when the sync job has finished."
NO_STATUS = "Clients cannot recognise deleted rows without the status field."
POWER_BI = ("Power BI import refreshes replace their table: Power Query clients (Power BI, Excel) get full pulls "
            "in Auto mode; use Always full for other clients that do not merge changes.")
ID = "{companyid:int}"
MAX_ID = 2**63 - 1  # a larger id is unknown (a 404), never a database overflow


# -- reading -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Course:
    id: int
    name: str
    visible: int
    category: int

    @property
    def reportable(self) -> bool:
        """Hidden courses and the site course are never in course scope (course-progress.md 7), so
        their switch is not offered (settings.md 2: their rows are left as they are)."""
        return self.visible == 1 and self.category != 0


def company_courses(engine, companyid: int) -> list[Course]:
    return [Course(int(i), name, int(v), int(cat)) for i, name, v, cat in engine.rows(
        "SELECT DISTINCT c.id, c.fullname, c.visible, c.category FROM {t:company_course} cc "
        "JOIN {t:course} c ON c.id = cc.courseid WHERE cc.companyid = ? ORDER BY c.fullname, c.id", (companyid,))]


def row_counts(engine, companyid: int | None = None) -> dict[int, dict]:
    sql = ("SELECT companyid, SUM(CASE WHEN is_deleted = 0 THEN 1 ELSE 0 END), "
           "SUM(CASE WHEN is_deleted = 1 THEN 1 ELSE 0 END) FROM {t:local_alx_api_reporting}")
    params = ()
    if companyid is not None:
        sql, params = sql + " WHERE companyid = ?", (companyid,)
    return {int(c): {"active": int(a or 0), "deleted": int(d or 0)}
            for c, a, d in engine.rows(sql + " GROUP BY companyid", params)}


# -- the list --------------------------------------------------------------------------------------
# (sort key, heading, what it is): short headings keep the table readable on narrow screens
COLUMNS = [("id", "Id", "Company id"), ("name", "Name", "Company name"), ("shortname", "Shortname", ""),
           ("courses", "Courses", "Courses in scope"), ("active", "Active", "Active reporting rows"),
           ("deleted", "Deleted", "Deleted reporting rows"),
           ("calls", "Calls today / limit", "API calls today / effective daily limit per user"),
           ("last_sync", "Last sync", "Last completed sync run and the result of the last run"),
           ("failures", "Failures", "Consecutive sync failures"), ("mode", "Mode", "Sync mode"),
           ("cache", "Cache", "Response cache on or off"), ("status", "Data", "Data status")]
SORT_KEYS = {"id": lambda r: r["id"], "name": lambda r: r["name"].lower(),
             "shortname": lambda r: r["shortname"].lower(), "courses": lambda r: r["courses"],
             "active": lambda r: r["active"], "deleted": lambda r: r["deleted"], "calls": lambda r: r["calls"],
             "last_sync": lambda r: r["last_sync"], "failures": lambda r: r["failures"],
             "mode": lambda r: r["mode"], "cache": lambda r: r["cache"], "status": lambda r: r["status"]}


def company_rows(ctx: Ctx) -> list[dict]:
    engine, companies = ctx.engine, ctx.cc.moodle.companies()
    crons, counts, scopes = company_state.rows(engine), row_counts(engine), course_scopes(engine)
    loaded = company_settings.load_all(engine, [c.id for c in companies])
    calls = metrics.calls_today_by_company(engine, ctx.cc.site.timezone, ctx.now)
    rows = []
    for company in companies:
        cs = loaded[company.id]
        cron = crons.get(company.id, {})
        n = counts.get(company.id, {"active": 0, "deleted": 0})
        rows.append({"id": company.id, "name": company.name, "shortname": company.shortname,
                     "courses": len(scopes.get(company.id, [])), **n, "calls": calls.get(company.id, 0),
                     "limit": ratelimit.effective_limit(engine, ctx.settings, company, cs),
                     "last_sync": int(cron.get("last_sync_timestamp") or 0), "result": cron.get("result", "never"),
                     "error": cron.get("last_sync_error"), "failures": int(cron.get("consecutive_failures") or 0),
                     "mode": SYNC_MODES[cs.get("sync_mode")], "cache": "on" if cs.get("enable_cache") else "off",
                     # the API serves from the table once it holds any row of the company (pulls.has_rows)
                     "status": "Ready" if n["active"] + n["deleted"] else "Not populated"})
    return rows


class CompanyList(Page):
    def get(self, ctx: Ctx) -> None:
        sort = ctx.query.get("sort", "id")
        column = sort.lstrip("-")
        if column not in SORT_KEYS:
            sort = column = "id"
        rows = sorted(company_rows(ctx), key=lambda r: (SORT_KEYS[column](r), r["id"]), reverse=sort.startswith("-"))
        ctx.render("companies.html", title="Companies", rows=rows, columns=COLUMNS, sort=sort,
                   numeric={"id", "courses", "active", "deleted", "calls", "failures"})


# -- one company -----------------------------------------------------------------------------------
def client_states(ctx: Ctx, company: Company, cs: CompanySettings) -> list[dict]:
    """Every token's pull state for this company (sync-and-cache.md 3 and 5.8)."""
    engine = ctx.engine
    states = client_state.listed(engine, companyid=company.id)
    userids = sorted({int(s["userid"]) for s in states})
    users, tokens = ctx.cc.moodle.users(userids), {}
    if userids:
        for token, name in engine.rows(f"SELECT token, name FROM {{t:external_tokens}} WHERE userid IN "
                                       f"({', '.join('?' * len(userids))})", userids):
            tokens[token_hash(token)] = (name or "", token[:8])
    out = []
    for s in sorted(states, key=lambda s: s["id"]):
        data, uid = s["data"], int(s["userid"])
        req = pulls.PageRequest(company.id, s["token_hash"], uid, 0, 0, None, cs.get("sync_mode"),
                                cs.get("sync_window_hours"), cs.get("adaptive_sync_window") == 1,
                                cs.get("incremental_deletions") == 1, ctx.now, ctx.cc.site.timezone)
        window, pattern = pulls.effective_window(engine, req, {"data": data})
        name, prefix = tokens.get(s["token_hash"], (None, None))
        out.append({"id": int(s["id"]), "token_name": name, "token_prefix": prefix, "user": users.get(uid),
                    "userid": uid, "watermark": int(s["change_seq"] or 0),
                    "last_success": int(s["last_sync_timestamp"] or 0), "status": s["last_sync_status"],
                    "error": s["last_sync_error"], "records": int(s["last_sync_records"] or 0),
                    "mode": s["sync_mode"], "total": int(s["total_syncs"] or 0),
                    "failures": int(s["consecutive_failures"] or 0),
                    "last_pull": data.get("last_pull") if isinstance(data.get("last_pull"), dict) else None,
                    "open": pulls.open_pulls(data, ctx.now), "window": window, "pattern": pattern})
    return out


def rate_usage(ctx: Ctx, company: Company, states: list[dict]) -> list[dict]:
    """Today's admitted requests of each token user of the company (its members holding a token,
    and the users of its client states)."""
    members = {int(r[0]) for r in ctx.engine.rows(
        "SELECT DISTINCT t.userid FROM {t:external_tokens} t JOIN {t:company_users} cu ON cu.userid = t.userid "
        "WHERE cu.companyid = ? AND t.tokentype = 0", (company.id,))}
    userids = sorted(members | {s["userid"] for s in states})
    users = ctx.cc.moodle.users(userids)
    start, end = ratelimit.day_bounds(ctx.now, ctx.cc.site.timezone)
    calls = ratelimit.counted_by_user(ctx.engine, userids, start, end)
    return [{"userid": u, "user": users.get(u), "calls": calls.get(u, 0)} for u in userids]


def form_values(cs: CompanySettings, courses: list[Course]) -> dict:
    """The settings form as stored (checkboxes as booleans, numbers as text)."""
    values = {f"field_{f}": cs.get(f"field_{f}") == 1 for f in FIELDS}
    values.update({name: cs.get(name) == 1 for name in CHECKBOXES})
    values.update({name: str(cs.get(name)) for name in NUMBERS})
    for name in OPTIONAL:
        stored = cs.values.get(name)
        values[name] = "" if stored is None else str(stored)
    values["courses"] = {c.id for c in courses if c.id not in cs.switched_off}
    return values


def parse_form(form, courses: list[Course], cs: CompanySettings) -> tuple[dict, dict, dict]:
    """(values as submitted for showing again, settings to store, errors by field name).
    An absent checkbox is 0; every number is checked against company_settings.RANGES."""
    shown = {f"field_{f}": f"field_{f}" in form for f in FIELDS}
    shown.update({name: name in form for name in CHECKBOXES})
    shown.update({name: form.get(name).strip() for name in (*NUMBERS, *OPTIONAL)})
    store = {name: int(on) for name, on in shown.items() if isinstance(on, bool)}
    errors = {}
    for name in (*NUMBERS, *OPTIONAL):
        low, high, _ = RANGES[name]
        text = shown[name]
        if name in OPTIONAL and text == "":
            store[name] = None  # the global default
        elif whole(text) is not None and low <= whole(text) <= high:
            store[name] = whole(text)
        else:
            errors[name] = ("Choose one of the listed modes." if name in ("sync_mode", "rate_limit_per_pull")
                            else f"Enter a whole number from {low} to {high}.")
    changeable = {c.id for c in courses if c.reportable}
    picked = set()
    for value in form.getall("course"):
        cid = whole(value)
        if cid not in {c.id for c in courses}:
            errors["courses"] = f"Course {value} is not a course of this company."
        elif cid in changeable:  # a hidden course's switch is never changed here (settings.md 2)
            picked.add(cid)
    # hidden courses keep their stored switch (the form shows them disabled)
    shown["courses"] = picked | {c.id for c in courses if not c.reportable and c.id not in cs.switched_off}
    store["courses"] = {cid: int(cid in picked) for cid in sorted(changeable)}
    return shown, store, errors


def company_view(ctx: Ctx, company: Company, *, values: dict | None = None, errors: dict | None = None,
                 error: str | None = None) -> None:
    engine = ctx.engine
    cs = company_settings.load(engine, company.id)
    courses = company_courses(engine, company.id)
    states = client_states(ctx, company, cs)
    counts = row_counts(engine, company.id).get(company.id, {"active": 0, "deleted": 0})
    values = values or form_values(cs, courses)
    cron = company_state.rows(engine, company.id, with_state=True).get(company.id)
    state = cron["state"] if cron else {}
    ctx.render("company.html", title=f"{company.name} ({company.shortname})", company=company, counts=counts,
               ready=pulls.has_rows(engine, company.id), cron=cron, last_run=state.get("last_run"),
               pending=state.get("pending"), reconcile=state.get("last_reconcile"),
               states=states, usage=rate_usage(ctx, company, states), courses=courses, v=values,
               errors=errors or {}, error=error, modes=SYNC_MODES, fields=FIELDS, limit=ratelimit.effective_limit(ctx.engine, ctx.settings, company, cs),
               global_limit=ctx.settings.local_alx_report_api.rate_limit, reasons=pulls.REASONS,
               global_per_pull=ctx.settings.local_alx_report_api.rate_limit_per_pull, base_window=cs.get("sync_window_hours"),
               calls=metrics.calls_today(engine, ctx.cc.site.timezone, ctx.now, company.id), jobs=company_jobs(engine, company.id),
               cache_entries=cache_entries(engine, company.id), no_status=NO_STATUS, power_bi=POWER_BI)


def company_jobs(engine, companyid: int) -> list[dict]:
    """Recent jobs that cover this company (its own and all-company jobs)."""
    return [j for j in jobs.recent(engine, 50) if j["companyids"] is None or companyid in j["companyids"]][:10]


def cache_entries(engine, companyid: int) -> int:
    return int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_cache} WHERE companyid = ?", (companyid,)))


def find_company(ctx: Ctx, companyid: int) -> Company | None:
    """The company, or None after answering the 404 page."""
    company = ctx.cc.moodle.company(companyid) if 0 < companyid <= MAX_ID else None
    if company is None:
        ctx.not_found(f"Company {companyid} does not exist.")
    return company


class CompanyPage(Page):
    def get(self, ctx: Ctx, companyid: int) -> None:
        company = find_company(ctx, companyid)
        if company is not None:
            company_view(ctx, company)

    def post(self, ctx: Ctx, companyid: int) -> None:
        company = find_company(ctx, companyid)
        if company is None:
            return
        before = company_settings.load(ctx.engine, company.id)
        shown, store, errors = parse_form(ctx.form, company_courses(ctx.engine, company.id), before)
        if errors:
            return company_view(ctx, company, values=shown, errors=errors,
                                error="The settings were not saved: correct the fields marked below.")
        counts, switched_on = company_settings.save(ctx.engine, company, store, before, ctx.now)
        notice = "Settings saved."
        if counts.deleted:
            notice += f" {counts.deleted} rows of switched-off courses were removed from the reports."
        if switched_on:
            jobs.queue(ctx.engine, ctx.now, job_type="sync", companyids=[company.id], userid=ctx.admin.id)
            notice += " " + SWITCHED_ON
        ctx.redirect(f"/companies/{company.id}", notice=notice)


# -- actions ---------------------------------------------------------------------------------------
class Action(Page):
    """A POST button of the company page; unknown companies are a 404."""

    def post(self, ctx: Ctx, companyid: int) -> None:
        company = find_company(ctx, companyid)
        if company is not None:
            self.act(ctx, company)

    def act(self, ctx: Ctx, company: Company) -> None:
        raise NotImplementedError


class QueueJob(Action):
    job_type = ""
    label = ""

    def act(self, ctx: Ctx, company: Company) -> None:
        try:
            jobid = jobs.queue(ctx.engine, ctx.now, job_type=self.job_type, companyids=[company.id],
                               userid=ctx.admin.id)
        except jobs.JobConflict as exc:
            return company_view(ctx, company, error=str(exc))
        ctx.redirect(f"/companies/{company.id}", notice=f"{self.label} job {jobid} queued.")


class SyncNow(QueueJob):
    job_type, label = "sync", "Sync"


class Rebuild(QueueJob):
    job_type, label = "populate", "Rebuild (populate)"


class ClearCache(Action):
    def act(self, ctx: Ctx, company: Company) -> None:
        n = cache_entries(ctx.engine, company.id)
        purge_cache(ctx.engine, company.id)
        ctx.redirect(f"/companies/{company.id}", notice=f"Cache cleared: {n} entries deleted.")


class ResetClients(Action):
    def act(self, ctx: Ctx, company: Company) -> None:
        n = client_state.forget_company(ctx.engine, company.id)
        ctx.redirect(f"/companies/{company.id}",
                     notice=f"{n} client states reset: every client's next pull is a first pull.")


class ResetClient(Action):
    def act(self, ctx: Ctx, company: Company) -> None:
        state = whole(ctx.form.get("state"))
        n = 0
        if state is not None and state <= MAX_ID:
            n = client_state.forget_company(ctx.engine, company.id, state_id=state)
        if not n:
            return ctx.not_found(f"Company {company.id} has no such client state.")
        ctx.redirect(f"/companies/{company.id}", notice="Client state reset: the token's next pull is a first pull.")


class ClearData(Action):
    """Deletes the company's reporting rows, client and sync state and cache, after the admin
    types the shortname (admin-ui.md 3.3; sync-and-cache.md 6: the only physical deletion)."""

    def get(self, ctx: Ctx, companyid: int) -> None:
        company = find_company(ctx, companyid)
        if company is not None:
            self.confirm(ctx, company)

    def confirm(self, ctx: Ctx, company: Company, *, typed: str = "", errors: dict | None = None,
                error: str | None = None) -> None:
        counts = row_counts(ctx.engine, company.id).get(company.id, {"active": 0, "deleted": 0})
        clients = client_state.count(ctx.engine, company.id)
        ctx.render("company_clear.html", title=f"Clear company data: {company.name}", company=company,
                   counts=counts, clients=clients, cache_entries=cache_entries(ctx.engine, company.id), typed=typed,
                   errors=errors or {}, error=error)

    def act(self, ctx: Ctx, company: Company) -> None:
        typed = ctx.form.get("shortname").strip()
        if typed != company.shortname:
            return self.confirm(ctx, company, typed=typed, errors={
                "shortname": f"Type the company shortname {company.shortname} to confirm."})
        try:
            rows, states, cached = company_settings.clear_company_data(ctx.engine, company.id)
        except LockBusy:
            return self.confirm(ctx, company, typed=typed, error=BUSY)
        ctx.redirect(f"/companies/{company.id}", notice=f"Company data cleared: {rows} reporting rows, {states} "
                                                        f"sync states and {cached} cache entries deleted.")


ROUTES = {"/companies": CompanyList, f"/companies/{ID}": CompanyPage, f"/companies/{ID}/sync": SyncNow,
          f"/companies/{ID}/rebuild": Rebuild, f"/companies/{ID}/clear-cache": ClearCache,
          f"/companies/{ID}/reset-clients": ResetClients, f"/companies/{ID}/reset-client": ResetClient,
          f"/companies/{ID}/clear-data": ClearData}
