"""Alerts (admin-ui.md 3.8): the alerting configuration, the alerts with filters, one alert in
full, resolving alerts with a note, and the test alert (monitoring.md 3.9)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode

from local_alx_report_api.classes import alerts, notifications, notify
from local_alx_report_api.controlcenter.web import Ctx, Form, Page, url, whole

PER_PAGE = 50
STATUSES = {"open": "resolved = 0", "resolved": "resolved = 1", "all": None}
NOTIFIED = {alerts.PENDING: "pending", alerts.SENT: "sent", alerts.NOT_REQUIRED: "not required",
            alerts.FAILED: "failed"}
NOTE_MAX = 1000
FILTERS = ("status", "severity", "type", "companyid")
COLUMNS = ("id", "alert_type", "severity", "subject", "message", "alert_data", "hostname", "timecreated", "occurrences",
           "lastseen", "companyid", "resolved", "timeresolved", "resolvedby", "resolution_note", "notified")


def configuration(settings) -> dict:
    """The alerting configuration summary (settings.md 1.5 and 1.7); only configured recipients."""
    plugin, sms = settings.local_alx_report_api, settings.sms
    emails = notify.recipients(plugin.alert_emails)
    return {"alerting": plugin.enable_alerting, "email": plugin.enable_email_alerts, "emails": emails,
            "sms": sms.enabled, "phones": list(sms.recipients), "sms_min_severity": sms.min_severity,
            "threshold": plugin.alert_threshold, "cooldown": plugin.alert_cooldown}


def alert_types(engine) -> list[str]:
    return [r[0] for r in engine.rows("SELECT DISTINCT alert_type FROM {t:local_alx_api_alerts} ORDER BY alert_type")]


def parse_filters(query, types: list[str], companies: dict[int, object]) -> tuple[dict, dict]:
    """(filters in effect, error per field); an invalid filter is reported and not applied."""
    filters = {"status": query.get("status", "open") or "open", "severity": query.get("severity"),
               "type": query.get("type"), "companyid": query.get("companyid")}
    errors = {}
    if filters["status"] not in STATUSES:
        errors["status"], filters["status"] = "Choose open, resolved or all.", "open"
    if filters["severity"] and filters["severity"] not in alerts.SEVERITIES:
        errors["severity"], filters["severity"] = "Choose low, medium, high or critical.", ""
    if filters["type"] and filters["type"] not in types:
        errors["type"], filters["type"] = "There are no alerts of this type.", ""
    company, number = filters["companyid"], whole(filters["companyid"])
    if company and not (number is not None and (number == 0 or number in companies)):
        errors["companyid"], filters["companyid"] = "Choose a company from the list.", ""
    return filters, errors


def find(engine, filters: dict, page: int) -> tuple[list[dict], int]:
    """One page of matching alerts, newest first, and how many match in all."""
    where, params = [], []
    if STATUSES[filters["status"]]:
        where.append(STATUSES[filters["status"]])
    for name, column in (("severity", "severity"), ("type", "alert_type")):
        if filters[name]:
            where.append(f"{column} = ?")
            params.append(filters[name])
    if filters["companyid"]:
        where.append("companyid = ?")
        params.append(int(filters["companyid"]))
    sql_where = " WHERE " + " AND ".join(where) if where else ""
    total = int(engine.scalar(f"SELECT COUNT(*) FROM {{t:local_alx_api_alerts}}{sql_where}", params))
    rows = engine.rows(f"SELECT {', '.join(COLUMNS)} FROM {{t:local_alx_api_alerts}}{sql_where} "
                       f"ORDER BY timecreated DESC, id DESC LIMIT {PER_PAGE} OFFSET {(page - 1) * PER_PAGE}", params)
    return [decode(r) for r in rows], total


def decode(row) -> dict:
    alert = dict(zip(COLUMNS, row, strict=True))
    try:
        data = json.loads(alert["alert_data"] or "{}")
    except ValueError:  # written by another program: shown as it is
        data = {"alert_data": alert["alert_data"]}
    alert["data"] = data if isinstance(data, dict) else {"alert_data": data}
    notifications = alert["data"].get("notifications")
    alert["notifications"] = {channel: result for channel, result in notifications.items()
                              if isinstance(result, dict)} if isinstance(notifications, dict) else {}
    alert["notified_label"] = NOTIFIED.get(int(alert["notified"]), str(alert["notified"]))
    return alert


def page_number(text: str) -> int:
    number = whole(text)
    return number if number is not None and 0 < number < 10**9 else 1


def back_query(text: str) -> dict:
    """The page a form came from (its query string), keeping only the alert page's own parameters,
    so that the redirect can never lead elsewhere."""
    pairs = parse_qs(text or "")
    return {k: pairs[k][0] for k in (*FILTERS, "page", "id") if k in pairs and pairs[k][0]}


def show_list(ctx: Ctx, query, *, errors: dict | None = None, note: str = "") -> None:
    companies = {c.id: c for c in ctx.cc.moodle.companies()}
    types = alert_types(ctx.engine)
    filters, filter_errors = parse_filters(query, types, companies)
    page = page_number(query.get("page", "1"))
    rows, total = find(ctx.engine, filters, page)
    pages = max(1, -(-total // PER_PAGE))
    if page > pages:
        page = pages
        rows, total = find(ctx.engine, filters, page)
    current = {k: v for k, v in filters.items() if v and not (k == "status" and v == "open")}
    ctx.render("alerts.html", title="Alerts", config=configuration(ctx.settings), filters=filters,
               errors={**filter_errors, **(errors or {})}, rows=rows, total=total, page=page, pages=pages,
               base_query=urlencode(current), back=urlencode({**current, "page": page} if page > 1 else current),
               types=types, severities=alerts.SEVERITIES, companies=companies, note=note, note_max=NOTE_MAX)


def show_detail(ctx: Ctx, alert_id: str, *, errors: dict | None = None, note: str = "") -> None:
    row = None
    if whole(alert_id) is not None:
        row = ctx.engine.execute(f"SELECT {', '.join(COLUMNS)} FROM {{t:local_alx_api_alerts}} WHERE id = ?",
                                 (whole(alert_id),)).fetchone()
    if row is None:
        return ctx.not_found("There is no alert with this id.")
    alert = decode(row)
    company = ctx.cc.moodle.company(int(alert["companyid"])) if alert["companyid"] else None
    by = None
    if alert["resolvedby"]:
        by = ctx.engine.execute("SELECT username, firstname, lastname FROM {t:user} WHERE id = ?",
                                (alert["resolvedby"],)).fetchone()
    details = {k: v for k, v in alert["data"].items() if k != "notifications"}
    ctx.render("alert_detail.html", title=f"Alert {alert['id']}", alert=alert, company=company,
               resolver=by, details=details, errors=errors or {}, note=note, note_max=NOTE_MAX,
               back=urlencode({"id": alert["id"]}))


class AlertsPage(Page):
    def get(self, ctx: Ctx) -> None:
        if "id" in ctx.query:
            return show_detail(ctx, ctx.query.get("id"))
        show_list(ctx, ctx.query)


class Resolve(Page):
    """POST: resolve the alert of the row's button (`one`), else the checked ones (`id`), with a note."""

    def post(self, ctx: Ctx) -> None:
        back = back_query(ctx.form.get("back"))
        one = ctx.form.get("one")
        chosen = [one] if one else ctx.form.getall("id")
        note = ctx.form.get("note").strip()
        errors = {}
        if not chosen:
            errors["id"] = "Select at least one alert to resolve."
        elif not all(whole(c) is not None for c in chosen):
            return ctx.not_found("There is no alert with this id.")
        if len(note) > NOTE_MAX:
            errors["note"] = f"The note can have at most {NOTE_MAX} characters."
        if errors:
            return self.again(ctx, back, errors, note)
        ids = sorted({int(c) for c in chosen})
        marks = ", ".join("?" * len(ids))
        known = int(ctx.engine.scalar(f"SELECT COUNT(*) FROM {{t:local_alx_api_alerts}} WHERE id IN ({marks})", ids))
        if known != len(ids):
            return ctx.not_found("There is no alert with this id.")
        n = alerts.resolve_ids(ctx.engine, ctx.now, ids, by=ctx.admin.id, note=note or None)
        notice = (f"Resolved {n} alert{'' if n == 1 else 's'}." if n
                  else "Nothing to resolve: the selected alerts were already resolved.")
        ctx.redirect(url("/alerts", **back), notice=notice)

    @staticmethod
    def again(ctx: Ctx, back: dict, errors: dict, note: str) -> None:
        """The page the form was on, with the messages (200, as every form of the control center);
        nothing was changed."""
        if "id" in back:
            return show_detail(ctx, back["id"], errors=errors, note=note)
        show_list(ctx, Form({k: [v] for k, v in back.items()}), errors=errors, note=note)


class SendTest(Page):
    """POST: the test alert of monitoring.md 3.9, sent now; its page shows the result per channel."""

    def post(self, ctx: Ctx) -> None:
        outcome = notifications.send_test_alert(ctx.engine, ctx.cc.moodle, ctx.settings, ctx.now, by=ctx.admin.id)
        notice = "Test alert: " + "; ".join(outcome.lines())
        ctx.redirect(url("/alerts", id=outcome.alert_id), notice=notice, failed=not outcome.ok)


ROUTES = {"/alerts": AlertsPage, "/alerts/resolve": Resolve, "/alerts/test": SendTest}
