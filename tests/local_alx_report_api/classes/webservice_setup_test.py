"""`install` prepares Moodle's side (protocol.md section 9)."""

import pytest

from local_alx_report_api.classes import webservice_setup
from local_alx_report_api.classes.installer import InstallError, Report
from tests.sites import NOW, new_site


def links(db, shortname):
    return sorted(r[0] for r in db.rows(
        "SELECT f.functionname FROM {t:external_services_functions} f JOIN {t:external_services} s "
        "ON s.id = f.externalserviceid WHERE s.shortname = ?", (shortname,)))


def prepare(db, enable=False):
    report = Report()
    webservice_setup.prepare(db, NOW, enable, report)
    return report.lines


def test_fresh_site_gets_function_service_and_links(db):
    new_site(db)
    db.execute("DELETE FROM {t:config} WHERE name IN ('enablewebservices', 'webserviceprotocols')")
    lines = prepare(db)
    assert lines == [
        "Added function local_alx_report_api_get_course_progress to external_functions",
        "Created service alx_report_api_custom (ALX Report API Custom Service)",
        "Linked local_alx_report_api_get_course_progress to service alx_report_api_custom",
        "Linked core_webservice_get_site_info to service alx_report_api_custom",
        webservice_setup.DISABLED, webservice_setup.NO_REST]
    row = db.execute("SELECT enabled, restrictedusers, component, requiredcapability, downloadfiles, uploadfiles, "
                     "timecreated FROM {t:external_services} WHERE shortname = 'alx_report_api_custom'").fetchone()
    assert tuple(row) == (1, 0, None, None, 0, 0, NOW)
    assert links(db, "alx_report_api_custom") == ["core_webservice_get_site_info",
                                                  "local_alx_report_api_get_course_progress"]
    assert db.scalar("SELECT value FROM {t:config} WHERE name = 'enablewebservices'") is None
    assert prepare(db) == [webservice_setup.DISABLED, webservice_setup.NO_REST]  # idempotent, still reporting


def test_enable_webservices_switches_moodle_on_and_keeps_other_protocols(db):
    new_site(db)
    db.execute("UPDATE {t:config} SET value = '0' WHERE name = 'enablewebservices'")
    db.execute("UPDATE {t:config} SET value = 'soap' WHERE name = 'webserviceprotocols'")
    lines = prepare(db, enable=True)
    assert "Enabled web services in Moodle (config enablewebservices = 1)." in lines
    assert "Enabled the REST protocol in Moodle (added rest to config webserviceprotocols)." in lines
    assert db.scalar("SELECT value FROM {t:config} WHERE name = 'webserviceprotocols'") == "soap,rest"
    assert db.scalar("SELECT value FROM {t:config} WHERE name = 'enablewebservices'") == "1"


def test_existing_and_legacy_services_keep_settings_and_get_links(db):
    b = new_site(db)
    b.add("external_services", id=None, name="Legacy", enabled=0, requiredcapability=None, restrictedusers=1,
          component="local_alx_report_api", timecreated=1, timemodified=1, shortname="alx_report_api",
          downloadfiles=0, uploadfiles=0)
    b.finish()  # resets id sequences after the builder's explicit ids
    lines = prepare(db)
    assert ("Service alx_report_api belongs to component local_alx_report_api: Moodle deletes it when that "
            "component is upgraded or uninstalled.") in lines
    assert links(db, "alx_report_api") == ["core_webservice_get_site_info", "local_alx_report_api_get_course_progress"]
    assert tuple(db.execute("SELECT enabled, restrictedusers FROM {t:external_services} WHERE shortname = "
                            "'alx_report_api'").fetchone()) == (0, 1)


def test_a_service_holding_our_name_stops_install_before_any_change(db):
    b = new_site(db)
    b.add("external_services", id=None, name="ALX Report API Custom Service", enabled=1, requiredcapability=None,
          restrictedusers=0, component=None, timecreated=1, timemodified=1, shortname="something_else",
          downloadfiles=0, uploadfiles=0)
    b.flush()
    with pytest.raises(InstallError, match="shortname something_else"):
        prepare(db)
    assert db.scalar("SELECT COUNT(*) FROM {t:external_functions}") == 0
