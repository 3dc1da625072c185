"""Configuration page (admin-ui.md 3.10): every setting in effect with default, marker and source,
secrets masked, the site time zone and its source, Moodle's web-service status, the schema and
plugin versions; read only, admins only."""

from __future__ import annotations

import json

import pytest

from local_alx_report_api import settings as plugin_settings
from local_alx_report_api.classes import installer
from local_alx_report_api.db import services
from tests.admin import PREFIX, SECRET, admin_app, sign_in
from tests.sites import NOW, api_token, new_site, worked_examples
from tests.webapp import progress


@pytest.fixture
def site(db):
    b = new_site(db)
    worked_examples(b)
    api_token(b, 5)  # creates alx_report_api_custom with both functions
    return b


def page(db, **settings):
    app = admin_app(db, NOW, **settings)
    assert sign_in(app).status_int == 303
    return app, app.get(PREFIX + "/configuration")


def settings_table(resp) -> dict[tuple[str, str], list[str]]:
    rows = resp.html.find(id="settings").find("tbody").find_all("tr")
    cells = [[td.get_text(" ", strip=True) for td in row.find_all("td")] for row in rows]
    return {(c[0], c[1]): c[2:] for c in cells}


def checks(resp) -> dict[str, str]:
    rows = resp.html.find(id="moodle-checks").find("tbody").find_all("tr")
    return {row.find_all("td")[0].get_text(strip=True): row.find_all("td")[1].get_text(strip=True) for row in rows}


def text(resp) -> str:
    return " ".join(resp.html.get_text(" ").split())


def test_every_setting_in_effect_with_default_marker_and_source(db, site):
    app, resp = page(db, local_alx_report_api__rate_limit="1", mail__smtp_password="hunter2",
                     database__url="postgresql://alx:s3cret@db.example.com/moodle", site__debug="false",
                     local_alx_report_api__report_roles="student, learner")
    shown = settings_table(resp)
    assert len(shown) == len(plugin_settings.DECLARATIONS)
    assert shown[("local_alx_report_api", "rate_limit")] == ["1", "100", "changed",
                                                             "env ALX_LOCAL_ALX_REPORT_API_RATE_LIMIT"]
    assert shown[("local_alx_report_api", "max_records")] == ["1000", "1000", "", "default"]
    assert shown[("site", "debug")] == ["false", "false", "", "env ALX_SITE_DEBUG"]  # set, but to the default
    assert shown[("local_alx_report_api", "report_roles")] == ["student, learner", "student", "changed",
                                                               "env ALX_LOCAL_ALX_REPORT_API_REPORT_ROLES"]
    # secrets, and the password inside a URL, are masked
    assert shown[("mail", "smtp_password")][:3] == ["********", "empty", "changed"]
    assert shown[("admin", "secret_key")][:3] == ["********", "empty", "changed"]
    assert shown[("database", "url")][0] == "postgresql://alx:********@db.example.com/moodle"
    assert "hunter2" not in resp.text and SECRET not in resp.text and "s3cret" not in resp.text
    assert shown[("scheduled_tasks", "sync_reporting_data_task")][1] != ""
    # the values shown are the ones in effect: the limit of 1 refuses the second call
    assert isinstance(json.loads(progress(app, "a" * 32).body), list)
    assert json.loads(progress(app, "a" * 32).body)["errorcode"] == "ratelimitexceeded"


@pytest.mark.parametrize("moodle_zone, override, zone, source", [
    ("99", "", "UTC", "Moodle config (server time: UTC)"),
    ("Europe/London", "", "Europe/London", "Moodle config"),
    ("Europe/London", "America/New_York", "America/New_York",
     "settings.ini [site] timezone (env ALX_SITE_TIMEZONE)")])
def test_site_time_zone_and_its_source(db, moodle_zone, override, zone, source):
    new_site(db, timezone=moodle_zone)
    _, resp = page(db, site__timezone=override)
    assert f"Site time zone {zone} from {source}" in text(resp)


def test_moodle_status_badges(db, site):
    _, resp = page(db)
    names = ["Web services enabled", "REST protocol enabled", "Service alx_report_api_custom present",
             "Service alx_report_api_custom enabled", "local_alx_report_api_get_course_progress linked",
             "core_webservice_get_site_info linked"]
    assert checks(resp) == {name: "✅ ok" for name in names}
    db.execute("UPDATE {t:config} SET value = '0' WHERE name = 'enablewebservices'")
    db.execute("UPDATE {t:config} SET value = 'soap' WHERE name = 'webserviceprotocols'")
    db.execute("UPDATE {t:external_services} SET enabled = 0")
    db.execute("DELETE FROM {t:external_services_functions} WHERE functionname = 'core_webservice_get_site_info'")
    _, resp = page(db)
    assert checks(resp) == {**{name: "❌ error" for name in names}, names[2]: "✅ ok",
                            names[4]: "✅ ok"}
    assert "Web services are disabled in Moodle (config enablewebservices)" in text(resp)
    db.execute("DELETE FROM {t:external_services_functions}")
    db.execute("DELETE FROM {t:external_services}")
    _, resp = page(db)
    assert checks(resp)[names[2]] == "❌ error" and "The service is missing. Run alx-report-api install." in text(resp)


def test_schema_and_plugin_versions(db, site):
    _, resp = page(db)
    shown = text(resp)
    expected = installer.schema_version()
    assert f"Schema version {expected} ✅ ok up to date" in shown
    assert f"Plugin version {services.VERSION} local_alx_report_api release" in shown
    db.execute("DELETE FROM {t:local_alx_api_settings} WHERE setting_name = 'schema_version'")
    _, resp = page(db)
    assert f"Schema version not installed ❌ error expected {expected}" in text(resp)


def test_the_api_documentation_describes_every_argument(db, site):
    """Issue 12: `mode` is described where Moodle describes a function's parameters."""
    _, resp = page(db)
    section = resp.html.find(id="function-local_alx_report_api_get_course_progress")
    rows = {r.find_all("td")[0].get_text(strip=True): [td.get_text(" ", strip=True) for td in r.find_all("td")[1:]]
            for r in section.find("tbody").find_all("tr")}
    assert list(rows) == ["limit", "offset", "mode"]
    assert rows["mode"][:2] == ["PARAM_ALPHA", "optional, default auto"]
    assert "full (every row) or incremental" in rows["mode"][2]
    assert rows["limit"][:2] == ["PARAM_INT", "optional, default 100"]
    info = resp.html.find(id="function-core_webservice_get_site_info")
    assert "No arguments." in info.get_text() or info.find("tbody") is not None


def test_read_only_and_admins_only(db, site):
    app = admin_app(db, NOW)
    resp = app.get(PREFIX + "/configuration", expect_errors=True)
    assert resp.status_int == 303 and resp.location.endswith("/login?next=/local/alx_report_api/configuration")
    app, resp = page(db)
    assert resp.status_int == 200 and not [f for f in resp.forms.values() if "configuration" in (f.action or "")]
    assert app.post(PREFIX + "/configuration", {"sesskey": "x"}, expect_errors=True).status_int == 405
    db.execute("UPDATE {t:config} SET value = '' WHERE name = 'siteadmins'")
    assert app.get(PREFIX + "/configuration", expect_errors=True).status_int == 303
