"""Tokens page (admin-ui.md 3.4): the list, creating a token that works at once (and is shown
once), its IP restriction and expiry at the endpoint, revoking and resetting sync state, and the
gate of every form (CSRF, signed out, no longer an admin, unknown ids)."""

from __future__ import annotations

import json
import re

import pytest

from local_alx_report_api.controlcenter.tokens import COPY_NOW, ONE_CLIENT
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.admin import PREFIX, admin_app, sign_in, submit
from tests.sites import NOW, api_token, new_site, worked_examples
from tests.tasks import task_env
from tests.webapp import progress
from webservice.auth import invalid_ip_entries
from webservice.call import token_hash

TOKEN = "a" * 32  # the fixture's token of user `api` (company 5, acme)
FUNCTION = "local_alx_report_api_get_course_progress"


@pytest.fixture
def site(db):
    """Company 5 (acme) with its reporting rows, user `api` with TOKEN, user `other` (no company),
    a deleted user, a service without the function (with a token) and a tokentype 1 token."""
    b = new_site(db, timezone="Europe/London")
    worked_examples(b)
    api_token(b, 5)
    b.user("other", "Olga", "Other", "olga@example.com", userid=60)
    b.user("gone", "Gone", "User", "gone@example.com", userid=61)
    b.flush()
    db.execute("UPDATE {t:user} SET username = 'gone', deleted = 1 WHERE id = 61")  # as typed before deletion
    other = b.add("external_services", id=None, name="Mobile", enabled=1, requiredcapability=None, restrictedusers=0,
                  component=None, timecreated=NOW, timemodified=NOW, shortname="mobile", downloadfiles=0, uploadfiles=0)
    b.add("external_services_functions", externalserviceid=other, functionname="core_webservice_get_site_info")
    b.token(60, other, "b" * 32, name="Mobile token")
    b.token(60, b.next_ids["serviceid"], "c" * 32, name="Session token")
    b.flush()
    db.execute("UPDATE {t:external_tokens} SET tokentype = 1 WHERE token = ?", ("c" * 32,))
    sync_task.execute(task_env(db, NOW))
    b.other_service = other
    return b


def admin(db, now=NOW):
    app = admin_app(db, now)
    assert sign_in(app).status_int == 303
    return app


def token_rows(db):
    return db.rows("SELECT token FROM {t:external_tokens} ORDER BY id")


def api_rows(db, token):
    return db.rows("SELECT companyid, last_sync_status FROM {t:local_alx_api_sync_status} WHERE kind = 'api' AND "
                   "token_hash = ?", (token_hash(token),))


def elements(resp) -> list[dict]:
    body = json.loads(resp.body)
    assert isinstance(body, list), body
    return body


def error(resp) -> str:
    return json.loads(resp.body)["errorcode"]


def text(page) -> str:
    """The page as a reader sees it (entities decoded, whitespace collapsed)."""
    return " ".join(page.html.get_text().split())


def fill(page, **fields):
    form = page.forms["create-token"]
    for name, value in fields.items():
        form[name] = value
    return form


def test_the_list_shows_every_token_of_the_function(db, site):
    app = admin(db)
    assert len(elements(progress(app, TOKEN, limit=100))) > 0  # a completed first pull, one call counted
    page = app.get(PREFIX + "/tokens")
    assert ONE_CLIENT in text(page)
    row = page.html.find(id=re.compile(r"token-\d+"))
    cells = [td.get_text(" ", strip=True) for td in row.find_all("td")]
    assert cells[1] == "aaaaaaaa…" and cells[2] == "api API User" and cells[3] == "Acme Learning Ltd"
    assert cells[4] == "alx_report_api_custom" and cells[6] == "Never"
    assert cells[5] == "2025-10-09 09:53:20"  # the generator's timecreated, in Europe/London (BST)
    assert cells[7].startswith("2024-11-25 15:00:00")  # lastaccess of the call, site time zone (UTC in winter)
    assert cells[9] == "1 / 100"
    assert "success" in cells[10] and "full" in cells[10] and "2024-11-25 15:00:00" in cells[10]
    assert "Why full: Auto: the token's first pull" in cells[10]
    assert TOKEN not in page.text  # only the first 8 characters
    assert "bbbbbbbb" not in page.text and "cccccccc" not in page.text  # other service; tokentype 1


def test_a_created_token_is_shown_once_and_works_at_once(db, site):
    app = admin(db)
    page = app.get(PREFIX + "/tokens")
    resp = fill(page, username="  API ").submit()
    assert resp.status_int == 303 and resp.location.endswith(PREFIX + "/tokens")
    shown = resp.follow()
    assert COPY_NOW in shown.text and "Token created." in shown.text
    token = shown.html.find(id="new-token").get_text(strip=True)
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert shown.html.find("button", attrs={"data-copy": "new-token"}) is not None
    row = db.execute("SELECT privatetoken, tokentype, userid, externalserviceid, sid, contextid, creatorid, "
                     "iprestriction, validuntil, timecreated, lastaccess, name FROM {t:external_tokens} "
                     "WHERE token = ?", (token,)).fetchone()
    assert re.fullmatch(r"[A-Za-z0-9]{64}", row[0])
    assert row[1:] == (0, db.scalar("SELECT id FROM {t:user} WHERE username = 'api'"), site.next_ids["serviceid"],
                       None, 1, 2, None, 0, NOW, None, "ALX Report API token 2024-11-25 15:00")
    # the company's data, at once
    rows = elements(progress(app, token, limit=100))
    assert {r["userid"] for r in rows} >= {101, 102} and {r["courseid"] for r in rows} <= {12, 13}
    # never shown again
    again = app.get(PREFIX + "/tokens")
    assert token not in again.text and COPY_NOW not in again.text and token[:8] + "…" in again.text


def test_an_ip_restriction_refuses_other_addresses(db, site):
    app = admin(db)
    shown = fill(app.get(PREFIX + "/tokens"), username="api", name="Power BI",
                 iprestriction="10.0.0.0/8, 192.168.1.1-20").submit().follow()
    token = shown.html.find(id="new-token").get_text(strip=True)
    assert db.scalar("SELECT iprestriction FROM {t:external_tokens} WHERE token = ?", (token,)) == \
        "10.0.0.0/8, 192.168.1.1-20"
    allowed = app.post("/webservice/rest/server.php", {"wstoken": token, "wsfunction": FUNCTION,
                                                       "moodlewsrestformat": "json"},
                       extra_environ={"REMOTE_ADDR": "192.168.1.15"})
    assert len(elements(allowed)) > 0
    assert error(progress(app, token)) == "accessexception"  # from 127.0.0.1


def test_valid_until_is_site_time_and_expires(db, site):
    clock = [NOW]
    app = admin_app(db, lambda: clock[0])
    sign_in(app)
    shown = fill(app.get(PREFIX + "/tokens"), username="api", validuntil="2025-07-01T09:30").submit().follow()
    token = shown.html.find(id="new-token").get_text(strip=True)
    until = 1751358600  # 2025-07-01 09:30 in Europe/London (BST, UTC+1)
    assert db.scalar("SELECT validuntil FROM {t:external_tokens} WHERE token = ?", (token,)) == until
    assert "2025-07-01 09:30:00" in shown.text
    assert len(elements(progress(app, token))) > 0
    clock[0] = until + 1
    assert error(progress(app, token)) == "accessexception"  # expired: Moodle deletes the row
    assert error(progress(app, token)) == "invalidtoken"


def test_invalid_input_is_marked_per_field_and_creates_nothing(db, site):
    app = admin(db)
    before = token_rows(db)
    page = app.get(PREFIX + "/tokens")
    form = fill(page, username="nobody", name="x" * 256, validuntil="2024-11-25T14:59",
                iprestriction="10.0.0.1, foo, 192.168.1.20-10")
    form["service"].force_value(str(site.other_service))  # a service without the function
    resp = form.submit(expect_errors=True)
    assert resp.status_int == 200
    errors = {e["id"][6:]: e.get_text() for e in resp.html.select(".field-error")}
    assert errors == {
        "username": "There is no user with the username nobody.",
        "service": "Choose a service from the list.",
        "name": "Use at most 255 characters.",
        "validuntil": "Choose a time in the future, or leave it empty for a token that never expires.",
        "iprestriction": "Not an IP address, CIDR range (10.0.0.0/8), last-part range (192.168.1.1-20) or prefix "
                         "(192.168.): foo, 192.168.1.20-10"}
    assert resp.forms["create-token"]["iprestriction"].value == "10.0.0.1, foo, 192.168.1.20-10"  # kept for fixing
    assert token_rows(db) == before
    resp = fill(resp, username="gone", name="", validuntil="31/12/2030",
                iprestriction="192.168.").submit(expect_errors=True)
    errors = {e["id"][6:]: e.get_text() for e in resp.html.select(".field-error")}
    assert errors == {"username": "The user gone has been deleted.",
                      "validuntil": "Enter a date and time such as 2030-12-31T17:00, or leave it empty."}
    resp = fill(resp, username="", validuntil="").submit(expect_errors=True)
    assert resp.html.find(id="error-username").get_text() == "Enter the username of the token's user."
    assert token_rows(db) == before


def test_revoke_after_confirmation_refuses_the_next_call(db, site):
    app = admin(db)
    assert len(elements(progress(app, TOKEN))) > 0
    assert api_rows(db, TOKEN) == [(5, "success")]
    tokenid = db.scalar("SELECT id FROM {t:external_tokens} WHERE token = ?", (TOKEN,))
    page = app.get(PREFIX + "/tokens").click(href=f"/tokens/{tokenid}/revoke")
    assert "Revoke token" in page.text and "aaaaaaaa…" in page.text
    assert db.scalar("SELECT COUNT(*) FROM {t:external_tokens} WHERE id = ?", (tokenid,)) == 1  # GET changes nothing
    resp = page.forms[1].submit()
    assert resp.status_int == 303 and "Token aaaaaaaa… revoked." in resp.follow().text
    assert db.scalar("SELECT COUNT(*) FROM {t:external_tokens} WHERE id = ?", (tokenid,)) == 0
    assert api_rows(db, TOKEN) == []
    assert db.scalar("SELECT COUNT(*) FROM {t:external_tokens} WHERE token = ?", ("b" * 32,)) == 1
    assert error(progress(app, TOKEN)) == "invalidtoken"


def test_reset_makes_the_next_pull_a_first_pull(db, site):
    clock = [NOW]
    app = admin_app(db, lambda: clock[0])
    sign_in(app)

    def pull_mode():
        elements(progress(app, TOKEN, limit=100))
        return db.scalar("SELECT sync_mode FROM {t:local_alx_api_logs} ORDER BY id DESC LIMIT 1")

    assert pull_mode() == "full"
    clock[0] += 600
    assert pull_mode() == "incremental"
    page = app.get(PREFIX + "/tokens")
    tokenid = db.scalar("SELECT id FROM {t:external_tokens} WHERE token = ?", (TOKEN,))
    reset = next(f for f in page.forms.values() if f.action.endswith(f"/tokens/{tokenid}/reset"))
    resp = reset.submit()
    assert resp.status_int == 303
    assert "Sync state of token aaaaaaaa… reset (1 row deleted): its next pull is a first pull." in resp.follow().text
    assert api_rows(db, TOKEN) == []
    assert db.scalar("SELECT COUNT(*) FROM {t:external_tokens} WHERE token = ?", (TOKEN,)) == 1
    clock[0] += 600
    assert pull_mode() == "full"


def test_forms_need_the_sesskey(db, site):
    app = admin(db)
    elements(progress(app, TOKEN))
    tokenid = db.scalar("SELECT id FROM {t:external_tokens} WHERE token = ?", (TOKEN,))
    before = token_rows(db)
    for path, fields in [("/tokens", {"username": "api", "service": str(site.next_ids["serviceid"])}),
                         (f"/tokens/{tokenid}/revoke", {}), (f"/tokens/{tokenid}/reset", {})]:
        for sesskey in (None, "forged"):
            data = fields if sesskey is None else {**fields, "sesskey": sesskey}
            resp = app.post(PREFIX + path, data, expect_errors=True)
            assert resp.status_int == 403 and "This form has expired" in resp.text
    assert token_rows(db) == before and api_rows(db, TOKEN) == [(5, "success")]


def test_signed_out_and_no_longer_admin(db, site):
    tokenid = db.scalar("SELECT id FROM {t:external_tokens} WHERE token = ?", (TOKEN,))
    app = admin_app(db, NOW)
    for path in ("/tokens", f"/tokens/{tokenid}/revoke"):
        resp = app.get(PREFIX + path, expect_errors=True)
        assert resp.status_int == 303 and "/login?next=" in resp.location
    for path in ("/tokens", f"/tokens/{tokenid}/revoke", f"/tokens/{tokenid}/reset"):
        assert app.post(PREFIX + path, {"sesskey": "x", "username": "api"}, expect_errors=True).status_int == 403
    app = admin(db)
    db.execute("UPDATE {t:config} SET value = '' WHERE name = 'siteadmins'")
    assert app.get(PREFIX + "/tokens", expect_errors=True).status_int == 303
    resp = app.post(PREFIX + f"/tokens/{tokenid}/revoke", {"sesskey": "x"}, expect_errors=True)
    assert resp.status_int == 403
    assert db.scalar("SELECT COUNT(*) FROM {t:external_tokens} WHERE id = ?", (tokenid,)) == 1


def test_unknown_tokens_are_404(db, site):
    app = admin(db)
    other = db.scalar("SELECT id FROM {t:external_tokens} WHERE token = ?", ("b" * 32,))  # not of the function
    session = db.scalar("SELECT id FROM {t:external_tokens} WHERE token = ?", ("c" * 32,))  # tokentype 1
    for tokenid in (999, other, session, 0, 99999999999999999999):
        assert app.get(PREFIX + f"/tokens/{tokenid}/revoke", expect_errors=True).status_int == 404
        for action in ("revoke", "reset"):
            resp = submit(app, f"/tokens/{tokenid}/{action}")
            assert resp.status_int == 404 and "There is no token" in resp.text
    assert len(token_rows(db)) == 3


@pytest.mark.parametrize("entries, bad", [
    ("192.168.1.10, 192.168.1.0/24, 192.168.1.10-20, 192.168., 192.168, 10", []),
    ("2001:db8::1, 2001:db8::/32, 2001:db8::1-ff, 2001:db8:, 2001:db8", []),
    (" , 10.0.0.1 ,, ", []),
    ("foo, 1.2.3.4.5, 300.1., 10.0.0.0/33, 192.168.1.20-10, 192.168.1.1-300, 192.168.1.1-1.5",
     ["foo", "1.2.3.4.5", "300.1.", "10.0.0.0/33", "192.168.1.20-10", "192.168.1.1-300", "192.168.1.1-1.5"])])
def test_ip_restriction_forms(entries, bad):
    """The forms of protocol.md 4.3, parsed by the same function the endpoint matches with."""
    assert invalid_ip_entries(entries) == bad


def test_the_list_says_which_clients_got_full_pulls_and_why(db, site):
    """Issue 12: a Power Query client's full pull in Auto mode, and the open pulls of the token."""
    app = admin(db)
    agent = "Microsoft.Data.Mashup (https://go.microsoft.com/fwlink/?LinkID=304225)"
    for _ in range(2):
        app.post("/webservice/rest/server.php", {"wstoken": TOKEN, "wsfunction": FUNCTION, "moodlewsrestformat": "json",
                                                 "limit": 100}, headers={"User-Agent": agent})
    for pull_id in ("A", "B"):
        app.post("/webservice/rest/server.php", {"wstoken": TOKEN, "wsfunction": FUNCTION, "moodlewsrestformat": "json",
                                                 "limit": 2}, headers={"User-Agent": agent, "X-ALX-Pull-Id": pull_id})
    row = app.get(PREFIX + "/tokens").html.find(id=re.compile(r"token-\d+"))
    last = [td.get_text(" ", strip=True) for td in row.find_all("td")][10]
    assert "Why full: Auto: a Power Query client (its User-Agent is in full_pull_user_agents)" in last
    assert f"client {agent}" in last and "2 pulls are in progress" in last
