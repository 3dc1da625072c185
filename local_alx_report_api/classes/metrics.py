"""Request metrics from local_alx_api_logs (monitoring.md section 1): one module that the
alert check, the dashboard and /metrics all use. "Now" is a parameter."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from local_alx_report_api.classes import company_state
from local_alx_report_api.classes.ratelimit import day_bounds
from moodle_core.engines import Engine

API = "endpoint NOT LIKE 'admin:%'"
SOURCES = ("cache", "table", "live")
PERIODS = {"24h": 24, "7d": 7}  # buckets of the dashboard's periods: hours, days


@dataclass
class RequestMetrics:
    window_minutes: int
    requests: int
    errors: int
    avg_response_ms: float | None
    p95_response_ms: float | None
    max_response_ms: float | None
    cache_hits: int
    cache_lookups: int
    avg_db_ms: float | None
    records: int
    rate_limited: int = 0
    successes: int = 0
    sources: dict[str, int] = field(default_factory=dict)  # data_source → pages
    last_request: int | None = None

    @property
    def error_rate(self) -> float | None:
        return round(self.errors / self.requests * 100, 2) if self.requests else None

    @property
    def success_rate(self) -> float | None:
        return round(self.successes / self.requests * 100, 2) if self.requests else None

    @property
    def cache_hit_rate(self) -> float | None:
        return round(self.cache_hits / self.cache_lookups * 100, 2) if self.cache_lookups else None

    def source_share(self, source: str) -> float | None:
        """Share (%) of the pages served from `source` among the pages with a known source."""
        pages = sum(self.sources.values())
        return round(self.sources.get(source, 0) / pages * 100, 2) if pages else None


def _num(value):
    return None if value is None else round(float(value), 2)


def _aggregate(engine: Engine, key_sql: str, key_params: list, where: str, params: list,
               window_minutes: int) -> dict:
    """RequestMetrics per value of `key_sql` (a bucket expression or a column), in one query.

    The 95th percentile is the value at 1-based rank floor(0.95 n) + 1 of the n timed rows, found
    with window functions (SQLite ≥ 3.25, PostgreSQL, MariaDB ≥ 10.2) in integer arithmetic: it is
    the smallest rank with rank × 100 > n × 95, so no backend's division or percentile function
    is needed."""
    sql = (
        f"WITH t AS (SELECT {key_sql} AS k, errorcode, response_time_ms AS ms, cache_status, data_source, db_time_ms, "
        f"record_count, timeaccessed FROM {{t:local_alx_api_logs}} WHERE {API} AND {where}), "
        "r AS (SELECT t.*, ROW_NUMBER() OVER (PARTITION BY k ORDER BY CASE WHEN ms IS NULL THEN 1 ELSE 0 END, ms) "
        "AS rn, COUNT(ms) OVER (PARTITION BY k) AS timed FROM t) "
        "SELECT k, COUNT(*), "
        "SUM(CASE WHEN errorcode IS NOT NULL AND errorcode <> 'ratelimitexceeded' THEN 1 ELSE 0 END), "
        "AVG(ms), MIN(CASE WHEN ms IS NOT NULL AND rn * 100 > timed * 95 THEN ms END), MAX(ms), "
        "SUM(CASE WHEN cache_status = 'hit' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN cache_status IN ('hit', 'miss') THEN 1 ELSE 0 END), "
        "AVG(CASE WHEN data_source IS NOT NULL THEN db_time_ms END), SUM(record_count), "
        "SUM(CASE WHEN errorcode = 'ratelimitexceeded' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN errorcode IS NULL THEN 1 ELSE 0 END), "
        + "".join(f"SUM(CASE WHEN data_source = '{s}' THEN 1 ELSE 0 END), " for s in SOURCES)
        + "MAX(timeaccessed) FROM r GROUP BY k")
    out = {}
    for row in engine.rows(sql, [*key_params, *params]):
        n = len(SOURCES)
        out[int(row[0])] = RequestMetrics(
            window_minutes, int(row[1]), int(row[2] or 0), _num(row[3]), _num(row[4]), _num(row[5]), int(row[6] or 0),
            int(row[7] or 0), _num(row[8]), int(row[9] or 0), int(row[10] or 0), int(row[11] or 0),
            {s: int(v or 0) for s, v in zip(SOURCES, row[12:12 + n], strict=True)}, int(row[12 + n]))
    return out


def _empty(window_minutes: int) -> RequestMetrics:
    return RequestMetrics(window_minutes, 0, 0, None, None, None, 0, 0, None, 0)


def request_metrics(engine: Engine, now: int, window_minutes: int, companyid: int | None = None) -> RequestMetrics:
    """Metrics of the API requests in the window ending now, overall or for one company."""
    where, params = "timeaccessed >= ?", [now - window_minutes * 60]
    if companyid is not None:
        where += " AND companyid = ?"
        params.append(companyid)
    return _aggregate(engine, "0", [], where, params, window_minutes).get(0) or _empty(window_minutes)


def company_metrics(engine: Engine, start: int, end: int) -> dict[int, RequestMetrics]:
    """Metrics per company (companyid 0: requests without a known company) of [start, end)."""
    return _aggregate(engine, "companyid", [], "timeaccessed >= ? AND timeaccessed < ?", [start, end],
                      (end - start) // 60)


def period_bounds(now: int, timezone: str, period: str) -> list[int]:
    """The dashboard's bucket boundaries, oldest first, ending with now + 1: `24h` = the current hour
    of the site time zone and the 23 before it; `7d` = today and the 6 days before it, from
    midnight to midnight in the site time zone (23 or 25 hours on DST days)."""
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now, zone)
    if period == "24h":
        hour = now - local.minute * 60 - local.second
        starts = [hour - k * 3600 for k in range(PERIODS[period] - 1, -1, -1)]
    else:
        starts = [int(datetime.combine(local.date() - timedelta(days=k), datetime.min.time(), zone).timestamp())
                  for k in range(PERIODS[period] - 1, -1, -1)]
    return [*starts, now + 1]


def _bucket(column: str, bounds: list[int]) -> tuple[str, list[int]]:
    """SQL giving the 0-based bucket of `column` (rows are already limited to [bounds[0], bounds[-1])),
    with its parameters: a CASE over the inner boundaries, the same on every backend."""
    inner = bounds[1:-1]
    if not inner:
        return "0", []
    whens = " ".join(f"WHEN {column} < ? THEN {i}" for i in range(len(inner)))
    return f"(CASE {whens} ELSE {len(inner)} END)", inner


def bucket_metrics(engine: Engine, bounds: list[int]) -> list[RequestMetrics]:
    """RequestMetrics of each bucket [bounds[i], bounds[i + 1]) in one grouped query."""
    key, key_params = _bucket("timeaccessed", bounds)
    found = _aggregate(engine, key, key_params, "timeaccessed >= ? AND timeaccessed < ?", [bounds[0], bounds[-1]],
                       (bounds[1] - bounds[0]) // 60)
    return [found.get(i) or _empty((bounds[i + 1] - bounds[i]) // 60) for i in range(len(bounds) - 1)]


def row_changes(engine: Engine, bounds: list[int]) -> list[tuple[int, int]]:
    """(active, deleted) reporting rows whose last change (`last_updated`) falls in each bucket."""
    key, key_params = _bucket("last_updated", bounds)
    counts = [[0, 0] for _ in range(len(bounds) - 1)]
    for bucket, deleted, n in engine.rows(
            f"SELECT k, d, COUNT(*) FROM (SELECT {key} AS k, is_deleted AS d FROM {{t:local_alx_api_reporting}} "
            "WHERE last_updated >= ? AND last_updated < ?) c GROUP BY k, d", [*key_params, bounds[0], bounds[-1]]):
        counts[int(bucket)][1 if int(deleted) else 0] += int(n)
    return [(a, d) for a, d in counts]


def last_requests(engine: Engine) -> dict[int, int]:
    """The time of each company's latest API request (any day)."""
    return {int(c): int(t) for c, t in engine.rows(
        f"SELECT companyid, MAX(timeaccessed) FROM {{t:local_alx_api_logs}} WHERE {API} GROUP BY companyid")}


def last_errors(engine: Engine, start: int, end: int, per_company: int = 2) -> dict[int, list[str]]:
    """Each company's latest error messages of [start, end), newest first."""
    out: dict[int, list[str]] = {}
    for companyid, message, code in engine.rows(
            "SELECT companyid, error_message, errorcode FROM (SELECT companyid, error_message, errorcode, "
            "ROW_NUMBER() OVER (PARTITION BY companyid ORDER BY timeaccessed DESC, id DESC) AS rn "
            f"FROM {{t:local_alx_api_logs}} WHERE {API} AND errorcode IS NOT NULL AND timeaccessed >= ? "
            "AND timeaccessed < ?) e WHERE rn <= ? ORDER BY companyid, rn", (start, end, per_company)):
        out.setdefault(int(companyid), []).append(message or code)
    return out


def calls_today(engine: Engine, timezone: str, now: int, companyid: int | None = None) -> int:
    """API calls since midnight in the site's time zone."""
    return calls_between(engine, *day_bounds(now, timezone), companyid)


def calls_today_by_company(engine: Engine, timezone: str, now: int) -> dict[int, int]:
    """API calls since midnight in the site's time zone, per company, in one query."""
    return {int(c): int(n) for c, n in engine.rows(
        f"SELECT companyid, COUNT(*) FROM {{t:local_alx_api_logs}} WHERE {API} AND timeaccessed >= ? "
        "AND timeaccessed < ? GROUP BY companyid", day_bounds(now, timezone))}


def calls_between(engine: Engine, start: int, end: int, companyid: int | None = None) -> int:
    sql = f"SELECT COUNT(*) FROM {{t:local_alx_api_logs}} WHERE {API} AND timeaccessed >= ? AND timeaccessed < ?"
    params = [start, end]
    if companyid is not None:
        sql += " AND companyid = ?"
        params.append(companyid)
    return int(engine.scalar(sql, params))


def invalid_tokens_by_ip(engine: Engine, now: int, minutes: int) -> dict[str, int]:
    return {ip: int(n) for ip, n in engine.rows(
        f"SELECT ip_address, COUNT(*) FROM {{t:local_alx_api_logs}} WHERE {API} AND errorcode = 'invalidtoken' "
        "AND timeaccessed >= ? GROUP BY ip_address", (now - minutes * 60,))}


def sync_lag(engine: Engine, now: int) -> dict[int, int | None]:
    """Seconds since each company's last completed sync run (None: never synced)."""
    return {c: (now - int(r["last_sync_timestamp"])) if int(r["total_syncs"]) else None
            for c, r in company_state.rows(engine).items()}

