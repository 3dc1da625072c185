"""Alerts raised where things happen (monitoring.md 3.2, "inline"): rate-limit rejections,
invalid-token bursts, database connection failures, error-fallback pages, sync and task failures,
reconcile drift."""

from __future__ import annotations

from local_alx_report_api.classes import alerts


def after_request(call) -> None:
    """Hook of the REST server, run after the request's log row is written."""
    code = call.log.fields.get("errorcode")
    if code != "dbconnectionfailed":  # the database answers again: store alerts kept meanwhile
        alerts.flush_pending(call.engine, call.settings)
    if code == "ratelimitexceeded":
        _rate_limit(call)
    elif code == "invalidtoken":
        _invalid_token(call)
    elif code == "dbconnectionfailed":
        alerts.raise_alert(call.engine, call.settings, call.now, alert_type="database", severity="critical",
                           subject="db_connection", message=f"Database connection problem: {call.log.fields.get('error_message')}",
                           data={"retry_attempts": call.settings.database.retry_attempts})
    reason = call.log.extra.get("fallback_reason")
    if reason and reason != "never_filled" and call.company is not None:
        alerts.raise_alert(call.engine, call.settings, call.now, alert_type="reliability", severity="medium",
                           subject=f"company:{call.company.id}:fallback", companyid=call.company.id,
                           message=f"Live fallback used for company {call.company.shortname}: {reason}",
                           data={"error": reason})


def _rate_limit(call) -> None:
    """Condition 5: only the user's first rejection of the day raises (decided at admission,
    under the user's lock)."""
    if not (call.rate or {}).get("first_rejection"):
        return
    user = call.caller.user
    company = call.company.name if call.company else "no company"
    count, limit = call.log.extra.get("rate_count"), call.log.extra.get("rate_limit")
    alerts.raise_alert(call.engine, call.settings, call.now, alert_type="rate_limit_exceeded", severity="high",
                       subject=f"user:{call.caller.userid}", companyid=call.company.id if call.company else 0,
                       message=f"User {user['firstname']} {user['lastname']} from {company} exceeded rate limit "
                               f"({count}/{limit} requests)",
                       data={"count": count, "limit": limit, "userid": call.caller.userid, "ip": call.ip})


def _invalid_token(call) -> None:
    """Condition 6, checked after logging each invalidtoken answer."""
    plugin = call.settings.local_alx_report_api
    minutes = plugin.alert_invalid_token_minutes
    n = int(call.engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_logs} WHERE errorcode = 'invalidtoken' AND "
                               "ip_address = ? AND timeaccessed >= ?", (call.ip, call.now - minutes * 60)))
    if n >= plugin.alert_invalid_token_count:
        alerts.raise_alert(call.engine, call.settings, call.now, alert_type="security", severity="high",
                           subject=f"ip:{call.ip}",
                           message=f"Repeated invalid token attempts: {n} in the last {minutes} minutes from {call.ip}",
                           data={"attempts": n, "threshold": plugin.alert_invalid_token_count, "ip": call.ip,
                                 "window_minutes": minutes})


def sync_result(engine, settings, now: int, company, failures: int, error: str | None) -> None:
    """Condition 8: raised at the threshold, resolved by the company's next successful sync."""
    subject = f"company:{company.id}"
    if error is None:
        alerts.resolve(engine, now, alert_type="sync", subject=subject)
    elif failures >= settings.local_alx_report_api.sync_failure_threshold:
        alerts.raise_alert(engine, settings, now, alert_type="sync", severity="high", subject=subject,
                           companyid=company.id, data={"failures": failures, "error": error},
                           message=f"Sync failed {failures} times in a row for company {company.shortname}: {error}")


def task_result(engine, settings, now: int, task, state) -> None:
    """Condition 9: raised at the threshold, resolved by the task's next success."""
    subject = f"task:{task.classname}"
    if state.status == "success":
        alerts.resolve(engine, now, alert_type="system", subject=subject)
    elif state.consecutive_failures >= settings.local_alx_report_api.task_failure_threshold:
        alerts.raise_alert(engine, settings, now, alert_type="system", severity="high", subject=subject,
                           data={"failures": state.consecutive_failures, "error": state.error},
                           message=f"Scheduled task {task.classname} failed {state.consecutive_failures} times in a "
                                   f"row: {state.error}")


def reconcile_drift(engine, settings, now: int, company, drift: dict, active_rows: int, examples: list) -> None:
    """Condition 14: low when the drift is at most 1 % of the company's active rows, else medium."""
    total = sum(drift.values())
    if total <= 0:
        return
    severity = "low" if total <= 0.01 * max(active_rows, 1) else "medium"
    alerts.raise_alert(engine, settings, now, alert_type="sync", severity=severity,
                       subject=f"company:{company.id}:reconcile", companyid=company.id,
                       message=f"Reconcile corrected {total} rows for company {company.shortname}",
                       data={**drift, "active_rows": active_rows, "examples": examples[:20]})
