"""Overview (admin-ui.md 3.1), its refreshing cards (`stats.json`) and `health.json`
(monitoring.md section 2)."""

from __future__ import annotations

from local_alx_report_api.classes import alerts as alert_rules
from local_alx_report_api.classes import company_state, health, metrics
from local_alx_report_api.classes.ratelimit import day_bounds
from local_alx_report_api.classes.schedule import scheduled_tasks
from local_alx_report_api.controlcenter.web import Ctx, Page


def evaluate_health(cc, now: int):
    return health.evaluate(cc.engine, cc.moodle, cc.settings, now)


def stats(cc, now: int, state=None) -> dict:
    """The overview's cards, as `stats.json` answers them."""
    engine = cc.engine
    state = state or evaluate_health(cc, now)
    alerts = alert_rules.open_counts(engine)
    # beside the spec's overall and score (the checks'), what the badge shows: open alerts count too
    status, alert_words = health.with_alerts(state.overall, alerts)
    return {"total_records": int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} "
                                               "WHERE is_deleted = 0")),
            "total_companies": len(cc.moodle.companies()),
            "api_calls_today": metrics.calls_today(engine, cc.site.timezone, now),
            "health": {"overall": state.overall, "score": state.score, "status": status, "alerts": alert_words},
            "open_alerts": alerts,
            "last_sync": company_state.last_sync(engine)}


def last_sync_failures(tasks: list[dict]) -> int | None:
    """Companies that failed in the last run of the sync task (None before its first run)."""
    row = next((t for t in tasks if t["name"] == "sync_reporting_data_task"), None)
    return None if row is None or not row["lastrun"] else int((row["summary"] or {}).get("failed", 0))


def today(cc, now: int) -> metrics.RequestMetrics:
    """Requests since the last site-time-zone midnight."""
    start, _ = day_bounds(now, cc.site.timezone)
    return metrics.request_metrics(cc.engine, now, (now - start) / 60)


def sync_lags(cc, now: int) -> list[dict]:
    """Every company with its sync lag (None: never synced), the most behind first."""
    lags = metrics.sync_lag(cc.engine, now)
    rows = [{"company": c, "lag": lags.get(c.id)} for c in cc.moodle.companies()]
    return sorted(rows, key=lambda r: (r["lag"] is not None, -(r["lag"] or 0), r["company"].id))


class Overview(Page):
    def get(self, ctx: Ctx) -> None:
        state = evaluate_health(ctx.cc, ctx.now)
        tasks = scheduled_tasks(ctx.engine, ctx.settings)
        ctx.render("overview.html", title="Overview", stats=stats(ctx.cc, ctx.now, state), health=state,
                   tasks=tasks, sync_failed=last_sync_failures(tasks), today=today(ctx.cc, ctx.now),
                   lags=sync_lags(ctx.cc, ctx.now))


class Stats(Page):
    is_json = True

    def get(self, ctx: Ctx) -> None:
        ctx.json(stats(ctx.cc, ctx.now))


class HealthJson(Page):
    is_json = True

    def get(self, ctx: Ctx) -> None:
        ctx.json(evaluate_health(ctx.cc, ctx.now).as_dict())


ROUTES = {"/": Overview, "/stats.json": Stats, "/health.json": HealthJson}
