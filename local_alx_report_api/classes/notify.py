"""Alert notifications by email (SMTP) and SMS (an HTTP gateway), monitoring.md 3.6–3.8."""

from __future__ import annotations

import html
import json
import logging
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from urllib.parse import quote
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)
ICON = {"low": "🔵", "medium": "🟡", "high": "🟠", "critical": "🔴"}
COLOUR = {"low": "#17a2b8", "medium": "#ffc107", "high": "#fd7e14", "critical": "#dc3545"}
ACTIONS = {
    "performance": "Check server load and slow requests on the Monitoring page; consider a longer cache TTL or a "
                   "smaller page size.",
    "reliability": "Open the Logs page filtered by errors to see which errors clients receive; check the database and "
                   "the reporting table.",
    "database": "Check that the database server is reachable and not overloaded; review its slow-query log.",
    "rate_limit_exceeded": "Check whether the client is looping or misconfigured; raise the company's rate limit if "
                           "the usage is legitimate.",
    "security": "Review the listed IP addresses and tokens; revoke tokens that may have leaked and restrict tokens by IP.",
    "sync": "Open the company's page to see the last sync error; run Sync now after fixing the cause.",
    "system": "Check that the cron runner is running and read its output; run the task manually to see the error.",
    "health": "Open the Overview page and fix the failing health checks.",
}
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
RETRY_WAITS = (1.0, 2.0)


def recipients(addresses: list[str]) -> list[str]:
    seen, out = set(), []
    for address in addresses:
        address = address.strip()
        if not _EMAIL.match(address):
            log.warning("alert_emails: %r is not an email address; skipped", address)
        elif address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return out


def _title(alert: dict) -> str:
    return f"{alert['severity'].capitalize()} Alert: {alert['alert_type'].capitalize()}"


def lines(alert: dict, settings, timezone: str, company: str | None) -> list[str]:
    """The body lines of monitoring.md 3.7, in order."""
    when = datetime.fromtimestamp(alert["timecreated"], ZoneInfo(timezone))
    wwwroot = str(settings.site.wwwroot).rstrip("/")
    out = [_title(alert), alert["message"], f"Time: {when.strftime('%Y-%m-%d %H:%M:%S')} {when.tzname()}",
           f"System: {wwwroot}", "Plugin: ALX Report API", f"Host: {alert['hostname']}"]
    if alert["companyid"]:
        out.append(f"Company: {company or alert['companyid']}")
    if alert["occurrences"] > 1:
        out.append(f"Occurrences: {alert['occurrences']}")
    out.append("Details:")
    out += [f"{k}: {v}" for k, v in alert["data"].items() if k != "notifications" and not isinstance(v, dict | list)]
    out.append(f"Recommended actions: {ACTIONS.get(alert['alert_type'], 'Review system status and logs for details.')}")
    out.append(f"View alert: {wwwroot}/local/alx_report_api/alerts?id={alert['id']}")
    return out


def email_message(alert: dict, settings, timezone: str, company: str | None, to: str) -> EmailMessage:
    mail = settings.mail
    text = lines(alert, settings, timezone, company)
    message = EmailMessage()
    message["Subject"] = f"[ALX Report API] {ICON[alert['severity']]} {_title(alert)}"
    message["From"] = Address(mail.from_name, addr_spec=mail.from_address)
    message["To"] = to
    message.set_content("\n".join(text) + "\n")
    link = text[-1].split(": ", 1)[1]
    body = "".join(f"<p>{html.escape(line)}</p>" for line in text[1:-1])
    message.add_alternative(
        f'<html><body style="font-family:sans-serif"><div style="background:{COLOUR[alert["severity"]]};color:#fff;'
        f'padding:12px;font-weight:bold">{html.escape(text[0])}</div>{body}<p><a href="{html.escape(link)}" '
        f'style="display:inline-block;padding:8px 16px;background:#0f6cbf;color:#fff;text-decoration:none;'
        f'border-radius:4px">View alert</a></p></body></html>', subtype="html")
    return message


def send_email(settings, message: EmailMessage) -> None:
    """One message over [mail]; TLS (starttls, ssl) always verifies the server's certificate and host name
    against the system trust store (decision 37), and a server without STARTTLS is an error, not plain text."""
    mail = settings.mail
    if mail.smtp_security == "ssl":
        server = smtplib.SMTP_SSL(mail.smtp_host, mail.smtp_port, timeout=mail.timeout_seconds,
                                  context=ssl.create_default_context())
    else:
        server = smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=mail.timeout_seconds)
    with server:
        if mail.smtp_security == "starttls":
            server.starttls(context=ssl.create_default_context())
        if mail.smtp_user:
            server.login(mail.smtp_user, mail.smtp_password)
        server.send_message(message)


def sms_message(alert: dict) -> str:
    text = f"[ALX Report API] {alert['severity'].upper()} {alert['alert_type']}: {alert['message']}"
    return text if len(text) <= 160 else text[:159] + "…"


def sms_request(alert: dict, settings, to: str, company: str | None) -> urllib.request.Request:
    sms, wwwroot = settings.sms, str(settings.site.wwwroot).rstrip("/")
    form = sms.method == "GET" or sms.content_type == "form"  # GET sends the form-encoded template as the query
    template = sms.body_template or ("to={to}&message={message}" if form else '{"to":"{to}","message":"{message}"}')
    values = {"to": to, "message": sms_message(alert), "severity": alert["severity"], "type": alert["alert_type"],
              "alert_id": str(alert["id"]), "company": company or "", "time": str(alert["timecreated"]),
              "url": f"{wwwroot}/local/alx_report_api/alerts?id={alert['id']}"}
    escape = (lambda v: quote(v, safe="")) if form else (lambda v: json.dumps(v, ensure_ascii=False)[1:-1])
    body = re.sub(r"\{(to|message|severity|type|alert_id|company|time|url)\}", lambda m: escape(values[m.group(1)]),
                  template)
    headers = dict(line.split(":", 1) for line in sms.headers.splitlines() if ":" in line)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    if sms.method == "GET":
        return urllib.request.Request(f"{sms.gateway_url}{'&' if '?' in sms.gateway_url else '?'}{body}",
                                      headers=headers, method="GET")
    headers["Content-Type"] = "application/json" if sms.content_type == "json" else "application/x-www-form-urlencoded"
    return urllib.request.Request(sms.gateway_url, data=body.encode(), headers=headers, method="POST")


def send_sms(settings, request: urllib.request.Request) -> None:
    try:
        with urllib.request.urlopen(request, timeout=settings.sms.timeout_seconds) as response:
            if not 200 <= response.status < 300:
                raise RuntimeError(f"HTTP {response.status}: {response.read(200).decode('utf-8', 'replace')}")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code}: {exc.read(200).decode('utf-8', 'replace')}") from None


def attempt(send) -> tuple[bool, int, str | None]:
    """Up to three tries, waiting 1 s and 2 s; (ok, attempts, last error)."""
    error = None
    for number, wait in enumerate((*RETRY_WAITS, None), start=1):
        try:
            send()
            return True, number, None
        except Exception as exc:  # every delivery failure is recorded, never raised
            error = f"{type(exc).__name__}: {exc}"
            if wait is not None:
                time.sleep(wait)
    return False, 3, error
