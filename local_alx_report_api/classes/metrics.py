"""Request metrics from local_alx_api_logs (monitoring.md section 1): one module that the
alert check, the dashboard and /metrics all use. "Now" is a parameter."""

from __future__ import annotations

from dataclasses import dataclass

from moodle_core.engines import Engine

API = "endpoint NOT LIKE 'admin:%'"


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

    @property
    def error_rate(self) -> float | None:
        return round(self.errors / self.requests * 100, 2) if self.requests else None

    @property
    def cache_hit_rate(self) -> float | None:
        return round(self.cache_hits / self.cache_lookups * 100, 2) if self.cache_lookups else None


def request_metrics(engine: Engine, now: int, window_minutes: int, companyid: int | None = None) -> RequestMetrics:
    """Metrics of the API requests in the window ending now, overall or for one company."""
    where, params = f"{API} AND timeaccessed >= ?", [now - window_minutes * 60]
    if companyid is not None:
        where += " AND companyid = ?"
        params.append(companyid)
    row = engine.execute(
        "SELECT COUNT(*), "
        "SUM(CASE WHEN errorcode IS NOT NULL AND errorcode <> 'ratelimitexceeded' THEN 1 ELSE 0 END), "
        "AVG(response_time_ms), MAX(response_time_ms), "
        "SUM(CASE WHEN cache_status = 'hit' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN cache_status IN ('hit', 'miss') THEN 1 ELSE 0 END), "
        "AVG(CASE WHEN data_source IS NOT NULL THEN db_time_ms END), SUM(record_count) "
        f"FROM {{t:local_alx_api_logs}} WHERE {where}", params).fetchone()
    times = sorted(float(r[0]) for r in engine.rows(
        f"SELECT response_time_ms FROM {{t:local_alx_api_logs}} WHERE {where} AND response_time_ms IS NOT NULL", params))
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))] if times else None

    def num(value):
        return None if value is None else round(float(value), 2)

    return RequestMetrics(window_minutes, int(row[0] or 0), int(row[1] or 0), num(row[2]), p95, num(row[3]),
                          int(row[4] or 0), int(row[5] or 0), num(row[6]), int(row[7] or 0))


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
    return {int(c): (now - int(t)) if int(total) else None for c, t, total in engine.rows(
        "SELECT companyid, last_sync_timestamp, total_syncs FROM {t:local_alx_api_sync_status} WHERE kind = 'cron'")}
