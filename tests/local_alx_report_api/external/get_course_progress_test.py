"""`local_alx_report_api_get_course_progress` end to end through the WSGI app, on every engine."""

import json
import xml.etree.ElementTree as ET

import pytest

from local_alx_report_api.classes.populate import populate
from moodle_core.moodle import Moodle
from tests.sites import NOW, api_token, company_setting, new_site, worked_examples
from tests.webapp import make_app, post, progress

EXAMPLE_A = (b'{"userid":101,"firstname":"Sarah","lastname":"Connor","email":"sarah@example.com","courseid":12,'
             b'"coursename":"Safety Training","timecompleted":"","timecompleted_unix":0,"timestarted":'
             b'"2024-01-15 09:00:00","timestarted_unix":1705309200,"percentage":66.67,"status":"in_progress"}')


@pytest.fixture
def acme(db):
    """The worked-example site of course-progress.md 14 (company 5), populated, with a token."""
    b = new_site(db)
    worked_examples(b)
    token = api_token(b, 5)
    populate(db, Moodle(db).companies(), batch_size=100, report_roles=["student"], now=lambda: NOW, lock_wait=5)
    return db, b, token


def last_log(db):
    cols = ["userid", "companyid", "company_shortname", "endpoint", "record_count", "error_message", "errorcode",
            "counted", "sync_mode", "data_source", "cache_status", "response_bytes", "additional_data",
            "response_time_ms"]
    row = db.execute(f"SELECT {', '.join(cols)} FROM {{t:local_alx_api_logs}} ORDER BY id DESC LIMIT 1").fetchone()
    out = dict(zip(cols, row, strict=True))
    out["additional_data"] = json.loads(out["additional_data"] or "{}")
    return out


def test_worked_example_a_bytes_and_key_order(acme):
    db, _, token = acme
    app = make_app(db, NOW)
    body = progress(app, token, limit=10).body
    elements = json.loads(body)
    assert [(e["userid"], e["courseid"]) for e in elements] == [(101, 12), (102, 12), (103, 12), (104, 13),
                                                                 (105, 12), (106, 12)]
    assert body.startswith(b"[" + EXAMPLE_A + b",")
    assert elements[1]["percentage"] == 100 and b'"percentage":100,' in body
    log = last_log(db)
    assert (log["record_count"], log["counted"], log["sync_mode"], log["data_source"]) == (6, 1, "full", "table")
    assert (log["companyid"], log["company_shortname"], log["response_bytes"]) == (5, "acme", len(body))
    assert log["additional_data"]["limit"] == 10 and log["additional_data"]["offset"] == 0
    assert log["response_time_ms"] > 0


def test_dates_follow_the_site_time_zone(acme):
    db, _, token = acme
    company_setting(db, 5, "sync_mode", 2)  # every pull full: each call shows every row
    oslo = {e["userid"]: e for e in json.loads(progress(make_app(db, NOW, site__timezone="Europe/Oslo"), token).body)}
    assert (oslo[102]["timecompleted"], oslo[102]["timestarted"]) == ("2024-01-15 15:30:00", "2024-01-15 10:00:00")
    assert oslo[102]["timecompleted_unix"] == 1705329000
    db.execute("UPDATE {t:config} SET value = 'Europe/Oslo' WHERE name = 'timezone'")
    moodle_zone = {e["userid"]: e for e in json.loads(progress(make_app(db, NOW), token).body)}
    assert moodle_zone[102]["timecompleted"] == "2024-01-15 15:30:00"


@pytest.mark.parametrize("params, code, message", [
    ({"limit": 0}, "invalidlimit", "Requested limit is too small. Minimum allowed records per request is 1. "
                                   "Please increase your limit parameter and try again."),
    ({"limit": -5}, "invalidlimit", None),
    ({"limit": 1001}, "limittoolarge", "Requested limit is too large. Maximum allowed records per request is 1000. "
                                       "Please reduce your limit parameter and try again."),
    ({"offset": -1}, "invalidoffset", "Requested offset is invalid. The offset must be 0 or greater. Please "
                                      "correct your offset parameter and try again."),
])
def test_limit_and_offset_errors_are_not_counted(acme, params, code, message):
    db, _, token = acme
    doc = json.loads(progress(make_app(db, NOW), token, **params).body)
    assert doc["errorcode"] == code and doc["exception"] == "moodle_exception"
    if message:
        assert doc["message"] == message
    assert last_log(db)["counted"] == 0 and last_log(db)["errorcode"] == code


def test_debuginfo_only_in_debug_mode(acme):
    db, _, token = acme
    assert "debuginfo" not in json.loads(progress(make_app(db, NOW), token, limit=5000).body)
    doc = json.loads(progress(make_app(db, NOW, site__debug="true"), token, limit=5000).body)
    assert doc["debuginfo"] == "Requested limit (5000) exceeds maximum allowed (1000) records per request."


def test_get_is_refused_after_admission_unless_allowed(acme):
    db, _, token = acme
    app = make_app(db, NOW)
    response = app.get("/webservice/rest/server.php", {"wstoken": token, "wsfunction":
                       "local_alx_report_api_get_course_progress", "moodlewsrestformat": "json"})
    assert response.body == (b'{"exception":"moodle_exception","errorcode":"invalidrequestmethod","message":'
                             b'"Only POST method is allowed for security reasons"}')
    assert last_log(db)["counted"] == 1
    allowed = make_app(db, NOW, local_alx_report_api__allow_get_method="true")
    assert len(json.loads(allowed.get("/webservice/rest/server.php", {
        "wstoken": token, "wsfunction": "local_alx_report_api_get_course_progress",
        "moodlewsrestformat": "json"}).body)) == 6


def test_user_without_company(acme):
    db, b, _ = acme
    token = "b" * 32
    b.token(2, b.next_ids["serviceid"], token)  # the site admin belongs to no company
    b.flush()
    body = progress(make_app(db, NOW), token).body
    assert body == (b'{"exception":"moodle_exception","errorcode":"nocompanyassociation","message":'
                    b'"User is not associated with any company"}')
    assert (last_log(db)["company_shortname"], last_log(db)["counted"]) == ("unknown", 1)


def test_field_switches_shape_json_and_xml(acme):
    db, _, token = acme
    company_setting(db, 5, "field_email", 0)
    company_setting(db, 5, "field_timecompleted_unix", 0)
    app = make_app(db, NOW)
    first = json.loads(progress(app, token, limit=1).body)[0]
    assert list(first) == ["userid", "firstname", "lastname", "courseid", "coursename", "timecompleted",
                           "timestarted", "timestarted_unix", "percentage", "status"]
    xml = progress(app, token, fmt=None, limit=1).body.decode()
    assert '<KEY name="email"><VALUE null="null"/>\n</KEY>' in xml
    assert '<KEY name="timecompleted_unix"><VALUE null="null"/>\n</KEY>' in xml
    ET.fromstring(xml.split("\n", 1)[1])
    for field in ("userid", "firstname", "lastname", "courseid", "coursename", "timecompleted", "timestarted",
                  "timestarted_unix", "percentage", "status"):
        company_setting(db, 5, f"field_{field}", 0)
    assert progress(app, token, limit=3).body == b"[[],[],[]]"
    assert progress(app, token, fmt=None, limit=1).body.decode().count('<VALUE null="null"/>') == 12


def test_course_switch_and_hidden_course_apply_on_the_next_request(acme):
    db, _, token = acme
    app = make_app(db, NOW)
    company_setting(db, 5, "course_12", 0)
    assert [e["courseid"] for e in json.loads(progress(app, token).body)] == [13]
    db.execute("UPDATE {t:course} SET visible = 0 WHERE id = 13")
    assert progress(app, token).body == b"[]"


def test_pages_cover_every_row_once_in_key_order(acme):
    db, _, token = acme
    app = make_app(db, NOW)
    seen = []
    for offset in range(0, 8, 2):
        seen += [(e["userid"], e["courseid"]) for e in json.loads(progress(app, token, limit=2, offset=offset).body)]
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 6


def test_never_filled_company_is_answered_live_with_the_same_bytes(acme):
    db, _, token = acme
    app = make_app(db, NOW)
    from_table = progress(app, token, limit=4, offset=1).body
    db.execute("DELETE FROM {t:local_alx_api_reporting} WHERE companyid = 5")
    assert progress(app, token, limit=4, offset=1).body == from_table
    log = last_log(db)
    assert (log["data_source"], log["cache_status"], log["additional_data"]["fallback_reason"]) == \
        ("live", "off", "never_filled")


def test_values_are_cleaned_one_by_one(acme):
    db, _, token = acme
    db.execute("UPDATE {t:local_alx_api_reporting} SET coursename = 'Intro to <b>HTML</b>', email = 'jörg@example.com' "
               "WHERE userid = 101")
    first = json.loads(progress(make_app(db, NOW), token, limit=1).body)[0]
    assert (first["coursename"], first["email"]) == ("Intro to HTML", "")
    assert last_log(db)["additional_data"]["cleaned_values"] == 2


def test_rate_limit_example_h(acme):
    db, _, token = acme
    app = make_app(db, NOW, local_alx_report_api__rate_limit="3")
    for remaining in ("2", "1", "0"):
        response = progress(app, token, limit=1)
        assert response.headers["X-RateLimit-Remaining"] == remaining
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Reset"] == "1732579200"
    for _ in range(2):
        rejected = progress(app, token, limit=1)
        assert rejected.body == b'{"exception":"moodle_exception","errorcode":"ratelimitexceeded","message":' \
                                b'"Daily rate limit exceeded"}'
        assert (rejected.headers["X-RateLimit-Remaining"], rejected.headers["Retry-After"]) == ("0", "32400")
        log = last_log(db)
        assert log["counted"] == 0 and log["additional_data"]["rate_count"] == 3
    # site info is never counted but carries the headers
    info = post(app, wstoken=token, wsfunction="core_webservice_get_site_info", moodlewsrestformat="json")
    assert info.headers["X-RateLimit-Remaining"] == "0" and "Retry-After" not in info.headers
    # the next day (midnight in the site time zone) starts again
    assert progress(make_app(db, 1732579200, local_alx_report_api__rate_limit="3"), token).headers[
        "X-RateLimit-Remaining"] == "2"


def test_company_rate_limit_overrides_and_zero_is_unlimited(acme):
    db, _, token = acme
    company_setting(db, 5, "sync_mode", 2)
    company_setting(db, 5, "rate_limit", 1)
    app = make_app(db, NOW, local_alx_report_api__rate_limit="100")
    assert progress(app, token).headers["X-RateLimit-Limit"] == "1"
    assert json.loads(progress(app, token).body)["errorcode"] == "ratelimitexceeded"
    db.execute("UPDATE {t:local_alx_api_settings} SET setting_value = 0 WHERE setting_name = 'rate_limit'")
    response = progress(app, token)
    assert response.status_int == 200 and "X-RateLimit-Limit" not in response.headers
    assert len(json.loads(response.body)) == 6
