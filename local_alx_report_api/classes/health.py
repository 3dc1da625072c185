"""Health checks and the score (monitoring.md section 2)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from local_alx_report_api.classes import company_state, webservice_setup
from local_alx_report_api.classes.installer import plugin_tables
from local_alx_report_api.classes.progress import course_scopes
from local_alx_report_api.db import services
from local_alx_report_api.db.tasks import definitions
from moodle_core.engines import Engine, first_line
from moodle_core.moodle import Moodle
from moodle_core.taskmanager import TaskDef, TaskManager

OK, WARNING, ERROR = "ok", "warning", "error"


@dataclass
class Check:
    name: str
    status: str
    detail: str


@dataclass
class Health:
    checks: list[Check]
    checked: int

    @property
    def score(self) -> int:
        errors = sum(c.status == ERROR for c in self.checks)
        warnings = sum(c.status == WARNING for c in self.checks)
        return max(0, 100 - 20 * errors - 10 * warnings)

    @property
    def overall(self) -> str:
        statuses = {c.status for c in self.checks}
        return "unhealthy" if ERROR in statuses else "warning" if WARNING in statuses else "healthy"

    def as_dict(self) -> dict:
        return {"overall": self.overall, "score": self.score,
                "checks": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks],
                "checked": self.checked}


def with_alerts(overall: str, open_alerts: dict[str, int]) -> tuple[str, str]:
    """The control center's health badge (decision 103) and the words beside it: the checks' overall
    state, made at least `warning` while a high alert is open and `unhealthy` while a critical one
    is, so a badge never says healthy beside open high or critical alerts. The score and `overall`
    stay those of the checks alone (section 2)."""
    critical, high = open_alerts.get("critical", 0), open_alerts.get("high", 0)
    status = overall
    if critical:
        status = "unhealthy"
    elif high and overall == "healthy":
        status = "warning"
    counts = [f"{n} {severity}" for severity, n in (("critical", critical), ("high", high)) if n]
    if not counts:
        return status, "no high or critical alert open"
    return status, " and ".join(counts) + (" alert" if critical + high == 1 else " alerts") + " open"


def database(engine: Engine, threshold_ms: int) -> Check:
    started = time.perf_counter()
    try:
        engine.scalar("SELECT 1")
        engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_settings}")
    except Exception as exc:  # unreachable or broken: that is the finding
        return Check("database", ERROR, f"Database unavailable: {first_line(exc)}")
    ms = (time.perf_counter() - started) * 1000
    status = OK if ms < 50 else WARNING if ms < threshold_ms else ERROR
    return Check("database", status, f"Probe answered in {ms:.1f} ms")


def tables(moodle: Moodle) -> Check:
    present = moodle.engine.tables()
    missing = [moodle.engine.prefix + t.name for t in plugin_tables() if moodle.engine.prefix + t.name not in present]
    missing += moodle.missing_tables()
    return Check("tables", ERROR, "Missing tables: " + ", ".join(missing)) if missing else \
        Check("tables", OK, "All plugin and Moodle tables exist")


def webservices(moodle: Moodle) -> Check:
    enabled, rest = webservice_setup.switches(moodle.engine)
    problems = ([] if enabled else [webservice_setup.DISABLED]) + ([] if rest else [webservice_setup.NO_REST])
    return Check("webservices", ERROR, " ".join(problems)) if problems else \
        Check("webservices", OK, "Web services and the REST protocol are enabled")


def service(engine: Engine) -> Check:
    for shortname in (services.SERVICE_SHORTNAME, services.LEGACY_SHORTNAME):
        state = webservice_setup.service_state(engine, shortname)
        if state is None:
            continue
        if not state["enabled"]:
            return Check("service", ERROR, f"Service {shortname} is disabled")
        if webservice_setup.FUNCTION not in state["functions"]:
            return Check("service", ERROR, f"Service {shortname} lacks {webservice_setup.FUNCTION}")
        if webservice_setup.SITE_INFO not in state["functions"]:
            return Check("service", WARNING, f"Service {shortname} lacks {webservice_setup.SITE_INFO}")
        if state["component"]:
            return Check("service", WARNING, f"Service {shortname} belongs to component {state['component']}: "
                         "Moodle may delete it")
        return Check("service", OK, f"Service {shortname} is enabled with both functions")
    return Check("service", ERROR, f"Service {services.SERVICE_SHORTNAME} is missing: run alx-report-api install")


def cron(engine: Engine, now: int, tasks: list[TaskDef]) -> Check:
    states = TaskManager(engine, tasks, "UTC").states()
    disabled = {t.name for t in tasks if t.disabled}

    def last(name: str) -> int:
        return states[name].lastrun if states.get(name) else 0

    newest = max((state.lastrun for state in states.values() if state), default=0)
    if now - newest >= 3600:
        return Check("cron", ERROR, "No scheduled task has run for 60 minutes or more: is the cron runner running?")
    late = [name for name, limit in (("check_alerts_task", 35 * 60), ("sync_reporting_data_task", 2 * 3600))
            if name not in disabled and now - last(name) >= limit]
    if late:
        return Check("cron", WARNING, "Late: " + ", ".join(late))
    return Check("cron", OK, "Scheduled tasks run on time")


def sync(engine: Engine, now: int, threshold: int) -> Check:
    rows = [(c, r["consecutive_failures"], r["last_sync_timestamp"], r["total_syncs"])
            for c, r in company_state.rows(engine).items()]
    failing = [(c, int(f)) for c, f, _, _ in rows if int(f) >= threshold]
    if failing:
        return Check("sync", ERROR, "Sync failing for companies " + ", ".join(f"{c} ({f} in a row)" for c, f in failing))
    warn = [str(c) for c, f, last, total in rows if int(f) > 0 or (int(total) > 0 and now - int(last) > 3 * 3600)]
    if warn:
        return Check("sync", WARNING, "Sync failed or is late for companies " + ", ".join(warn))
    return Check("sync", OK, "No company has sync failures")


def data(engine: Engine, moodle: Moodle) -> Check:
    filled = {r[0] for r in engine.rows("SELECT DISTINCT companyid FROM {t:local_alx_api_reporting}")}
    scopes = course_scopes(engine)
    empty = [c.shortname for c in moodle.companies() if c.id not in filled and scopes.get(c.id)]
    if empty:
        return Check("data", WARNING, "Not populated yet (served live): " + ", ".join(empty))
    return Check("data", OK, "Every company with courses has reporting rows")


def replicas(engine: Engine) -> Check:
    """[database] replica_urls: each answers as a standby within replica_max_lag (else its reads
    go to the primary until it does)."""
    states = engine.replicas.check()
    bad = [f"{r['url']}: {r['status']} ({r['error']})" for r in states if r["status"] != "ok"]
    if bad:
        return Check("replicas", WARNING, "Reads go to the primary instead of " + "; ".join(bad))
    lags = ", ".join(f"{r['url']} {r['lag_seconds']:g} s" for r in states)
    return Check("replicas", OK, f"{len(states)} replica{'s take' if len(states) > 1 else ' takes'} reads (lag {lags})")


def configuration(settings, timezone_warning: bool) -> Check:
    plugin = settings.local_alx_report_api
    problems = []
    if plugin.rate_limit > 1000:
        problems.append(f"rate_limit {plugin.rate_limit} is above 1000")
    if plugin.max_records > 5000:
        problems.append(f"max_records {plugin.max_records} is above 5000")
    if timezone_warning:
        problems.append("Moodle's time zone is not an IANA name: UTC is used")
    return Check("configuration", WARNING, "; ".join(problems)) if problems else \
        Check("configuration", OK, "Settings are within their recommended ranges")


def evaluate(engine: Engine, moodle: Moodle, settings, now: int) -> Health:
    plugin = settings.local_alx_report_api
    checks = [database(engine, plugin.db_response_time_threshold)]
    if checks[0].status == ERROR and "unavailable" in checks[0].detail:
        return Health(checks, now)
    zone_source = moodle.site_timezone(settings.site.timezone)[1]
    checks += [tables(moodle), webservices(moodle), service(engine), cron(engine, now, definitions(settings)),
               sync(engine, now, plugin.sync_failure_threshold), data(engine, moodle),
               configuration(settings, "not an IANA zone" in zone_source)]
    if engine.replicas:
        checks.append(replicas(engine))
    return Health(checks, now)
