"""Monitoring (admin-ui.md 3.7): five charts over the last 24 hours or 7 days, each followed by its
table, today's numbers per company, each company's sync state and the scheduled tasks.

Every number comes from classes/metrics.py (the module the alert check and /metrics use too);
each chart's numbers are one grouped query with the bucket computed in SQL."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from local_alx_report_api.classes import company_settings, company_state, metrics, ratelimit
from local_alx_report_api.classes.company_settings import SYNC_MODES
from local_alx_report_api.classes.ratelimit import day_bounds
from local_alx_report_api.classes.reporting import COUNTED, Counts
from local_alx_report_api.classes.schedule import scheduled_tasks
from local_alx_report_api.controlcenter.svg import Chart, Series
from local_alx_report_api.controlcenter.web import Ctx, Page

DEFAULT_PERIOD = "24h"
PERIOD_ERROR = "Choose 24h (the last 24 hours) or 7d (the last 7 days); showing the last 24 hours."
PERIOD_NAMES = {"24h": ("hour", "last 24 hours"), "7d": ("day", "last 7 days")}
GREEN, RED, AMBER, BLUE, ORANGE, GREY = "#357a32", "#ca3120", "#f0ad4e", "#0f6cbf", "#fd7e14", "#6a737b"
MESSAGE_CHARS = 40


def bucket_labels(bounds: list[int], timezone: str, period: str) -> tuple[list[str], list[str]]:
    """(short axis labels, table labels) of each bucket's start in the site time zone."""
    zone = ZoneInfo(timezone)
    starts = [datetime.fromtimestamp(b, zone) for b in bounds[:-1]]
    if period == "24h":
        return [s.strftime("%H:%M") for s in starts], [s.strftime("%Y-%m-%d %H:%M:%S") for s in starts]
    return [s.strftime("%a %d") for s in starts], [s.strftime("%Y-%m-%d") for s in starts]


def charts(ctx: Ctx, period: str) -> list[Chart]:
    """The five charts of admin-ui.md 3.7 (three queries: requests, reporting-row changes)."""
    bounds = metrics.period_bounds(ctx.now, ctx.cc.site.timezone, period)
    labels, rows = bucket_labels(bounds, ctx.cc.site.timezone, period)
    unit, span = PERIOD_NAMES[period]
    axis = "Hour starting" if period == "24h" else "Day"
    requests = metrics.bucket_metrics(ctx.engine, bounds)
    changes = metrics.row_changes(ctx.engine, bounds)

    def chart(key, title, kind, series, y_label, **extra):
        return Chart(key, f"{title} per {unit}, {span}", kind, labels, rows, series, axis, y_label, **extra)

    return [
        chart("requests", "Requests", "stacked",
              [Series("Successful", [m.successes for m in requests], GREEN),
               Series("Errors", [m.errors for m in requests], RED),
               Series("Rate-limited", [m.rate_limited for m in requests], AMBER)], "Requests"),
        chart("response", "Response time", "line",
              [Series("Average", [m.avg_response_ms for m in requests], BLUE),
               Series("95th percentile", [m.p95_response_ms for m in requests], ORANGE)], "Milliseconds", unit="ms"),
        chart("cache", "Cache hit rate", "line", [Series("Hit rate", [m.cache_hit_rate for m in requests], GREEN)],
              "Hit rate (%)", unit="%", y_max=100),
        chart("elements", "Elements delivered", "stacked",
              [Series("Elements", [m.records for m in requests], BLUE)], "Elements"),
        chart("changes", "Reporting-row changes", "stacked",
              [Series("Inserted or updated", [a for a, _ in changes], BLUE),
               Series("Deleted", [d for _, d in changes], GREY)], "Rows"),
    ]


def cut(text: str | None, length: int = MESSAGE_CHARS) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= length else text[:length - 1] + "…"


def company_rows(ctx: Ctx) -> list[dict]:
    """Today's requests per company (admin-ui.md 3.7), plus requests without a known company if any."""
    start, end = day_bounds(ctx.now, ctx.cc.site.timezone)
    today = metrics.company_metrics(ctx.engine, start, end)
    last = metrics.last_requests(ctx.engine)
    errors = metrics.last_errors(ctx.engine, start, end)
    rows, companies = [], ctx.cc.moodle.companies()
    loaded = company_settings.load_all(ctx.engine, [c.id for c in companies])
    for company in companies:
        cs = loaded[company.id]
        rows.append(_company_row(company.id, company.name, company.shortname, today.get(company.id),
                                 last.get(company.id), errors.get(company.id, []),
                                 limit=ratelimit.effective_limit(ctx.engine, ctx.settings, company, cs),
                                 mode=SYNC_MODES[cs.get("sync_mode")]))
    if 0 in today:  # e.g. invalid tokens: no company is known
        rows.append(_company_row(0, "No company (unknown token or user)", "", today[0], last.get(0),
                                 errors.get(0, []), limit=None, mode=None))
    return rows


def _company_row(companyid, name, shortname, m, last, errors, *, limit, mode) -> dict:
    m = m or metrics.RequestMetrics(0, 0, 0, None, None, None, 0, 0, None, 0)
    return {"id": companyid, "name": name, "shortname": shortname, "requests": m.requests, "limit": limit,
            "avg_ms": m.avg_response_ms, "success_rate": m.success_rate, "cache_hit_rate": m.cache_hit_rate,
            "last": last, "mode": mode, "shares": {s: m.source_share(s) for s in metrics.SOURCES},
            "errors": m.requests - m.successes, "messages": [cut(e) for e in errors]}


def sync_rows(ctx: Ctx) -> list[dict]:
    """Each company's sync state from its `cron` row (tasks.md 5.6)."""
    crons = company_state.rows(ctx.engine, with_state=True)
    rows = []
    for company in ctx.cc.moodle.companies():
        cron = crons.get(company.id, {})
        state = cron.get("state", {})
        last_run = state.get("last_run") or {}
        pending = state.get("pending") is not None
        result = cron.get("result", "never")
        if pending and result != "failed":
            result = "stopped at the time limit" if last_run.get("stopped") == "time_limit" else "in progress"
        rows.append({"id": company.id, "name": company.name, "shortname": company.shortname,
                     "last_sync": int(cron.get("last_sync_timestamp") or 0) if cron.get("total_syncs") else None,
                     "result": result, "error": cron.get("last_sync_error"), "pending": pending,
                     "rows_changed": Counts(**{k: int(last_run.get(k, 0)) for k in COUNTED}).changed
                     if last_run else None,
                     "failures": int(cron.get("consecutive_failures") or 0)})
    return rows


class Monitoring(Page):
    def get(self, ctx: Ctx) -> None:
        period, errors = ctx.query.get("period", DEFAULT_PERIOD), {}
        if period not in metrics.PERIODS:
            errors["period"], period = PERIOD_ERROR, DEFAULT_PERIOD
        ctx.render("monitoring.html", title="Monitoring", period=period, periods=metrics.PERIODS, errors=errors,
                   span=PERIOD_NAMES[period][1], charts=charts(ctx, period), companies=company_rows(ctx),
                   syncs=sync_rows(ctx), tasks=scheduled_tasks(ctx.engine, ctx.settings))


ROUTES = {"/monitoring": Monitoring}
