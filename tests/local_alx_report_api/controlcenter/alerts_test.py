"""Alerts page (admin-ui.md 3.8): configuration summary, filters and paging, severity badges, the
detail with notification results per channel, resolving one or the selected alerts with a note,
and the test alert sent through a real SMTP server (aiosmtpd) and a local SMS gateway."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from aiosmtpd.controller import Controller

from local_alx_report_api.classes import alerts, notify
from local_alx_report_api.task import send_notifications_task
from tests.admin import PREFIX, admin_app, sign_in, submit
from tests.local_alx_report_api.monitoring.alerts_test import Inbox, free_port
from tests.sites import NOW, acme_and_globex
from tests.tasks import task_env


@pytest.fixture
def site(db):
    b = acme_and_globex(db, shared=False)
    return b


@pytest.fixture
def inbox():
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture
def sms_gateway():
    """A local SMS gateway answering with `state["status"]`; records each request body."""
    state = {"status": 200, "bodies": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            state["bodies"].append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            self.send_response(state["status"])
            self.end_headers()
            self.wfile.write(b"Bad gateway" if state["status"] >= 300 else b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_port}/send"
    yield state
    server.shutdown()


def raise_(db, at, alert_type="performance", severity="high", subject="s", companyid=0, **data):
    settings = task_env(db, at).settings
    return alerts.raise_alert(db, settings, at, alert_type=alert_type, severity=severity, subject=subject,
                              message=f"Message about {subject}", data=data, companyid=companyid)


def signed_in(db, now=NOW, **settings):
    app = admin_app(db, now, **settings)
    assert sign_in(app).status_int == 303
    return app


def table(page, selector="#alerts"):
    return [[td.get_text(" ", strip=True) for td in tr.select("td")] for tr in page.html.select(f"{selector} tbody tr")]


def state(db):
    return db.rows("SELECT id, resolved, timeresolved, resolvedby, resolution_note FROM {t:local_alx_api_alerts} "
                   "ORDER BY id")


def notice(resp):
    assert resp.status_int == 303, resp.text
    return resp.follow().html.select_one("p.notice[role=status]").text


# -- the list ------------------------------------------------------------------------------------
def test_configuration_summary_lists_only_configured_recipients(db, site):
    app = signed_in(db, local_alx_report_api__alert_emails="ops@example.com, OPS@example.com, not-an-address",
                    sms__enabled="true", sms__gateway_url="http://127.0.0.1:9/send",
                    sms__recipients="+4712345678, +4798765432", local_alx_report_api__alert_threshold="high",
                    local_alx_report_api__alert_cooldown="30")
    cards = [c.get_text(" ", strip=True) for c in app.get(PREFIX + "/alerts").html.select("section.cards .card")]
    assert cards[0].startswith("Alerting On")
    assert cards[1] == "Email On 1 recipient: ops@example.com"
    assert cards[2] == "SMS On 2 recipients: +4712345678, +4798765432; high and above"
    assert cards[3].startswith("Threshold high") and cards[4].startswith("Cooldown 30 min")
    off = signed_in(db, local_alx_report_api__enable_alerting="false", local_alx_report_api__enable_email_alerts="0")
    cards = [c.get_text(" ", strip=True) for c in off.get(PREFIX + "/alerts").html.select("section.cards .card")]
    assert cards[0] == "Alerting Off No alert is raised or sent." and cards[1] == "Email Off 0 recipients"
    assert cards[2] == "SMS Off 0 recipients"


def test_filters_newest_first_badges_and_companies(db, site):
    ids = {"old": raise_(db, NOW - 300, "sync", "high", "company:5", companyid=5),
           "mid": raise_(db, NOW - 200, "security", "critical", "ip:10.0.0.9"),
           "new": raise_(db, NOW - 100, "performance", "low", "cache_hit_rate"),
           "done": raise_(db, NOW - 50, "sync", "medium", "company:6:reconcile", companyid=6)}
    alerts.resolve_ids(db, NOW, [ids["done"]], by=0, note=None)
    app = signed_in(db)
    page = app.get(PREFIX + "/alerts")
    rows = table(page)
    assert [r[4] for r in rows] == ["cache_hit_rate", "ip:10.0.0.9", "company:5"]  # open only, newest first
    assert rows[2][1:4] + rows[2][6:] == ["2024-11-25 14:55:00", "sync", "high", "1", "2024-11-25 14:55:00", "acme",
                                          "pending", "Open Resolve"]
    assert rows[2][5] == "Message about company:5"
    assert [b["class"] for b in page.html.select("#alerts .badge")] == [["badge", "sev-low"], ["badge", "sev-critical"],
                                                                       ["badge", "sev-high"]]
    assert rows[0][9] == "not required"  # low is below the medium threshold: stored, not notified
    cases = {"status=resolved": ["company:6:reconcile"], "status=all&type=sync": ["company:6:reconcile", "company:5"],
             "severity=critical": ["ip:10.0.0.9"], "companyid=5": ["company:5"],
             "companyid=0": ["cache_hit_rate", "ip:10.0.0.9"], "status=all&companyid=6": ["company:6:reconcile"],
             "type=security&severity=low": []}
    for query, subjects in cases.items():
        assert [r[4] for r in table(app.get(PREFIX + "/alerts?" + query)) if len(r) > 1] == subjects, query
    resolved = table(app.get(PREFIX + "/alerts?status=resolved"))[0]
    assert resolved[0] == "" and resolved[-1] == "Resolved 2024-11-25 15:00:00"  # no checkbox, no button
    assert [o["value"] for o in page.html.select("#f-type option")] == ["", "performance", "security", "sync"]


def test_invalid_filters_are_reported_next_to_the_field_and_not_applied(db, site):
    raise_(db, NOW, "sync", "high", "company:5", companyid=5)
    page = signed_in(db).get(PREFIX + "/alerts?status=bogus&severity=urgent&type=nope&companyid=99")
    assert page.status_int == 200
    errors = {e["id"]: e.text for e in page.html.select(".field-error")}
    assert errors == {"error-status": "Choose open, resolved or all.",
                      "error-severity": "Choose low, medium, high or critical.",
                      "error-type": "There are no alerts of this type.", "error-companyid": "Choose a company from the list."}
    assert [r[4] for r in table(page)] == ["company:5"]


def test_fifty_per_page(db, site):
    for n in range(55):
        raise_(db, NOW - 1000 + n, subject=f"s{n:02d}")
    app = signed_in(db)
    first = app.get(PREFIX + "/alerts?severity=high")
    rows = table(first)
    assert len(rows) == 50 and rows[0][4] == "s54" and rows[-1][4] == "s05"
    older = first.click("Older")
    assert [r[4] for r in table(older)] == ["s04", "s03", "s02", "s01", "s00"]
    assert "severity=high" in older.request.url and "Page 2 of 2" in older.text
    assert len(table(app.get(PREFIX + "/alerts?page=9"))) == 5  # past the end: the last page


# -- the detail ----------------------------------------------------------------------------------
def test_detail_shows_every_column_the_data_and_each_channel(db, site, inbox, sms_gateway, monkeypatch):
    monkeypatch.setattr(notify, "RETRY_WAITS", (0.01, 0.01))
    sms_gateway["status"] = 502
    channels = dict(mail__smtp_host="127.0.0.1", mail__smtp_port=inbox.port,
                    local_alx_report_api__alert_emails="ops@example.com", sms__enabled="true",
                    sms__gateway_url=sms_gateway["url"], sms__recipients="+4712345678")
    alert_id = raise_(db, NOW - 60, "sync", "critical", "company:5", companyid=5, failures=3, threshold=3,
                      error="<b>boom</b>", companies=[5, 6])
    raise_(db, NOW - 30, "sync", "critical", "company:5", companyid=5)  # counted on the open alert
    send_notifications_task.execute(task_env(db, NOW, **channels))
    page = signed_in(db, **channels).get(PREFIX + "/alerts", {"id": alert_id})
    details = dict(zip([d.text for d in page.html.select("#alert dt")],
                       [d.get_text(" ", strip=True) for d in page.html.select("#alert dd")], strict=True))
    assert details["Id"] == str(alert_id) and details["Type"] == "sync" and details["Severity"] == "critical"
    assert details["Subject"] == "company:5" and details["Message"] == "Message about company:5"
    assert details["Company"] == "Acme Learning Ltd (acme, id 5)" and details["Occurrences"] == "2"
    assert details["Created"].startswith("2024-11-25 14:59:00") and details["Last seen"] == "2024-11-25 14:59:30"
    assert details["Status"] == "Open" and details["Notification"] == "pending" and details["Host"]
    assert {"Resolved", "Resolved by", "Resolution note"} <= set(details)
    data = dict(table(page, "#alert-data"))
    assert data["failures"] == "3" and data["error"] == "<b>boom</b>" and json.loads(data["companies"]) == [5, 6]
    assert "<b>boom</b>" not in page.text  # escaped
    sent = {r[0]: r for r in table(page, "#notifications")}
    assert sent["email"][1:5] == ["sent", "1", "1", "ops@example.com"] and sent["email"][5] == "2024-11-25 15:00:00"
    assert sent["sms"][1:5] == ["failed", "3", "1", "+4712345678"] and sent["sms"][6] == "RuntimeError: HTTP 502: Bad gateway"
    assert len(inbox.messages) == 1
    listed = table(signed_in(db).get(PREFIX + "/alerts"))[0]
    assert listed[9] == "pending email: sent sms: failed"


def test_unknown_or_bad_ids_are_404(db, site):
    app = signed_in(db)
    for value in ("12345", "abc", "-1", "99999999999999999999999"):
        resp = app.get(PREFIX + "/alerts", {"id": value}, expect_errors=True)
        assert resp.status_int == 404 and "There is no alert with this id." in resp.text


# -- resolving -----------------------------------------------------------------------------------
def test_resolve_the_selected_alerts_with_a_note(db, site):
    ids = [raise_(db, NOW - 10 * n, subject=f"s{n}") for n in range(3)]
    app = signed_in(db, NOW + 60)
    form = app.get(PREFIX + "/alerts").forms["resolve-form"]
    for box in form.fields["id"]:
        box.checked = box._value in (str(ids[0]), str(ids[2]))
    form["note"] = "  Fixed the cache TTL  "
    assert notice(form.submit()) == "Resolved 2 alerts."
    assert state(db) == [(ids[0], 1, NOW + 60, 2, "Fixed the cache TTL"), (ids[1], 0, None, 0, None),
                         (ids[2], 1, NOW + 60, 2, "Fixed the cache TTL")]
    assert [r[4] for r in table(app.get(PREFIX + "/alerts"))] == ["s1"]
    detail = app.get(PREFIX + "/alerts", {"id": ids[0]}).html
    by = {d.text: d.find_next_sibling("dd").get_text(" ", strip=True) for d in detail.select("#alert dt")}
    assert by["Resolved by"] == "Admin User (admin)" and by["Resolution note"] == "Fixed the cache TTL"
    assert detail.select_one("#resolve-form") is None


def test_resolve_one_by_its_row_button_keeps_the_filters(db, site):
    raise_(db, NOW - 20, subject="keep")
    one = raise_(db, NOW - 10, subject="one")
    app = signed_in(db)
    form = app.get(PREFIX + "/alerts", {"severity": "high", "page": "1"}).forms["resolve-form"]
    form.fields["id"][1].checked = True  # a checked box does not count when a row's button is used
    resp = form.submit("one", value=str(one))
    assert resp.location.endswith("/alerts?severity=high")
    assert notice(resp) == "Resolved 1 alert."
    assert [r[1] for r in state(db)] == [0, 1] and state(db)[1][4] is None  # no note: NULL


def test_resolve_from_the_detail_page(db, site):
    alert_id = raise_(db, NOW, subject="x")
    app = signed_in(db)
    form = app.get(PREFIX + "/alerts", {"id": alert_id}).forms["resolve-form"]
    form["note"] = "Known maintenance"
    resp = form.submit()
    assert resp.location.endswith(f"/alerts?id={alert_id}")
    assert notice(resp) == "Resolved 1 alert."
    assert state(db) == [(alert_id, 1, NOW, 2, "Known maintenance")]


def test_resolve_errors_change_nothing(db, site):
    alert_id = raise_(db, NOW, subject="x")
    app = signed_in(db)
    form = app.get(PREFIX + "/alerts").forms["resolve-form"]
    form["note"] = "kept"
    resp = form.submit()  # nothing selected: the page again with the message (decision 54)
    assert resp.status_int == 200
    assert resp.html.select_one("#error-id").text == "Select at least one alert to resolve."
    assert resp.html.select_one("#note")["value"] == "kept"
    form = app.get(PREFIX + "/alerts", {"id": alert_id}).forms["resolve-form"]
    form["note"] = "x" * 1001
    resp = form.submit()
    assert resp.status_int == 200
    assert resp.html.select_one("#error-note").text == "The note can have at most 1000 characters."
    assert resp.html.select_one("#alert dd").text == str(alert_id)  # the detail page again
    for ids in (["424242"], [str(alert_id), "424242"], ["x"]):
        resp = submit(app, "/alerts/resolve", id=ids)
        assert resp.status_int == 404 and "There is no alert with this id." in resp.text
    assert state(db) == [(alert_id, 0, None, 0, None)]


def test_resolving_an_already_resolved_alert_changes_nothing(db, site):
    alert_id = raise_(db, NOW, subject="x")
    alerts.resolve_ids(db, NOW - 5, [alert_id], by=0, note="auto")
    resp = submit(signed_in(db), "/alerts/resolve", id=str(alert_id), note="late")
    assert notice(resp) == "Nothing to resolve: the selected alerts were already resolved."
    assert state(db) == [(alert_id, 1, NOW - 5, 0, "auto")]


def test_a_resolved_alert_is_never_notified_and_leaves_the_open_counts(db, site, inbox):
    channels = dict(mail__smtp_host="127.0.0.1", mail__smtp_port=inbox.port,
                    local_alx_report_api__alert_emails="ops@example.com")
    alert_id = raise_(db, NOW, "security", "high", "ip:10.0.0.9")
    app = signed_in(db)
    assert app.get(PREFIX + "/stats.json").json["open_alerts"]["high"] == 1
    form = app.get(PREFIX + "/alerts").forms["resolve-form"]
    assert notice(form.submit("one", value=str(alert_id))) == "Resolved 1 alert."
    assert app.get(PREFIX + "/stats.json").json["open_alerts"]["high"] == 0
    assert send_notifications_task.execute(task_env(db, NOW + 60, **channels))["sent"] == 0
    assert inbox.messages == []


def test_csrf_sign_in_and_admin_checks_change_nothing(db, site):
    alert_id = raise_(db, NOW, subject="x")
    app = signed_in(db)
    for path, fields in (("/alerts/resolve", {"id": str(alert_id)}), ("/alerts/test", {})):
        for sesskey in (None, "forged"):
            body = {**fields, **({"sesskey": sesskey} if sesskey else {})}
            resp = app.post(PREFIX + path, body, expect_errors=True)
            assert resp.status_int == 403 and "This form has expired" in resp.text
    anonymous = admin_app(db, NOW)
    assert anonymous.post(PREFIX + "/alerts/resolve", {"id": str(alert_id), "sesskey": "x"},
                          expect_errors=True).status_int == 403
    resp = anonymous.get(PREFIX + "/alerts", expect_errors=True)
    assert resp.status_int == 303 and "/login?next=" in resp.location
    db.execute("UPDATE {t:config} SET value = '' WHERE name = 'siteadmins'")  # no longer an admin
    assert app.get(PREFIX + "/alerts", expect_errors=True).status_int == 303
    assert app.post(PREFIX + "/alerts/resolve", {"id": str(alert_id), "sesskey": "x"},
                    expect_errors=True).status_int == 403
    assert state(db) == [(alert_id, 0, None, 0, None)]
    assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_alerts}") == 1  # no test alert either


# -- the test alert ------------------------------------------------------------------------------
def test_send_test_alert_shows_the_result_per_channel(db, site, inbox, sms_gateway):
    app = signed_in(db, mail__smtp_host="127.0.0.1", mail__smtp_port=inbox.port,
                    local_alx_report_api__alert_emails="ops@example.com", sms__enabled="true",
                    sms__gateway_url=sms_gateway["url"], sms__recipients="+4712345678", sms__min_severity="low")
    resp = app.get(PREFIX + "/alerts").forms["test-form"].submit()
    alert_id = int(db.scalar("SELECT id FROM {t:local_alx_api_alerts}"))
    assert resp.location.endswith(f"/alerts?id={alert_id}")
    page = resp.follow()
    assert page.html.select_one("p.notice").text == ("Test alert: email: sent after 1 attempt(s): ops@example.com; "
                                                     "sms: sent after 1 attempt(s): +4712345678")
    sent = {r[0]: r[1:5] for r in table(page, "#notifications")}
    assert sent == {"email": ["sent", "1", "1", "ops@example.com"], "sms": ["sent", "1", "1", "+4712345678"]}
    assert inbox.messages[0]["Subject"] == "[ALX Report API] 🟡 Medium Alert: Test"
    assert f"/local/alx_report_api/alerts?id={alert_id}" in inbox.messages[0].get_body(("plain",)).get_content()
    assert "TEST alert" in sms_gateway["bodies"][0]
    row = db.execute("SELECT alert_type, severity, subject, message, resolved, timeresolved, resolvedby, notified "
                     "FROM {t:local_alx_api_alerts}").fetchone()
    assert tuple(row) == ("test", "medium", f"test:{NOW}", alerts.TEST_MESSAGE, 1, NOW, 2, alerts.SENT)
    assert table(app.get(PREFIX + "/alerts")) == [["No alerts match."]]  # stored resolved
    assert table(app.get(PREFIX + "/alerts?status=resolved&type=test"))[0][2] == "test"


def test_a_failing_channel_is_shown_as_failed(db, site, inbox, sms_gateway, monkeypatch):
    monkeypatch.setattr(notify, "RETRY_WAITS", (0.01, 0.01))
    sms_gateway["status"] = 502
    app = signed_in(db, mail__smtp_host="127.0.0.1", mail__smtp_port=inbox.port,
                    local_alx_report_api__alert_emails="ops@example.com", local_alx_report_api__alert_threshold="high",
                    sms__enabled="true", sms__gateway_url=sms_gateway["url"], sms__recipients="+4712345678")
    page = submit(app, "/alerts/test").follow()
    notice = page.html.select_one("p.notice")
    assert notice.text == ("Test alert: email: sent after 1 attempt(s): ops@example.com; "
                           "sms: failed after 3 attempt(s): RuntimeError: HTTP 502: Bad gateway")
    assert notice["class"] == ["notice", "failed"] and notice["role"] == "alert"  # not the green success banner
    sent = {r[0]: r[1] for r in table(page, "#notifications")}
    assert sent == {"email": "sent", "sms": "failed"} and len(sms_gateway["bodies"]) == 3
    assert db.scalar("SELECT notified FROM {t:local_alx_api_alerts}") == alerts.FAILED
    assert db.scalar("SELECT severity FROM {t:local_alx_api_alerts}") == "high"  # the threshold


def test_test_alert_without_a_channel(db, site):
    page = submit(signed_in(db), "/alerts/test").follow()
    notice = page.html.select_one("p.notice")
    assert notice.text == (f"Test alert: {alerts.NO_CHANNEL}; email: off ([local_alx_report_api] alert_emails holds "
                           "no valid address); sms: off ([sms] enabled = false)")
    assert notice["class"] == ["notice", "failed"]
    assert db.scalar("SELECT notified FROM {t:local_alx_api_alerts}") == alerts.NOT_REQUIRED
    assert "No notification was required" in page.text


def test_the_test_alert_goes_through_sms_whatever_its_minimum_severity(db, site, sms_gateway):
    """monitoring.md 3.9: every enabled channel; an SMS channel set to `critical` only is still tested
    (a medium test alert used to report "No channel is configured" in a green banner)."""
    app = signed_in(db, sms__enabled="true", sms__gateway_url=sms_gateway["url"], sms__recipients="+4712345678",
                    sms__min_severity="critical", local_alx_report_api__enable_email_alerts="0")
    notice = submit(app, "/alerts/test").follow().html.select_one("p.notice")
    assert notice.text == ("Test alert: sms: sent after 1 attempt(s): +4712345678; "
                           "email: off ([local_alx_report_api] enable_email_alerts = 0)")
    assert notice["class"] == ["notice"] and notice["role"] == "status"
    assert "TEST alert" in sms_gateway["bodies"][0]
    assert db.scalar("SELECT notified FROM {t:local_alx_api_alerts}") == alerts.SENT
