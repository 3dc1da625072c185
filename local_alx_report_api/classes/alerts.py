"""Alerts (monitoring.md section 3): raising with de-duplication and cooldown, resolving,
and whether an alert is to be notified."""

from __future__ import annotations

import json
import logging
import socket
import threading

from moodle_core.engines import Engine, first_line

log = logging.getLogger(__name__)
RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}
SEVERITIES = tuple(RANK)
AUTO_NOTE = "Resolved automatically: condition cleared"
PENDING, SENT, NOT_REQUIRED, FAILED = 0, 1, 2, 3
TEST_MESSAGE = ("This is a TEST alert from ALX Report API. If you receive this email, the alert system is working "
                "correctly!")
NO_CHANNEL = "No channel is configured: set [local_alx_report_api] alert_emails or enable [sms]."


_PENDING: list[dict] = []  # alerts this process could not store while the database was down
MAX_PENDING = 200
_PENDING_LOCK = threading.Lock()


def raise_alert(engine: Engine, settings, now: int, *, alert_type: str, severity: str, subject: str, message: str,
                data: dict, companyid: int = 0) -> int | None:
    """Store an alert or count it on the open (or cooling-down) one; returns the id of a new row.
    Decided under a named lock, so concurrent raisers of one subject make one alert.

    Never raises: an alert that cannot be stored because the database is down is kept by the
    process and stored by its next raise_alert or flush_pending (nothing is lost); any other
    failure goes to the process log."""
    if not settings.local_alx_report_api.enable_alerting:
        return None
    alert = {"now": now, "alert_type": alert_type, "severity": severity, "subject": subject, "message": message,
             "data": data, "companyid": companyid}
    flush_pending(engine, settings)
    try:
        return _store(engine, settings, **alert)
    except Exception as exc:  # an alert is never worth failing the work that raised it
        if not engine.transient(exc):  # a bug or a bad row, not an away database
            log.exception("could not store alert %s/%s/%s: %s", alert_type, severity, subject, message)
            return None
        with _PENDING_LOCK:
            kept = len(_PENDING) < MAX_PENDING
            if kept:
                _PENDING.append(alert)
        log.warning("alert %s/%s/%s %s (%s): %s", alert_type, severity, subject,
                    "kept until the database answers" if kept else f"dropped: {MAX_PENDING} already kept",
                    first_line(exc), message)
    return None


def flush_pending(engine: Engine, settings) -> int:
    """Store the alerts kept while the database was down, oldest first; returns how many."""
    stored = 0
    with _PENDING_LOCK:  # threads of one process take turns; each kept alert is stored once
        while _PENDING:
            try:
                _store(engine, settings, **_PENDING[0])
            except Exception as exc:
                if engine.transient(exc):
                    break
                log.exception("could not store kept alert %s", _PENDING[0])
            _PENDING.pop(0)
            stored += 1
    return stored


def _store(engine: Engine, settings, *, now: int, alert_type: str, severity: str, subject: str, message: str,
           data: dict, companyid: int) -> int | None:
    plugin = settings.local_alx_report_api
    # under a lock per (type, subject): two raisers never both find no open alert and insert
    with engine.locked_transaction(f"alert_{alert_type}_{subject}"):
        same = ("SELECT id FROM {t:local_alx_api_alerts} WHERE alert_type = ? AND severity = ? AND subject = ? "
                "AND resolved = ? ORDER BY id DESC LIMIT 1")
        existing = engine.scalar(same, (alert_type, severity, subject, 0))
        if existing is None and plugin.alert_cooldown:
            existing = engine.scalar(
                "SELECT id FROM {t:local_alx_api_alerts} WHERE alert_type = ? AND severity = ? AND subject = ? "
                "AND resolved = 1 AND timecreated > ? ORDER BY id DESC LIMIT 1",
                (alert_type, severity, subject, now - plugin.alert_cooldown * 60))
        if existing is not None:
            engine.execute("UPDATE {t:local_alx_api_alerts} SET occurrences = occurrences + 1, lastseen = ? "
                           "WHERE id = ?", (now, existing))
            return None
        notified = PENDING if RANK[severity] >= RANK[plugin.alert_threshold] else NOT_REQUIRED
        return engine.insert("local_alx_api_alerts", {
            "alert_type": alert_type, "severity": severity, "message": message,
            "alert_data": json.dumps(data, separators=(",", ":"), default=str), "hostname": socket.gethostname(),
            "timecreated": now, "resolved": 0, "companyid": companyid, "subject": subject, "occurrences": 1,
            "lastseen": now, "timeresolved": None, "resolvedby": 0, "resolution_note": None,
            "notified": notified})


def resolve(engine: Engine, now: int, *, alert_type: str, subject: str, by: int = 0, note: str = AUTO_NOTE) -> int:
    """Resolve the open alerts of (type, subject); returns how many."""
    return engine.execute("UPDATE {t:local_alx_api_alerts} SET resolved = 1, timeresolved = ?, resolvedby = ?, "
                          "resolution_note = ? WHERE alert_type = ? AND subject = ? AND resolved = 0",
                          (now, by, note, alert_type, subject)).rowcount


def resolve_ids(engine: Engine, now: int, ids: list[int], *, by: int, note: str | None) -> int:
    """An admin resolves these alerts (monitoring.md 3.5); the resolved ones among them are left as
    they are. Returns how many were open."""
    if not ids:
        return 0
    marks = ", ".join("?" * len(ids))
    return engine.execute(f"UPDATE {{t:local_alx_api_alerts}} SET resolved = 1, timeresolved = ?, resolvedby = ?, "
                          f"resolution_note = ? WHERE resolved = 0 AND id IN ({marks})",
                          (now, by, note, *ids)).rowcount


def open_counts(engine: Engine) -> dict[str, int]:
    """Open alerts by severity."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for severity, n in engine.rows("SELECT severity, COUNT(*) FROM {t:local_alx_api_alerts} WHERE resolved = 0 "
                                   "GROUP BY severity"):
        counts[severity] = int(n)
    return counts


def open_alerts(engine: Engine, alert_type: str, subject_prefix: str = "") -> list[tuple[int, str]]:
    return [(int(r[0]), r[1]) for r in engine.rows(
        "SELECT id, subject FROM {t:local_alx_api_alerts} WHERE alert_type = ? AND resolved = 0 AND subject LIKE ?",
        (alert_type, subject_prefix + "%"))]


def number(value) -> str:
    """Numbers in messages: at most 2 decimals."""
    value = round(float(value), 2)
    return str(int(value)) if value.is_integer() else f"{value:.2f}".rstrip("0")
