"""`/metrics` (monitoring.md section 4) and the probes `/healthz` and `/readyz`.

Request counters and histograms are kept per web host by prometheus-client; under gunicorn they
live in its multiprocess directory, so all workers of a host are aggregated. Everything else is
read from the database at scrape time (at most every 15 s), so it is right whichever process did
the work."""

from __future__ import annotations

import glob
import json
import logging
import os
import time

import falcon
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from local_alx_report_api.classes import client_state, company_state, health, jobs, metrics
from local_alx_report_api.classes.installer import plugin_tables
from local_alx_report_api.classes.ratelimit import day_bounds
from local_alx_report_api.db.tasks import definitions
from moodle_core import engines
from moodle_core.engines import DATABASE_ERRORS, first_line
from moodle_core.taskmanager import TaskManager
from webservice.auth import in_networks

log = logging.getLogger(__name__)

FUNCTIONS = ("local_alx_report_api_get_course_progress", "core_webservice_get_site_info")
REQUESTS = Counter("alx_report_api_requests_total", "Requests", ["function", "outcome"])
DURATION = Histogram("alx_report_api_request_duration_seconds", "Response time", ["function"],
                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10))
ROWS = Counter("alx_report_api_rows_returned_total", "Elements returned", ["function"])
BYTES = Counter("alx_report_api_response_bytes_total", "Body bytes", ["function"])
CACHE = Counter("alx_report_api_cache_lookups_total", "Cache lookups", ["result"])
REJECTIONS = Counter("alx_report_api_rate_limit_rejections_total", "ratelimitexceeded answers")
FALLBACK = Counter("alx_report_api_live_fallback_total", "Pages served from live data", ["reason"])
# a page's fallback_reason (pulls.Outcome) is `never_filled` or the database error that stopped the
# table read, counted as `error`; both series exist from the start (at 0), so the family is scraped
# before the first fallback, from every worker's file under gunicorn
FALLBACK_REASONS = ("never_filled", "error")
for _reason in FALLBACK_REASONS:
    FALLBACK.labels(_reason)
RETRIES = Counter("alx_report_api_db_retries_total", "Database retries")
engines.RETRY_HOOKS.append(RETRIES.inc)


def observe(call) -> None:
    """After-request hook: count the request in this host's metrics."""
    fields = call.log.fields
    function = call.function if call.function in FUNCTIONS else "other"
    REQUESTS.labels(function, fields.get("errorcode") or "ok").inc()
    DURATION.labels(function).observe((fields.get("response_time_ms") or 0) / 1000)
    ROWS.labels(function).inc(fields.get("record_count") or 0)
    BYTES.labels(function).inc(fields.get("response_bytes") or 0)
    if fields.get("cache_status") in ("hit", "miss"):
        CACHE.labels(fields["cache_status"]).inc()
    if fields.get("errorcode") == "ratelimitexceeded":
        REJECTIONS.inc()
    reason = call.log.extra.get("fallback_reason")
    if reason:
        FALLBACK.labels(reason if reason in FALLBACK_REASONS else "error").inc()


class DatabaseCollector:
    """Gauges and cross-process counters read from the database (reused for 15 s)."""

    def __init__(self, site):
        self.site, self._cached, self._at = site, [], -1e9

    def collect(self):
        if time.monotonic() - self._at < 15:
            return iter(self._cached)
        try:
            families = self._families()
        except DATABASE_ERRORS as exc:  # the database is down: say so, keep serving the rest
            log.warning("metrics: the database did not answer: %s", first_line(exc))
            families = [GaugeMetricFamily("alx_report_api_database_up", "Database answered", value=0)]
        except Exception:  # a bug: logged, and not reported as a database outage
            log.exception("metrics: reading the database gauges failed")
            families = []
        families.append(GaugeMetricFamily("alx_report_api_up", "Always 1", value=1))
        self._cached, self._at = families, time.monotonic()
        return iter(families)

    def _families(self):
        site, engine = self.site, self.site.engine
        now = site.clock()
        out = [GaugeMetricFamily("alx_report_api_database_up", "Database answered", value=1)]
        state = health.evaluate(engine, site.moodle, site.settings, now)
        out.append(GaugeMetricFamily("alx_report_api_health_score", "Health score", value=state.score))
        checks = GaugeMetricFamily("alx_report_api_health_check_status", "0 ok, 1 warning, 2 error", labels=["check"])
        for c in state.checks:
            checks.add_metric([c.name], {"ok": 0, "warning": 1, "error": 2}[c.status])
        out.append(checks)

        def gauge(name, text, labels, sql, params=()):
            family = GaugeMetricFamily(name, text, labels=labels)
            for *keys, value in engine.rows(sql, params):
                family.add_metric([str(k) for k in keys], float(value or 0))
            out.append(family)

        gauge("alx_report_api_reporting_rows", "Reporting rows", ["companyid", "state"],
              "SELECT companyid, CASE WHEN is_deleted = 1 THEN 'deleted' ELSE 'active' END, COUNT(*) FROM "
              "{t:local_alx_api_reporting} GROUP BY companyid, is_deleted")
        gauge("alx_report_api_cache_entries", "Cache rows", ["state"],
              "SELECT CASE WHEN expires_at < ? THEN 'expired' ELSE 'active' END, COUNT(*) FROM {t:local_alx_api_cache} "
              "GROUP BY CASE WHEN expires_at < ? THEN 'expired' ELSE 'active' END", (now, now))
        gauge("alx_report_api_open_alerts", "Unresolved alerts", ["severity"],
              "SELECT severity, COUNT(*) FROM {t:local_alx_api_alerts} WHERE resolved = 0 GROUP BY severity")
        companies = company_state.rows(engine)
        for name, column in (("company_last_sync_timestamp_seconds", "last_sync_timestamp"),
                             ("company_sync_consecutive_failures", "consecutive_failures"),
                             ("company_change_sequence", "change_seq")):
            family = GaugeMetricFamily(f"alx_report_api_{name}", name.replace("_", " "), labels=["companyid"])
            for companyid, row in companies.items():
                family.add_metric([str(companyid)], float(row[column] or 0))
            out.append(family)
        start, _ = day_bounds(now, site.timezone)
        gauge("alx_report_api_requests_today", "Requests today", ["companyid"],
              f"SELECT companyid, COUNT(*) FROM {{t:local_alx_api_logs}} WHERE {metrics.API} AND timeaccessed >= ? "
              "GROUP BY companyid", (start,))
        families = {key: GaugeMetricFamily(f"alx_report_api_task_{key}", key.replace("_", " "), labels=["task"])
                    for key in ("last_run_timestamp_seconds", "next_run_timestamp_seconds", "fail_delay_seconds",
                                "consecutive_failures")}
        for name, task in TaskManager(engine, definitions(site.settings), "UTC").states().items():
            if task is None:
                continue  # no stored state yet
            families["last_run_timestamp_seconds"].add_metric([name], float(task.lastrun))
            families["next_run_timestamp_seconds"].add_metric([name], float(task.nextrun))
            families["fail_delay_seconds"].add_metric([name], float(task.faildelay))
            families["consecutive_failures"].add_metric([name], float(task.consecutive_failures))
        out += families.values()
        job_states = GaugeMetricFamily("alx_report_api_jobs", "Jobs by status", labels=["status"])
        for status, n in jobs.counts_by_status(engine):
            job_states.add_metric([status], float(n))
        out.append(job_states)
        pulls = GaugeMetricFamily("alx_report_api_pulls_completed_total", "Completed pulls (from the database)",
                                  labels=["mode", "result"])
        for mode, result, total in client_state.completed_by_result(engine):
            pulls.add_metric([mode, result], float(total))
        out.append(pulls)
        raised = GaugeMetricFamily("alx_report_api_alerts_raised_total", "Alert rows", labels=["type", "severity"])
        for alert_type, severity, total in engine.rows("SELECT alert_type, severity, COUNT(*) FROM "
                                                       "{t:local_alx_api_alerts} GROUP BY alert_type, severity"):
            raised.add_metric([alert_type, severity], float(total))
        out.append(raised)
        sent = GaugeMetricFamily("alx_report_api_notifications_total", "Delivery attempts (from the database)",
                                 labels=["channel", "result"])
        attempts: dict[tuple[str, str], int] = {}
        for (data,) in engine.rows("SELECT alert_data FROM {t:local_alx_api_alerts} WHERE alert_data LIKE "
                                   "'%notifications%'"):
            for channel, result in (json.loads(data or "{}").get("notifications") or {}).items():
                key = (channel, "sent" if result.get("status") == "sent" else "failed")
                attempts[key] = attempts.get(key, 0) + int(result.get("attempts", 0))
        for (channel, result), total in sorted(attempts.items()):
            sent.add_metric([channel, result], float(total))
        out.append(sent)
        return out


class _WorkerFiles(MultiProcessCollector):
    """The workers' counters, without the file of a worker that is starting: it exists a moment
    before its header is written, and reading it then fails the whole scrape (its values are 0)."""

    def collect(self):
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if os.path.getsize(f) >= 8]
        return self.merge(files, accumulate=True)


class Metrics:
    """GET /metrics, with the access rules of monitoring.md 4."""

    def __init__(self, site):
        self.site = site
        self.collector = DatabaseCollector(site)

    def on_get(self, req, resp):
        settings = self.site.settings.metrics
        if settings.token and req.get_header("Authorization") != f"Bearer {settings.token}":
            resp.status, resp.content_type, resp.text = falcon.HTTP_401, "text/plain", "Unauthorized"
            return
        if settings.allowed_ips and not in_networks(req.remote_addr or "", settings.allowed_ips):
            resp.status, resp.content_type, resp.text = falcon.HTTP_403, "text/plain", "Forbidden"
            return
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            _WorkerFiles(registry)
        else:
            from prometheus_client import REGISTRY
            registry = REGISTRY
        self.site.engine.db.connect(reuse_if_open=True)
        body = generate_latest(registry) + generate_latest(_One(self.collector))
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.data = body


class _One(CollectorRegistry):
    def __init__(self, collector):
        super().__init__(auto_describe=False)
        self.register(collector)


class Healthz:
    def on_get(self, req, resp):
        resp.content_type, resp.text = "text/plain", "OK"


class Readyz:
    def __init__(self, site):
        self.site = site

    def on_get(self, req, resp):
        engine = self.site.engine
        try:
            engine.db.connect(reuse_if_open=True)
            present = engine.tables()
            missing = [t.name for t in plugin_tables() if engine.prefix + t.name not in present]
            reason = f"missing tables: {', '.join(missing)}" if missing else None
        except Exception as exc:  # the database does not answer
            reason = f"database unavailable: {first_line(exc)}"
        resp.content_type = "application/json"
        if reason:
            resp.status, resp.text = falcon.HTTP_503, json.dumps({"status": "unavailable", "reason": reason})
        else:
            resp.text = json.dumps({"status": "ok"})
