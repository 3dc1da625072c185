"""Signing in (admin-ui.md 2): Moodle's hashes and peppers, site admins only, lockout with its
alert (monitoring.md 3.2 #7c), the cookie, CSRF, expiry and the gate of every page."""

from __future__ import annotations

import json

import pytest
from passlib.hash import sha512_crypt

from local_alx_report_api import settings as plugin_settings
from local_alx_report_api.classes import session, signin
from local_alx_report_api.classes.signin import password_matches
from local_alx_report_api.task import check_alerts_task
from moodle_core.generator import moodle_password_hash
from moodle_core.moodle import Moodle
from tests.admin import PREFIX, SECRET, admin_app, sesskey, sign_in, submit
from tests.sites import NOW, new_site
from tests.tasks import task_env


@pytest.fixture
def site(db):
    b = new_site(db)
    b.user("manager", "Mona", "Manager", "mona@example.com", userid=50, password_hash=moodle_password_hash("Mona#1", 4))
    b.user("sha", "Sha", "Admin", "sha@example.com", userid=51, password_hash=sha512_crypt.using(rounds=1000).hash("Sha#1pepper2"))
    b.flush()
    db.execute("UPDATE {t:config} SET value = ? WHERE name = ?", ("2,51", "siteadmins"))
    return b


def logs(engine):
    return engine.rows("SELECT userid, errorcode, additional_data, ip_address FROM {t:local_alx_api_logs} "
                       "WHERE endpoint = 'admin:login' ORDER BY id")


def test_a_site_admin_signs_in_and_lands_on_next(db, site):
    app = admin_app(db, NOW)
    resp = sign_in(app, "  ADMIN ", next_path=PREFIX + "/health.json")
    assert resp.status_int == 303 and resp.location.endswith(PREFIX + "/health.json")
    cookie = app.cookies[session.COOKIE]
    payload = session.unsign(SECRET, cookie)
    assert payload["uid"] == 2 and payload["signin"] == NOW
    page = app.get(PREFIX + "/")
    assert "Admin User" in page.text and "Sign out" in page.text
    assert logs(db) == [(2, None, '{"username":"ADMIN"}', "127.0.0.1")]


def test_cookie_attributes(db, site):
    app = admin_app(db, NOW)
    resp = sign_in(app)
    header = [v for k, v in resp.headerlist if k.lower() == "set-cookie" and v.startswith("alx_admin=")][0]
    assert "HttpOnly" in header and "SameSite=Lax" in header and f"Path={PREFIX}/" in header
    assert "Secure" not in header
    https = admin_app(db, NOW, site__wwwroot="https://moodle.example.com")
    https.extra_environ.update({"wsgi.url_scheme": "https", "HTTPS": "on"})
    header = [v for k, v in sign_in(https).headerlist if k.lower() == "set-cookie" and v.startswith("alx_admin=")][0]
    assert "Secure" in header


@pytest.mark.parametrize("username,password", [("admin", "wrong"), ("nobody", "x"), ("manager", "Mona#1"),
                                               ("guest", "")])
def test_invalid_logins_get_one_message(db, site, username, password):
    app = admin_app(db, NOW)
    resp = sign_in(app, username, password)
    assert resp.status_int == 200 and "Invalid login, please try again" in resp.text
    assert session.COOKIE not in app.cookies
    assert logs(db)[-1][1] == "invalidlogin"


def test_suspended_or_non_manual_admin_cannot_sign_in(db, site):
    db.execute("UPDATE {t:user} SET auth = 'ldap' WHERE id = 2")
    assert "Invalid login" in sign_in(admin_app(db, NOW)).text
    db.execute("UPDATE {t:user} SET auth = 'manual', suspended = 1 WHERE id = 2")
    assert "Invalid login" in sign_in(admin_app(db, NOW)).text


def test_password_hashes_and_peppers():
    bcrypt_hash = moodle_password_hash("secret" + "pep1", 4)
    assert bcrypt_hash.startswith("$2y$")
    assert password_matches(bcrypt_hash, "secret", ["pep0", "pep1"])
    assert not password_matches(bcrypt_hash, "secret", [])
    assert password_matches(moodle_password_hash("plain", 4), "plain", ["pep0"])
    assert password_matches(sha512_crypt.using(rounds=1000).hash("x"), "x", [])
    assert not password_matches("5f4dcc3b5aa765d61d8327deb882cf99", "password", [])  # legacy md5
    assert not password_matches("", "", [])
    assert not password_matches("$6$broken", "x", [])
    long = "é" * 50  # 100 bytes: PHP compares the first 72
    assert password_matches(moodle_password_hash(long[:36], 4), long, [])


def test_sha512_admin_with_pepper_from_settings(db, site):
    app = admin_app(db, NOW, admin__password_peppers="pepper2, pepper1")
    assert sign_in(app, "sha", "Sha#1").status_int == 303


def test_lockout_after_five_failures_raises_alert_7c_and_ends(db, site):
    app = admin_app(db, lambda: clock[0])
    clock = [NOW]
    for i in range(5):
        clock[0] = NOW + i * 60
        assert "Invalid login" in sign_in(app, "admin", "bad").text
    alert = db.rows("SELECT alert_type, severity, subject, message, occurrences FROM {t:local_alx_api_alerts}")
    assert alert == [("security", "high", "admin_login:admin",
                      "Control center sign-in locked for admin after 5 failed attempts from 127.0.0.1", 1)]
    clock[0] = NOW + 5 * 60
    resp = sign_in(app, "admin", "Admin#12345")  # the right password is not even checked
    assert "Too many failed sign-in attempts. Try again in 10 minutes." in resp.text
    assert session.COOKIE not in app.cookies
    assert logs(db)[-1][:2] == (2, "loginlocked")
    # another address is not locked out
    other = admin_app(db, lambda: clock[0])
    other.extra_environ["REMOTE_ADDR"] = "10.0.0.9"
    assert sign_in(other).status_int == 303
    # the check resolves the alert only when the lockout has ended
    env = task_env(db, clock[0])
    check_alerts_task.execute(env)
    assert db.scalar("SELECT resolved FROM {t:local_alx_api_alerts}") == 0
    clock[0] = NOW + 15 * 60 + 1
    check_alerts_task.execute(task_env(db, clock[0]))
    assert db.scalar("SELECT resolved FROM {t:local_alx_api_alerts}") == 1
    assert sign_in(app).status_int == 303


def test_signed_out_requests(db, site):
    app = admin_app(db, NOW)
    resp = app.get(PREFIX + "/?sort=name", expect_errors=True)
    assert resp.status_int == 303 and resp.location.endswith("/login?next=/local/alx_report_api/%3Fsort%3Dname")
    assert app.post(PREFIX + "/logout", {"sesskey": "x"}, expect_errors=True).status_int == 403
    resp = app.get(PREFIX + "/stats.json", expect_errors=True)
    assert resp.status_int == 401 and resp.json == {"error": "login required"}
    assert app.get(PREFIX + "/health.json", expect_errors=True).status_int == 401


def test_open_redirect_is_refused(db, site):
    app = admin_app(db, NOW)
    assert sign_in(app, next_path="https://evil.example.com/").location.endswith(PREFIX + "/")
    app = admin_app(db, NOW)
    assert sign_in(app, next_path=PREFIX + "//evil.example.com").location.endswith(PREFIX + "/")


def test_login_form_needs_its_prelogin_sesskey(db, site):
    app = admin_app(db, NOW)
    resp = app.post(PREFIX + "/login", {"username": "admin", "password": "Admin#12345", "sesskey": "forged"},
                    expect_errors=True)
    assert resp.status_int == 403 and "This form has expired" in resp.text
    assert logs(db) == []


def test_csrf_and_logout(db, site):
    app = admin_app(db, NOW)
    sign_in(app)
    assert app.post(PREFIX + "/logout", {}, expect_errors=True).status_int == 403
    assert app.post(PREFIX + "/logout", {"sesskey": "wrong"}, expect_errors=True).status_int == 403
    assert session.COOKIE in app.cookies
    resp = submit(app, "/logout")
    assert resp.status_int == 303 and resp.location.endswith("/login")
    assert session.COOKIE not in app.cookies


def test_expiry_renewal_and_recheck(db, site):
    clock = [NOW]
    app = admin_app(db, lambda: clock[0])
    sign_in(app)
    clock[0] = NOW + 119 * 60
    assert app.get(PREFIX + "/").status_int == 200  # renews the last activity
    assert session.unsign(SECRET, app.cookies[session.COOKIE])["last"] == clock[0]
    clock[0] += 119 * 60
    assert app.get(PREFIX + "/").status_int == 200
    clock[0] += 121 * 60
    assert app.get(PREFIX + "/", expect_errors=True).status_int == 303
    clock[0] = NOW
    sign_in(app)
    db.execute("UPDATE {t:config} SET value = '51' WHERE name = 'siteadmins'")
    assert app.get(PREFIX + "/", expect_errors=True).status_int == 303  # no longer an admin
    assert session.COOKIE not in app.cookies


def test_tampered_cookie_is_ignored(db, site):
    app = admin_app(db, NOW)
    sign_in(app)
    forged = session.sign("another-secret-of-at-least-32-characters!!", {"uid": 2, "signin": NOW, "last": NOW,
                                                                         "sesskey": sesskey(app)})
    app.cookiejar.clear()
    app.set_cookie(session.COOKIE, forged)
    assert app.get(PREFIX + "/", expect_errors=True).status_int == 303
    # signed right, but without the server's marks (session generation, password): refused too
    app.set_cookie(session.COOKIE, session.sign(SECRET, {"uid": 2, "signin": NOW, "last": NOW, "sesskey": "k"}))
    assert app.get(PREFIX + "/", expect_errors=True).status_int == 303
    app.set_cookie(session.COOKIE, session.sign(SECRET, signin.new_session(db, SETTINGS, signin.site_admin(
        db, Moodle(db), 2), NOW)))
    assert app.get(PREFIX + "/").status_int == 200


SETTINGS = plugin_settings.load(None, {"ALX_ADMIN_SECRET_KEY": SECRET})


def test_sign_out_ends_the_session_on_the_server(db, site):
    """Issue 14 (6): a copy of the cookie taken before sign-out no longer works, for GET or POST."""
    app = admin_app(db, NOW)
    sign_in(app)
    stolen, key = app.cookies[session.COOKIE], sesskey(app)
    assert submit(app, "/logout").status_int == 303
    thief = admin_app(db, NOW)
    thief.set_cookie(session.COOKIE, stolen)
    assert thief.get(PREFIX + "/", expect_errors=True).status_int == 303
    assert thief.post(PREFIX + "/cache/purge-expired", {"sesskey": key}, expect_errors=True).status_int == 403
    assert sign_in(app).status_int == 303 and app.get(PREFIX + "/").status_int == 200  # a new sign-in works


def test_a_password_change_ends_the_session(db, site):
    app = admin_app(db, NOW)
    sign_in(app)
    db.execute("UPDATE {t:user} SET password = ? WHERE id = 2", (moodle_password_hash("New#12345", 4),))
    assert app.get(PREFIX + "/", expect_errors=True).status_int == 303


def test_a_session_ends_after_its_absolute_lifetime_however_active(db, site):
    clock = {"now": NOW}
    app = admin_app(db, lambda: clock["now"], admin__login_max_hours="3")
    sign_in(app)
    for _ in range(3):  # active every hour: never idle (login_minutes 120)
        clock["now"] += 3600
        assert app.get(PREFIX + "/").status_int == 200
    clock["now"] += 60
    assert app.get(PREFIX + "/", expect_errors=True).status_int == 303


def test_disabled_and_unconfigured(db, site):
    assert admin_app(db, NOW, admin__enabled="false").get(PREFIX + "/login", expect_errors=True).status_int == 404
    resp = admin_app(db, NOW, admin__secret_key="").get(PREFIX + "/", expect_errors=True)
    assert resp.status_int == 503 and resp.text == "The control center is not configured: set [admin] secret_key."


def test_overview_stats_and_health_json(db, site):
    app = admin_app(db, NOW)
    sign_in(app)
    page = app.get(PREFIX + "/")
    for text in ("Total records", "API calls today", "System health", "Open alerts", "Health checks",
                 "Scheduled tasks", "sync_reporting_data_task"):
        assert text in page.text
    stats = app.get(PREFIX + "/stats.json").json
    assert set(stats) == {"total_records", "total_companies", "api_calls_today", "health", "open_alerts",
                          "last_sync"}
    assert stats["open_alerts"] == {"low": 0, "medium": 0, "high": 0, "critical": 0}
    health = app.get(PREFIX + "/health.json").json
    assert set(health) == {"overall", "score", "checks", "checked"} and health["checked"] == NOW
    assert {c["name"] for c in health["checks"]} >= {"database", "tables", "cron", "data"}
    json.dumps(health)


def test_a_stale_cookie_does_not_undo_a_new_sign_in(db, site):
    app = admin_app(db, NOW)
    app.set_cookie(session.COOKIE, "garbage.\u00e9")  # not even ASCII: ignored, never a 500
    assert app.get(PREFIX + "/login").status_int == 200
    assert sign_in(app).status_int == 303
    assert session.unsign(SECRET, app.cookies[session.COOKIE])["uid"] == 2
    assert app.get(PREFIX + "/").status_int == 200


def test_oversized_forms_and_headers_on_every_answer(db, site):
    app = admin_app(db, NOW)
    resp = app.get(PREFIX + "/", expect_errors=True)
    assert resp.status_int == 303 and resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Frame-Options"] == "DENY"
    sign_in(app)
    resp = submit(app, "/logout", padding="x" * (300 * 1024))
    assert resp.status_int == 413 and session.COOKIE in app.cookies


def test_a_poll_does_not_take_the_next_pages_notice(db, site):
    app = admin_app(db, NOW)
    sign_in(app)
    submit(app, "/cache/purge-expired")
    app.get(PREFIX + "/stats.json")
    assert "Deleted 0" in app.get(PREFIX + "/cache").text


def test_prefix_without_slash(db, site):
    assert admin_app(db, NOW).get(PREFIX, expect_errors=True).location.endswith(PREFIX + "/")
    assert admin_app(db, NOW, admin__enabled="false").get(PREFIX, expect_errors=True).status_int == 404
    assert admin_app(db, NOW, admin__secret_key="").get(PREFIX + "/static/controlcenter.css",
                                                        expect_errors=True).status_int == 503


def test_concurrent_tries_get_exactly_the_allowed_password_checks(db, site):
    """Issue 14 (10): 40 simultaneous wrong passwords for one username from one IP: exactly
    login_max_failures (5) are checked, the rest are refused as locked."""
    import threading

    from local_alx_report_api import settings as plugin_settings
    from local_alx_report_api.classes import signin
    from moodle_core import engines
    from moodle_core.moodle import Moodle

    settings = plugin_settings.load(None, {"ALX_ADMIN_SECRET_KEY": SECRET})
    connections = [engines.connect(db.url, db.prefix) for _ in range(8)]
    barrier, answers = threading.Barrier(40), []

    def attempt(i):
        engine = connections[i % 8]
        barrier.wait()
        answers.append(signin.attempt(engine, Moodle(engine), settings, username="admin", password="wrong",
                                      ip="10.1.1.1", user_agent="t", now=NOW)[1])

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c in connections:
        c.db.close()
    codes = [code for _, code, _, _ in logs(db)]
    assert len(answers) == 40 and codes.count("invalidlogin") == 5 and codes.count("loginlocked") == 35


@pytest.mark.parametrize("username", ["nobody", "manager", "admin"])
def test_every_attempt_checks_a_password(db, site, username, monkeypatch):
    """Unknown users and users who are not site admins cost a password check like an admin does,
    so the answer time does not tell them apart (bcrypt counted at the library's edge)."""
    import bcrypt

    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda *a: calls.append(1) or real(*a))
    assert sign_in(admin_app(db, NOW), username, "wrong").status_int == 200
    assert len(calls) == 1


def test_nul_in_forms_and_filters_is_an_ordinary_wrong_value(db, site):
    app = admin_app(db, NOW)
    assert sign_in(app, "ad\x00min", "x").status_int == 200  # no such user
    assert sign_in(app).status_int == 303
    assert app.get(PREFIX + "/logs?user=a%00b&function=x%00").status_int == 200
    form = app.get(PREFIX + "/tokens").forms["create-token"]
    form["username"] = "ad\x00min"
    resp = form.submit(expect_errors=True)
    assert resp.status_int == 200 and "There is no user with the username" in resp.text


def test_an_unknown_user_costs_a_hash_like_a_site_admins(db, site):
    """The dummy hash checked for unknown usernames has the scheme and cost of a site admin's."""
    moodle = Moodle(db)
    db.execute("UPDATE {t:config} SET value = '51' WHERE name = 'siteadmins'")
    db.execute("UPDATE {t:user} SET password = ? WHERE id = 51", (sha512_crypt.using(rounds=12000).hash("x"),))
    assert signin._dummy_hash(db, moodle).startswith("$6$rounds=12000$")
    db.execute("UPDATE {t:config} SET value = '2' WHERE name = 'siteadmins'")
    assert signin._dummy_hash(db, moodle)[3:7] == db.scalar("SELECT password FROM {t:user} WHERE id = 2")[3:7]


def test_unicode_digits_and_huge_numbers_in_page_addresses_are_not_errors(db, site):
    app = admin_app(db, NOW)
    sign_in(app)
    for path in ("/alerts?page=%C2%B2", "/alerts?page=" + "9" * 5000, "/alerts?id=%C2%B2", "/jobs/%C2%B2",
                 "/jobs/" + "1" * 30):
        assert app.get(PREFIX + path, expect_errors=True).status_int in (200, 404), path
