"""Overview (admin-ui.md 3.1), its refreshing cards (`stats.json`) and `health.json`
(monitoring.md section 2)."""

from __future__ import annotations

from local_alx_report_api.classes import health, metrics
from local_alx_report_api.classes.ratelimit import day_bounds
from local_alx_report_api.controlcenter.web import Ctx, Page
from local_alx_report_api.task import definitions
from moodle_core.cron import NEVER
from moodle_core.taskmanager import TaskManager

SEVERITIES = ("low", "medium", "high", "critical")


def scheduled_tasks(cc) -> list[dict]:
    """One row per task: schedule, last and next run, status, fail delay, failures in a row."""
    manager = TaskManager(cc.engine, definitions(cc.settings), cc.site.timezone, clock=cc.now)  # read only
    rows = []
    for task in manager.tasks:
        state = manager.state(task)
        next_run = None if task.disabled or state is None or state.nextrun >= NEVER else state.nextrun
        rows.append({"name": task.name, "cron": task.cron, "disabled": task.disabled,
                     "lastrun": state.lastrun if state else 0, "nextrun": next_run,
                     "status": state.status if state else "never", "error": state.error if state else None,
                     "faildelay": state.faildelay if state else 0,
                     "failures": state.consecutive_failures if state else 0,
                     "summary": state.data.get("summary") if state else None})
    return rows


def calls_today(cc, now: int, companyid: int | None = None) -> int:
    start, end = day_bounds(now, cc.site.timezone)
    return metrics.calls_between(cc.engine, start, end, companyid)


def open_alert_counts(engine) -> dict[str, int]:
    counts = dict.fromkeys(SEVERITIES, 0)
    for severity, n in engine.rows("SELECT severity, COUNT(*) FROM {t:local_alx_api_alerts} WHERE resolved = 0 "
                                   "GROUP BY severity"):
        counts[severity] = int(n)
    return counts


def evaluate_health(cc, now: int):
    return health.evaluate(cc.engine, cc.moodle, cc.settings, now)


def stats(cc, now: int, state=None) -> dict:
    """The overview's cards, as `stats.json` answers them."""
    engine = cc.engine
    state = state or evaluate_health(cc, now)
    return {"total_records": int(engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} "
                                               "WHERE is_deleted = 0")),
            "total_companies": len(cc.moodle.companies()),
            "api_calls_today": calls_today(cc, now),
            "health": {"overall": state.overall, "score": state.score},
            "open_alerts": open_alert_counts(engine),
            "last_sync": int(engine.scalar("SELECT MAX(last_sync_timestamp) FROM {t:local_alx_api_sync_status} "
                                           "WHERE kind = 'cron'") or 0) or None}


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
        tasks = scheduled_tasks(ctx.cc)
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
