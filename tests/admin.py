"""Signing in to the control center through webtest, as a browser does: GET the form, POST it."""

from __future__ import annotations

from local_alx_report_api.classes import session
from tests.webapp import make_app

SECRET = "test-secret-key-0123456789abcdefghijklmnop"
PREFIX = "/local/alx_report_api"
ADMIN_PASSWORD = "Admin#12345"  # tests.sites.new_site's admin (user 2, bcrypt $2y$)


def admin_app(engine, now, **settings):
    settings.setdefault("admin__secret_key", SECRET)
    return make_app(engine, now, **settings)


def sign_in(app, username: str = "admin", password: str = ADMIN_PASSWORD, next_path: str | None = None):
    page = app.get(PREFIX + "/login" + (f"?next={next_path}" if next_path else ""))
    form = page.forms[0]
    form["username"], form["password"] = username, password
    return form.submit(expect_errors=True)


def sesskey(app) -> str:
    """The CSRF value of the app's sign-in cookie."""
    return session.unsign(SECRET, app.cookies[session.COOKIE])["sesskey"]


def submit(app, path: str, **fields):
    """POST a control-center form with the right sesskey (what the page's form would send)."""
    return app.post(PREFIX + path, {"sesskey": sesskey(app), **fields}, expect_errors=True)
