"""The periodic alert conditions of `check_alerts_task` (tasks.md 7, monitoring.md 3.2): health,
and every condition raised or auto-resolved. `env` is the task's environment (engine, moodle,
settings, clock, say)."""

from __future__ import annotations

import json

from local_alx_report_api.classes import alerts, health, metrics
from local_alx_report_api.classes.alerts import number
from local_alx_report_api.classes.ratelimit import day_bounds
from local_alx_report_api.classes.signin import lockout_ended


def check_all(env) -> dict:
    plugin = env.plugin
    if not plugin.enable_alerting:
        env.say("Alerting is disabled; nothing to check.")
        return {"checked": False}
    now, engine = env.clock(), env.engine
    raised, resolved = [], []

    def condition(true: bool, alert_type: str, severity: str, subject: str, message: str, data: dict,
                  companyid: int = 0) -> None:
        if true:
            alerts.raise_alert(engine, env.settings, now, alert_type=alert_type, severity=severity, subject=subject,
                               message=message, data=data, companyid=companyid)
            raised.append(subject)
        elif alerts.resolve(engine, now, alert_type=alert_type, subject=subject):
            resolved.append(subject)

    window = plugin.metrics_window_minutes
    m = metrics.request_metrics(engine, now, window)
    enough = m.requests >= plugin.alert_min_requests
    condition(enough and m.avg_response_ms is not None and m.avg_response_ms > plugin.alert_response_time_ms,
              "performance", "high", "api_response_time",
              f"High API response time detected: average {number(m.avg_response_ms or 0)} ms over the last {window} "
              f"minutes (threshold {plugin.alert_response_time_ms} ms)",
              {"average_ms": m.avg_response_ms, "threshold_ms": plugin.alert_response_time_ms, "window_minutes": window})
    condition(enough and (m.error_rate or 0) > plugin.alert_error_rate_percent, "reliability", "high", "api_error_rate",
              f"High API error rate detected: {number(m.error_rate or 0)}% of {m.requests} requests failed in the last "
              f"{window} minutes (threshold {number(plugin.alert_error_rate_percent)}%)",
              {"error_rate": m.error_rate, "requests": m.requests, "threshold": plugin.alert_error_rate_percent,
               "window_minutes": window})
    condition(m.cache_lookups >= plugin.alert_min_requests and (m.cache_hit_rate or 0) < plugin.alert_cache_hit_rate_percent,
              "performance", "medium", "cache_hit_rate",
              f"Low cache hit rate detected: {number(m.cache_hit_rate or 0)}% of {m.cache_lookups} cache lookups were "
              f"hits in the last {window} minutes (threshold {number(plugin.alert_cache_hit_rate_percent)}%)",
              {"hit_rate": m.cache_hit_rate, "lookups": m.cache_lookups, "threshold": plugin.alert_cache_hit_rate_percent,
               "window_minutes": window})
    state = health.evaluate(engine, env.moodle, env.settings, now)
    probe = next(c for c in state.checks if c.name == "database")
    slow = m.avg_db_ms is not None and m.avg_db_ms > plugin.db_response_time_threshold
    condition(slow or probe.status == health.ERROR, "database", "medium", "db_response_time",
              f"Slow database detected: {'average ' + number(m.avg_db_ms) + ' ms per request' if slow else probe.detail} "
              f"(threshold {plugin.db_response_time_threshold} ms)",
              {"average_db_ms": m.avg_db_ms, "probe": probe.detail, "threshold_ms": plugin.db_response_time_threshold})
    if probe.status == health.OK:
        alerts.resolve(engine, now, alert_type="database", subject="db_connection")
    _rate_limits(engine, env, now)
    _invalid_tokens(engine, env, now, condition)
    _tokens(engine, env, now, condition)
    condition(state.overall == "unhealthy", "health", "critical", "health",
              f"System health critical (Score: {state.score}/100)", {"score": state.score, **_checks(state)})
    condition(state.overall == "warning" and state.score < plugin.health_score_threshold, "health", "medium", "health",
              f"System health warning (Score: {state.score}/100)",
              {"score": state.score, "threshold": plugin.health_score_threshold, **_checks(state)})
    hour = metrics.calls_between(engine, now - 3600, now + 1)
    condition(hour > plugin.high_api_usage_threshold, "performance", "medium", "api_usage",
              f"High API usage detected: {hour} calls in the last hour",
              {"calls": hour, "threshold": plugin.high_api_usage_threshold, "window_minutes": 60})
    _fallbacks(engine, now, window)
    _replicas(engine, condition)
    resolved += _admin_lockouts(engine, env, now)
    env.say(f"Health {state.overall} ({state.score}/100); raised {len(raised)}, resolved {len(resolved)}")
    return {"health": state.overall, "score": state.score, "raised": raised, "resolved": resolved}


def _checks(state) -> dict:
    return {f"check_{c.name}": c.status for c in state.checks}


def _rate_limits(engine, env, now) -> None:
    """Condition 5 resolves at the first check after the user's day has ended."""
    start, _ = day_bounds(now, env.moodle.site_timezone(env.settings.site.timezone)[0])
    for alert_id, _subject in alerts.open_alerts(engine, "rate_limit_exceeded", "user:"):
        created = int(engine.scalar("SELECT timecreated FROM {t:local_alx_api_alerts} WHERE id = ?", (alert_id,)))
        if created < start:
            engine.execute("UPDATE {t:local_alx_api_alerts} SET resolved = 1, timeresolved = ?, resolvedby = 0, "
                           "resolution_note = ? WHERE id = ?", (now, alerts.AUTO_NOTE, alert_id))


def _invalid_tokens(engine, env, now, condition) -> None:
    plugin = env.plugin
    counts = metrics.invalid_tokens_by_ip(engine, now, plugin.alert_invalid_token_minutes)
    for ip, n in counts.items():
        if n >= plugin.alert_invalid_token_count:
            condition(True, "security", "high", f"ip:{ip}", invalid_token_message(n, plugin, ip),
                      {"attempts": n, "threshold": plugin.alert_invalid_token_count, "ip": ip,
                       "window_minutes": plugin.alert_invalid_token_minutes})
    for _, subject in alerts.open_alerts(engine, "security", "ip:"):
        if counts.get(subject[3:], 0) == 0:
            condition(False, "security", "high", subject, "", {})


def invalid_token_message(n: int, plugin, ip: str) -> str:
    return f"Repeated invalid token attempts: {n} in the last {plugin.alert_invalid_token_minutes} minutes from {ip}"


def _tokens(engine, env, now, condition) -> None:
    """Conditions 7a (one token from many IPs) and 7b (one token refused repeatedly)."""
    plugin = env.plugin
    many_ips = {h: (int(n), u) for h, n, u in engine.rows(
        "SELECT token_hash, COUNT(DISTINCT ip_address), MAX(userid) FROM {t:local_alx_api_logs} WHERE token_hash IS NOT "
        "NULL AND errorcode IS NULL AND timeaccessed >= ? GROUP BY token_hash", (now - 3600,))}
    refused = {h: int(n) for h, n in engine.rows(
        "SELECT token_hash, COUNT(*) FROM {t:local_alx_api_logs} WHERE errorcode = 'accessexception' AND "
        "token_hash IS NOT NULL AND timeaccessed >= ? GROUP BY token_hash", (now - 900,))}
    flagged = set()
    for token_hash, (n, userid) in many_ips.items():
        if n >= plugin.alert_token_ip_count:
            username = engine.scalar("SELECT username FROM {t:user} WHERE id = ?", (userid,)) or "unknown"
            condition(True, "security", "medium", f"token:{token_hash[:8]}",
                      f"Token {token_hash[:8]}… of user {username} was used from {n} different IP addresses in the "
                      f"last 60 minutes", {"addresses": n, "threshold": plugin.alert_token_ip_count, "window_minutes": 60})
            flagged.add(token_hash[:8])
    for token_hash, n in refused.items():
        if n >= plugin.alert_access_denied_count:
            condition(True, "security", "medium", f"token:{token_hash[:8]}",
                      f"Token {token_hash[:8]}… was refused {n} times in the last 15 minutes",
                      {"refusals": n, "threshold": plugin.alert_access_denied_count, "window_minutes": 15})
            flagged.add(token_hash[:8])
    for _, subject in alerts.open_alerts(engine, "security", "token:"):
        if subject[6:] not in flagged:
            condition(False, "security", "medium", subject, "", {})


def _admin_lockouts(engine, env, now) -> list[str]:
    """Condition 7c resolves when the sign-in lockout it reported has ended."""
    ended = []
    for alert_id, subject in alerts.open_alerts(engine, "security", "admin_login:"):
        data = json.loads(engine.scalar("SELECT alert_data FROM {t:local_alx_api_alerts} WHERE id = ?",
                                        (alert_id,)) or "{}")
        if lockout_ended(engine, env.settings, data, now) and \
                alerts.resolve(engine, now, alert_type="security", subject=subject):
            ended.append(subject)
    return ended


def _replicas(engine, condition) -> None:
    """A replica down or lagging beyond replica_max_lag (as health.evaluate just checked it);
    resolved when it takes reads again or is no longer configured."""
    states = {f"replica:{r.engine.describe()}": r for r in (engine.replicas.all if engine.replicas else [])}
    for subject, replica in states.items():
        state = replica.describe()
        condition(state["status"] != "ok", "database", "high", subject,
                  f"Replica {state['url']} is {state['status']}: {state['error']}; its reads go to the primary",
                  state)
    for _, subject in alerts.open_alerts(engine, "database", "replica:"):
        if subject not in states:
            condition(False, "database", "high", subject, "", {})


def _fallbacks(engine, now, window) -> None:
    """Condition 15 resolves when no error-fallback page was served for the company in the window."""
    for _, subject in alerts.open_alerts(engine, "reliability", "company:"):
        companyid = subject.split(":")[1]
        recent = engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_logs} WHERE companyid = ? AND data_source = 'live' "
                               "AND additional_data NOT LIKE '%never_filled%' AND timeaccessed >= ?",
                               (int(companyid), now - window * 60))
        if not recent:
            alerts.resolve(engine, now, alert_type="reliability", subject=subject)

