"""What an administrator does in the control center, in a real browser against the demo site:
create a token and call the API with it, resolve an alert."""

from __future__ import annotations

import json

from tests.browser.conftest import shot, sign_in


def test_create_a_token_and_call_the_api_with_it(demo, page):
    username, _, _ = demo.managers[-1]
    sign_in(page, demo)
    page.goto(demo.url("/local/alx_report_api/tokens"))
    assert "Give every client its own token" in page.content()
    page.fill("#username", username)
    page.fill("#name", "Power BI (browser test)")
    page.click("#create-token button[type=submit]")
    token = page.locator("#new-token").inner_text().strip()
    assert len(token) == 32
    assert "Copy this token now. It will not be shown again." in page.content()
    shot(page, "token-created")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("button[data-copy=new-token]")
    assert page.evaluate("navigator.clipboard.readText()") == token
    rows = json.loads(demo.api(token, limit=5))
    assert isinstance(rows, list) and rows, rows
    page.reload()
    assert token not in page.content()  # shown once


def test_a_lockout_alert_is_raised_and_resolved(demo, page, browser):
    intruder = browser.new_context()
    other = intruder.new_page()
    for _ in range(5):
        sign_in(other, demo, "intruder", "wrong")
        assert "Invalid login, please try again" in other.content()
    sign_in(other, demo, "intruder", "wrong")
    assert "Too many failed sign-in attempts." in other.content()
    intruder.close()
    sign_in(page, demo)
    page.goto(demo.url("/local/alx_report_api/alerts"))
    row = page.locator("tr", has_text="admin_login:intruder")
    assert "Control center sign-in locked for intruder after 5 failed attempts" in row.inner_text()
    shot(page, "alerts")
    page.fill("#note", "Checked: a test")
    row.locator("input[type=checkbox]").check()
    page.click("#resolve-form button.primary")
    page.wait_for_load_state()
    assert page.locator("tr", has_text="admin_login:intruder").count() == 0  # open alerts only
    page.goto(demo.url("/local/alx_report_api/alerts?status=resolved"))
    assert "admin_login:intruder" in page.content()


def test_switching_a_field_off_changes_the_next_api_response(demo, page):
    companyid = next(c for _, c, token in demo.managers if token == demo.token)
    assert "email" in json.loads(demo.api(limit=1))[0]
    sign_in(page, demo)
    page.goto(demo.url(f"/local/alx_report_api/companies/{companyid}"))
    shot(page, "company")
    page.uncheck("#settings input[name=field_email]")
    page.click("#settings button.primary")
    page.wait_for_load_state()
    assert "Settings saved." in page.content()
    assert "email" not in json.loads(demo.api(limit=1))[0]
    page.check("#settings input[name=field_email]")
    page.click("#settings button.primary")
    page.wait_for_load_state()
    assert "email" in json.loads(demo.api(limit=1))[0]
