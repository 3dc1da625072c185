"""Delivering alerts by email and SMS (monitoring.md 3.6) and the test alert (3.9): which
channels an alert goes through, each channel's result, retries over later runs."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import dataclass

from local_alx_report_api.classes import notify
from local_alx_report_api.classes.alerts import FAILED, NO_CHANNEL, NOT_REQUIRED, PENDING, RANK, SENT, TEST_MESSAGE
from moodle_core.engines import Engine
from moodle_core.moodle import Moodle

MAX_RUNS = 5
_COLUMNS = ("id", "alert_type", "severity", "message", "alert_data", "hostname", "timecreated", "companyid",
            "occurrences", "resolved")


@dataclass
class Outbox:
    """What delivery needs: the database, Moodle (the site's time zone), settings, the clock and
    where to say what happened."""

    engine: Engine
    moodle: Moodle
    settings: object
    clock: Callable[[], int]
    say: Callable[[str], None] = lambda _: None


def _record(engine: Engine, alert: dict, notified: int, *, results: bool = True) -> None:
    """The alert's delivery state: `notified`, with each channel's result in `alert_data` unless
    nothing was sent."""
    if not results:
        engine.execute("UPDATE {t:local_alx_api_alerts} SET notified = ? WHERE id = ?", (notified, alert["id"]))
        return
    engine.execute("UPDATE {t:local_alx_api_alerts} SET alert_data = ?, notified = ? WHERE id = ?",
                   (json.dumps(alert["data"], separators=(",", ":"), default=str), notified, alert["id"]))


def load(engine, alert_id: int) -> dict:
    row = engine.execute(f"SELECT {', '.join(_COLUMNS)} FROM {{t:local_alx_api_alerts}} WHERE id = ?",
                         (alert_id,)).fetchone()
    alert = dict(zip(_COLUMNS, row, strict=True))
    alert["data"] = json.loads(alert.pop("alert_data") or "{}")
    return alert


def channels(settings, alert: dict, *, test: bool = False) -> dict[str, list[str]]:
    """Enabled channels with their recipients for this alert; the test alert goes through every
    enabled channel, whatever `[sms] min_severity` says (monitoring.md 3.9)."""
    plugin, sms = settings.local_alx_report_api, settings.sms
    out = {}
    emails = notify.recipients(plugin.alert_emails) if plugin.enable_email_alerts else []
    if emails:
        out["email"] = emails
    if sms.enabled and sms.recipients and (test or RANK[alert["severity"]] >= RANK[sms.min_severity]):
        out["sms"] = list(sms.recipients)
    return out


def unused(settings) -> dict[str, str]:
    """Why a channel is not enabled, for the test alert's report."""
    plugin, sms = settings.local_alx_report_api, settings.sms
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


def deliver(outbox: Outbox, alert: dict, wanted: dict[str, list[str]]) -> dict:
    """Send through each channel not yet sent; returns the per-channel results."""
    timezone = outbox.moodle.site_timezone(outbox.settings.site.timezone)[0]
    company = outbox.engine.scalar("SELECT shortname FROM {t:company} WHERE id = ?", (alert["companyid"],)) \
        if alert["companyid"] else None
    results = alert["data"].get("notifications", {})
    for channel, targets in wanted.items():
        previous = results.get(channel, {})
        if previous.get("status") == "sent":
            continue
        if channel == "email":
            def send(targets=targets):
                for to in targets:
                    notify.send_email(outbox.settings, notify.email_message(alert, outbox.settings, timezone, company, to))
        else:
            def send(targets=targets):
                for to in targets:
                    notify.send_sms(outbox.settings, notify.sms_request(alert, outbox.settings, to, company))
        ok, tries, error = notify.attempt(send)
        results[channel] = {"status": "sent" if ok else "failed", "attempts": tries, "recipients": targets,
                            "time": outbox.clock(), "runs": previous.get("runs", 0) + 1, **({"error": error} if error else {})}
    return results


def deliver_pending(outbox: Outbox) -> dict:
    """Deliver the pending alerts (oldest first, 100 per run); a channel that fails is retried on
    later runs, five runs in all (monitoring.md 3.6)."""
    engine = outbox.engine
    pending = [r[0] for r in engine.rows("SELECT id FROM {t:local_alx_api_alerts} WHERE notified = 0 AND resolved = 0 "
                                         "ORDER BY timecreated, id LIMIT 100")]
    summary = {"sent": 0, "failed": 0, "not_required": 0, "retry": 0}
    for alert_id in pending:
        alert = load(engine, alert_id)
        wanted = channels(outbox.settings, alert)
        if not wanted:
            _record(engine, alert, NOT_REQUIRED, results=False)
            summary["not_required"] += 1
            continue
        results = alert["data"]["notifications"] = deliver(outbox, alert, wanted)
        failed = [c for c in wanted if results[c]["status"] != "sent"]
        notified = SENT if not failed else FAILED if any(results[c]["runs"] >= MAX_RUNS for c in failed) else PENDING
        _record(engine, alert, notified)
        key = {SENT: "sent", FAILED: "failed", PENDING: "retry"}[notified]
        summary[key] += 1
    outbox.say(f"Notifications: {summary['sent']} sent, {summary['retry']} to retry, {summary['failed']} failed, "
               f"{summary['not_required']} not required")
    return summary


@dataclass
class AlertTestResult:
    alert_id: int
    results: dict  # channel → {"status", "attempts", "recipients", "time", "error"?}; empty: no channel
    unused: dict  # channel → why it is off

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r["status"] == "sent" for r in self.results.values())

    def lines(self) -> list[str]:
        """One line per channel, e.g. `email: sent after 1 attempt(s): ops@example.com` or
        `sms: off ([sms] enabled = false)`; first the reason when no channel is enabled."""
        lines = [] if self.results else [NO_CHANNEL]
        lines += [f"{channel}: {r['status']} after {r['attempts']} attempt(s): "
                  f"{', '.join(r['recipients']) if r['status'] == 'sent' else r.get('error', '')}"
                  for channel, r in self.results.items()]
        return lines + [f"{channel}: {why}" for channel, why in self.unused.items()]


def send_test_alert(engine: Engine, moodle, settings, now: int, *, by: int = 0) -> AlertTestResult:
    """The test alert (monitoring.md 3.9): stored already resolved (by `by`, 0 from the command line),
    of type `test` at the `alert_threshold` severity, sent at once through every enabled channel
    (whatever its minimum severity) with the formats and retries of the notifications task."""
    outbox = Outbox(engine, moodle, settings, lambda: now)
    alert_id = engine.insert("local_alx_api_alerts", {
        "alert_type": "test", "severity": settings.local_alx_report_api.alert_threshold, "subject": f"test:{now}",
        "message": TEST_MESSAGE, "alert_data": "{}", "hostname": socket.gethostname(), "timecreated": now,
        "resolved": 1, "timeresolved": now, "resolvedby": by, "companyid": 0, "occurrences": 1, "lastseen": now,
        "notified": PENDING})
    alert = load(engine, alert_id)
    wanted = channels(settings, alert, test=True)
    off = unused(settings)
    if not wanted:
        _record(engine, alert, NOT_REQUIRED, results=False)
        return AlertTestResult(alert_id, {}, off)
    results = alert["data"]["notifications"] = deliver(outbox, alert, wanted)
    outcome = AlertTestResult(alert_id, results, off)
    _record(engine, alert, SENT if outcome.ok else FAILED)
    return outcome
