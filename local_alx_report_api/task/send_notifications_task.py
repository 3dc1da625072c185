"""`send_notifications_task` (monitoring.md 3.6): deliver pending alerts by email and SMS,
retrying failed channels on later runs (five runs in all) so that no alert is dropped."""

from __future__ import annotations

import json

from local_alx_report_api.classes import alerts, notify

MAX_RUNS = 5
_COLUMNS = ("id", "alert_type", "severity", "message", "alert_data", "hostname", "timecreated", "companyid",
            "occurrences", "resolved")


def load(engine, alert_id: int) -> dict:
    row = engine.execute(f"SELECT {', '.join(_COLUMNS)} FROM {{t:local_alx_api_alerts}} WHERE id = ?",
                         (alert_id,)).fetchone()
    alert = dict(zip(_COLUMNS, row, strict=True))
    alert["data"] = json.loads(alert.pop("alert_data") or "{}")
    return alert


def channels(env, alert: dict, *, test: bool = False) -> dict[str, list[str]]:
    """Enabled channels with their recipients for this alert; the test alert goes through every
    enabled channel, whatever `[sms] min_severity` says (monitoring.md 3.9)."""
    plugin, sms = env.plugin, env.settings.sms
    out = {}
    emails = notify.recipients(plugin.alert_emails) if plugin.enable_email_alerts else []
    if emails:
        out["email"] = emails
    if sms.enabled and sms.recipients and (test or alerts.RANK[alert["severity"]] >= alerts.RANK[sms.min_severity]):
        out["sms"] = list(sms.recipients)
    return out


def unused(env) -> dict[str, str]:
    """Why a channel is not enabled, for the test alert's report."""
    plugin, sms = env.plugin, env.settings.sms
    out = {}
    if not plugin.enable_email_alerts:
        out["email"] = "off ([local_alx_report_api] enable_email_alerts = 0)"
    elif not notify.recipients(plugin.alert_emails):
        out["email"] = "off ([local_alx_report_api] alert_emails holds no valid address)"
    if not sms.enabled:
        out["sms"] = "off ([sms] enabled = false)"
    elif not sms.recipients:
        out["sms"] = "off ([sms] recipients is empty)"
    return out


def deliver(env, alert: dict, wanted: dict[str, list[str]]) -> dict:
    """Send through each channel not yet sent; returns the per-channel results."""
    timezone = env.moodle.site_timezone(env.settings.site.timezone)[0]
    company = env.engine.scalar("SELECT shortname FROM {t:company} WHERE id = ?", (alert["companyid"],)) \
        if alert["companyid"] else None
    results = alert["data"].get("notifications", {})
    for channel, targets in wanted.items():
        previous = results.get(channel, {})
        if previous.get("status") == "sent":
            continue
        if channel == "email":
            def send(targets=targets):
                for to in targets:
                    notify.send_email(env.settings, notify.email_message(alert, env.settings, timezone, company, to))
        else:
            def send(targets=targets):
                for to in targets:
                    notify.send_sms(env.settings, notify.sms_request(alert, env.settings, to, company))
        ok, tries, error = notify.attempt(send)
        results[channel] = {"status": "sent" if ok else "failed", "attempts": tries, "recipients": targets,
                            "time": env.clock(), "runs": previous.get("runs", 0) + 1, **({"error": error} if error else {})}
    return results


def execute(env) -> dict:
    engine = env.engine
    pending = [r[0] for r in engine.rows("SELECT id FROM {t:local_alx_api_alerts} WHERE notified = 0 AND resolved = 0 "
                                         "ORDER BY timecreated, id LIMIT 100")]
    summary = {"sent": 0, "failed": 0, "not_required": 0, "retry": 0}
    for alert_id in pending:
        alert = load(engine, alert_id)
        wanted = channels(env, alert)
        if not wanted:
            engine.execute("UPDATE {t:local_alx_api_alerts} SET notified = ? WHERE id = ?", (alerts.NOT_REQUIRED, alert_id))
            summary["not_required"] += 1
            continue
        results = deliver(env, alert, wanted)
        alert["data"]["notifications"] = results
        failed = [c for c in wanted if results[c]["status"] != "sent"]
        notified = alerts.SENT if not failed else (
            alerts.FAILED if any(results[c]["runs"] >= MAX_RUNS for c in failed) else alerts.PENDING)
        engine.execute("UPDATE {t:local_alx_api_alerts} SET alert_data = ?, notified = ? WHERE id = ?",
                       (json.dumps(alert["data"], separators=(",", ":"), default=str), notified, alert_id))
        key = {alerts.SENT: "sent", alerts.FAILED: "failed", alerts.PENDING: "retry"}[notified]
        summary[key] += 1
    env.say(f"Notifications: {summary['sent']} sent, {summary['retry']} to retry, {summary['failed']} failed, "
            f"{summary['not_required']} not required")
    return summary
