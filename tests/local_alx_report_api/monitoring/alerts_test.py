"""Alerts end to end: conditions raised and auto-resolved by check_alerts_task, de-duplication and
cooldown, delivery by a real SMTP server (aiosmtpd) and a local SMS gateway, nothing dropped
while SMTP is down (monitoring.md 3)."""

import email
import email.policy
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from aiosmtpd.controller import Controller

from local_alx_report_api.classes import alerts, notify
from local_alx_report_api.task import check_alerts_task, send_notifications_task
from tests.sites import NOW, new_site
from tests.tasks import task_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def gateway():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.headers.get("Content-Type"), self.headers.get("Authorization"),
                             self.rfile.read(int(self.headers["Content-Length"])).decode()))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/send", received
    server.shutdown()


def log_row(db, **values):
    row = {"userid": 1, "endpoint": "local_alx_report_api_get_course_progress", "record_count": 0, "timeaccessed": NOW,
           "companyid": 0, "counted": 0, "response_bytes": 0, "response_time_ms": 10, **values}
    db.insert("local_alx_api_logs", row)


def alert_rows(db):
    return db.rows("SELECT alert_type, severity, subject, occurrences, resolved, notified FROM "
                   "{t:local_alx_api_alerts} ORDER BY id")


def test_deduplication_cooldown_and_threshold(db):
    new_site(db)
    settings = task_env(db, NOW).settings
    raise_ = lambda now, severity="high": alerts.raise_alert(  # noqa: E731
        db, settings, now, alert_type="performance", severity=severity, subject="x", message="m", data={})
    first = raise_(NOW)
    assert first and raise_(NOW + 10) is None
    assert alert_rows(db) == [("performance", "high", "x", 2, 0, 0)]
    alerts.resolve(db, NOW + 20, alert_type="performance", subject="x")
    assert raise_(NOW + 30) is None and alert_rows(db)[0][3] == 3  # within the cooldown
    assert raise_(NOW + 3601) is not None  # cooldown over: a new alert
    assert alerts.raise_alert(db, settings, NOW, alert_type="t", severity="low", subject="y", message="m", data={})
    assert alert_rows(db)[-1][-1] == alerts.NOT_REQUIRED  # below alert_threshold: stored, not notified
    off = task_env(db, NOW, local_alx_report_api__enable_alerting="false").settings
    assert alerts.raise_alert(db, off, NOW, alert_type="t", severity="high", subject="z", message="m", data={}) is None


def test_check_raises_and_resolves_conditions(db):
    new_site(db)
    for n in range(25):
        log_row(db, timeaccessed=NOW - n, response_time_ms=2500, errorcode="invalidtoken" if n < 12 else None,
                ip_address="10.0.0.9", cache_status="miss")
    lines = []
    summary = check_alerts_task.execute(task_env(db, NOW, lines))
    subjects = set(summary["raised"])
    assert {"api_response_time", "api_error_rate", "cache_hit_rate", "ip:10.0.0.9", "health"} <= subjects
    messages = dict(db.rows("SELECT subject, message FROM {t:local_alx_api_alerts}"))
    assert messages["api_response_time"] == ("High API response time detected: average 2500 ms over the last 60 "
                                             "minutes (threshold 2000 ms)")
    assert messages["api_error_rate"] == ("High API error rate detected: 48% of 25 requests failed in the last 60 "
                                          "minutes (threshold 5%)")
    assert messages["ip:10.0.0.9"] == "Repeated invalid token attempts: 12 in the last 15 minutes from 10.0.0.9"
    assert messages["health"].startswith("System health critical (Score: ")  # no cron has run: unhealthy
    later = check_alerts_task.execute(task_env(db, NOW + 7200))  # the window holds no requests any more
    assert {"api_response_time", "api_error_rate", "ip:10.0.0.9"} <= set(later["resolved"])
    resolved = dict(db.rows("SELECT subject, resolution_note FROM {t:local_alx_api_alerts} WHERE resolved = 1"))
    assert resolved["api_response_time"] == "Resolved automatically: condition cleared"


def test_alerting_disabled(db):
    new_site(db)
    lines = []
    check_alerts_task.execute(task_env(db, NOW, lines, local_alx_report_api__enable_alerting="false"))
    assert lines == ["Alerting is disabled; nothing to check."] and alert_rows(db) == []


def test_email_and_sms_are_delivered(db, smtp, gateway, monkeypatch):
    controller, inbox = smtp
    url, received = gateway
    new_site(db)
    env = task_env(db, NOW, mail__smtp_host="127.0.0.1", mail__smtp_port=controller.port,
                   local_alx_report_api__alert_emails="ops@example.com, OPS@example.com, not-an-address",
                   sms__enabled="true", sms__gateway_url=url, sms__recipients="+4712345678",
                   sms__headers="Authorization: Bearer abc")
    alert_id = alerts.raise_alert(db, env.settings, NOW, alert_type="rate_limit_exceeded", severity="high",
                                  subject="user:101", message="User Sarah Connor from Acme Ltd exceeded rate limit "
                                  "(100/100 requests)", data={"count": 100, "limit": 100})
    summary = send_notifications_task.execute(env)
    assert summary["sent"] == 1
    assert len(inbox.messages) == 1  # duplicates removed ignoring case; the invalid address skipped
    message = inbox.messages[0]
    assert message["Subject"] == "[ALX Report API] 🟠 High Alert: Rate_limit_exceeded"
    assert message["To"] == "ops@example.com" and message["From"].addresses[0].addr_spec == "noreply@localhost"
    text = message.get_body(("plain",)).get_content()
    assert text.splitlines()[:5] == ["High Alert: Rate_limit_exceeded",
                                     "User Sarah Connor from Acme Ltd exceeded rate limit (100/100 requests)",
                                     "Time: 2024-11-25 15:00:00 UTC", "System: http://localhost:8000",
                                     "Plugin: ALX Report API"]
    assert "count: 100" in text and f"View alert: http://localhost:8000/local/alx_report_api/alerts?id={alert_id}" in text
    assert "#fd7e14" in message.get_body(("html",)).get_content()
    assert received == [("application/json", "Bearer abc", '{"to":"+4712345678","message":"[ALX Report API] HIGH '
                         'rate_limit_exceeded: User Sarah Connor from Acme Ltd exceeded rate limit (100/100 requests)"}')]
    stored = json.loads(db.scalar("SELECT alert_data FROM {t:local_alx_api_alerts} WHERE id = ?", (alert_id,)))
    assert stored["notifications"]["email"]["status"] == "sent" and stored["notifications"]["sms"]["attempts"] == 1
    assert db.scalar("SELECT notified FROM {t:local_alx_api_alerts} WHERE id = ?", (alert_id,)) == alerts.SENT


def test_smtp_down_is_retried_and_nothing_is_lost(db, smtp, monkeypatch):
    monkeypatch.setattr(notify, "RETRY_WAITS", (0.01, 0.01))  # the waits, not the behaviour
    controller, inbox = smtp
    new_site(db)
    settings = dict(mail__smtp_host="127.0.0.1", mail__smtp_port=free_port(),  # nothing listens there
                    local_alx_report_api__alert_emails="ops@example.com")
    env = task_env(db, NOW, **settings)
    alert_id = alerts.raise_alert(db, env.settings, NOW, alert_type="sync", severity="high", subject="company:5",
                                  message="Sync failed 3 times in a row for company acme: boom", data={})
    for _ in range(2):
        assert send_notifications_task.execute(env)["retry"] == 1
    data = json.loads(db.scalar("SELECT alert_data FROM {t:local_alx_api_alerts} WHERE id = ?", (alert_id,)))
    assert data["notifications"]["email"]["status"] == "failed" and data["notifications"]["email"]["attempts"] == 3
    up = task_env(db, NOW, **{**settings, "mail__smtp_port": controller.port})
    assert send_notifications_task.execute(up)["sent"] == 1 and len(inbox.messages) == 1
    other = alerts.raise_alert(db, env.settings, NOW, alert_type="sync", severity="high", subject="company:6",
                               message="m", data={})
    for _ in range(5):
        send_notifications_task.execute(env)
    assert db.scalar("SELECT notified FROM {t:local_alx_api_alerts} WHERE id = ?", (other,)) == alerts.FAILED


def test_alerts_test_command_reports_each_channel(tmp_path, monkeypatch, capsys, smtp, gateway):
    from local_alx_report_api.classes import installer
    from local_alx_report_api.cli import main
    from moodle_core import engines, generator

    controller, inbox = smtp
    url, received = gateway
    monkeypatch.chdir(tmp_path)
    engine = engines.connect(f"sqlite:///{tmp_path / 'm.sqlite3'}", create=True)
    generator.generate(engine, companies=1, users=2)
    installer.install(engine, NOW)
    (tmp_path / "settings.ini").write_text(
        f"[database]\nurl = sqlite:///m.sqlite3\n[mail]\nsmtp_host = 127.0.0.1\nsmtp_port = {controller.port}\n"
        f"[local_alx_report_api]\nalert_emails = ops@example.com\n[sms]\nenabled = true\ngateway_url = {url}\n"
        "recipients = +4712345678\nmin_severity = low\n")
    assert main(["alerts", "test"]) == 0
    out = capsys.readouterr().out
    assert "email: sent after 1 attempt(s): ops@example.com" in out and "sms: sent after 1 attempt(s)" in out
    assert inbox.messages[0]["Subject"] == "[ALX Report API] 🟡 Medium Alert: Test"
    assert "TEST alert" in received[0][2]
    row = engine.execute("SELECT resolved, notified FROM mdl_local_alx_api_alerts WHERE alert_type = 'test'").fetchone()
    assert tuple(row) == (1, 1)


def test_alerts_test_in_a_subprocess_names_every_channel_and_fails_visibly(tmp_path, gateway):
    """Issue 18: SMS set to `critical` only still takes the (medium) test alert, the channel that is
    off says why, and a failed channel makes the exit status 1."""
    import subprocess
    import sys

    from local_alx_report_api.classes import installer
    from moodle_core import engines, generator

    url, received = gateway
    engine = engines.connect(f"sqlite:///{tmp_path / 'm.sqlite3'}", create=True)
    generator.generate(engine, companies=1, users=2)
    installer.install(engine, NOW)
    settings = tmp_path / "settings.ini"

    def alerts_test(gateway_url):
        settings.write_text(f"[database]\nurl = sqlite:///m.sqlite3\n[sms]\nenabled = true\ngateway_url = {gateway_url}\n"
                            "recipients = +4712345678\nmin_severity = critical\n")
        return subprocess.run([sys.executable, "-m", "local_alx_report_api.cli", "--config", str(settings), "alerts",
                               "test"], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    done = alerts_test(url)
    assert (done.returncode, done.stdout) == (0, "sms: sent after 1 attempt(s): +4712345678\n"
                                                 "email: off ([local_alx_report_api] alert_emails holds no valid address)\n")
    assert "TEST alert" in received[0][2]
    done = alerts_test("http://127.0.0.1:9/send")  # nothing listens there
    assert done.returncode == 1 and done.stdout.startswith("sms: failed after 3 attempt(s): "), done.stdout


@pytest.mark.parametrize("method, content_type", [("POST", "form"), ("GET", "json")])
def test_sms_form_and_get_requests(db, method, content_type):
    from urllib.parse import parse_qs, urlsplit

    new_site(db)
    env = task_env(db, NOW, sms__enabled="true", sms__gateway_url="http://127.0.0.1:9/send", sms__method=method,
                   sms__content_type=content_type, sms__recipients="+4712345678")
    alert = {"id": 7, "alert_type": "sync", "severity": "critical", "message": "x" * 200, "timecreated": NOW}
    request = notify.sms_request(alert, env.settings, "+4712345678", "acme")
    if method == "GET":
        assert request.data is None and request.get_method() == "GET"
        query = parse_qs(urlsplit(request.full_url).query)
    else:
        assert request.headers["Content-type"] == "application/x-www-form-urlencoded"
        query = parse_qs(request.data.decode())
    assert query["to"] == ["+4712345678"]
    message = query["message"][0]
    assert len(message) == 160 and message.endswith("…") and message.startswith("[ALX Report API] CRITICAL sync: ")
