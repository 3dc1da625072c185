"""Issue 14: hostile input at /webservice/rest/server.php. Every answer is Moodle-shaped (HTTP
200 with an error document, or the 403 of a disabled site), every request has its log row, and
parameter parsing is linear and bounded like PHP (max_input_vars, max_input_nesting_level)."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import webtest

from tests.sites import generated_site
from tests.webapp import ENDPOINT, FUNCTION, make_app
from webservice.phpparams import InputLimitError, parse_pairs, php_parameters

NOW = 1760040000
TOO_MANY = "Input variables exceeded 1000. To increase the limit change max_input_vars in php.ini."
TOO_DEEP = ("Input variable nesting level exceeded 64. To increase the limit change max_input_nesting_level "
            "in php.ini.")


@pytest.fixture
def site(db):
    return generated_site(db, NOW, companies=1, users=10, seed=3)


def app_for(db, **settings):
    return make_app(db, NOW, site__debug="true", **settings)


def body_of(resp) -> dict:
    assert resp.status_int == 200 and resp.content_type == "application/json", resp
    return json.loads(resp.body)


def last_log(db) -> dict:
    row = db.execute("SELECT endpoint, errorcode, error_message, additional_data FROM {t:local_alx_api_logs} "
                     "ORDER BY id DESC LIMIT 1").fetchone()
    return {"endpoint": row[0], "errorcode": row[1], "message": row[2], **json.loads(row[3] or "{}")}


def raw_post(app, body: str, query: str = "moodlewsrestformat=json", **kw):
    return app.post(f"{ENDPOINT}?{query}", body, content_type="application/x-www-form-urlencoded",
                    expect_errors=True, **kw)


# -- 1. linear, bounded parsing ---------------------------------------------------------------------
def test_parsing_is_linear_in_the_pairs():
    """100,000 appends build the list PHP would (each pair costs its own length, not the array's)."""
    pairs = parse_pairs("&".join(["a[]=1"] * 100_000 + ["a[7]=x", "a[]=y", "b[-5]=1", "b[]=2", "c[007]=1", "c[]=2"]),
                        max_vars=200_000)
    params = php_parameters(pairs)
    assert len(params["a"]) == 100_001 and params["a"]["7"] == "x" and params["a"]["100000"] == "y"
    assert params["b"] == {"-5": "1", "-4": "2"}  # PHP 8.3: the next key after -5 is -4
    assert params["c"] == {"007": "1", "0": "2"}  # "007" is a string key in PHP


def test_more_variables_than_max_input_vars_are_refused_fast(db, site):
    app = app_for(db)
    resp = raw_post(app, "&".join(["a[]=1"] * 8000) + f"&wstoken={site.tokens[0][0]}&wsfunction={FUNCTION}")
    assert body_of(resp) == {"exception": "invalid_parameter_exception", "errorcode": "invalidparameter",
                             "message": "Invalid parameter value detected", "debuginfo": TOO_MANY}
    assert last_log(db)["errorcode"] == "invalidparameter"
    resp = app.get(f"{ENDPOINT}?" + "&".join(["a[]=1"] * 1001), expect_errors=True)  # XML: no format was found
    assert b"<ERRORCODE>invalidparameter</ERRORCODE>" in resp.body
    # the limit is a setting, and counts each source on its own (as PHP counts $_GET and $_POST)
    app = app_for(db, webservice__max_input_vars="3000")
    resp = raw_post(app, "&".join(["x[]=1"] * 2500) + f"&wstoken={site.tokens[0][0]}&wsfunction={FUNCTION}",
                    query="&".join(["y=1"] * 5) + "&moodlewsrestformat=json")
    assert body_of(resp)["debuginfo"].startswith("Unexpected keys (")


@pytest.mark.parametrize("depth, code", [(64, "Unexpected keys (a) detected in parameter array."), (65, TOO_DEEP),
                                         (1000, TOO_DEEP)])
def test_nesting_is_bounded(db, site, depth, code):
    app = app_for(db)
    name = "a" + "[x]" * depth
    resp = raw_post(app, urlencode({name: "1", "wstoken": site.tokens[0][0], "wsfunction": FUNCTION}))
    assert body_of(resp)["debuginfo"] == code and last_log(db)["errorcode"] == "invalidparameter"


def test_a_name_without_closing_brackets_is_plain():
    params = php_parameters(parse_pairs("a[b[c=1&d[=2&[x]=3&" + "e" + "[" * 50_000 + "=4"))
    assert all(isinstance(v, str) for v in params.values()) and len(params) == 4


def test_limits_raise_before_any_decoding():
    with pytest.raises(InputLimitError, match="exceeded 2"):
        parse_pairs("a=1&b=2&c=3", max_vars=2)


# -- 3 and 9. nothing reaches Falcon's 500 ----------------------------------------------------------
@pytest.mark.parametrize("params, debuginfo", [
    ({"a[" + "1" * 5000 + "]": "1"}, "Unexpected keys (a) detected in parameter array."),
    ({"limit": "9" * 5000}, 'limit => Invalid parameter value detected: Invalid external api parameter: the value '
                            'is "' + "9" * 5000 + '", the server was expecting "int" type'),
    ({"offset": "-" + "1" * 4400}, None)])
def test_huge_numbers_are_invalidparameter(db, site, params, debuginfo):
    resp = raw_post(app_for(db), urlencode({"wstoken": site.tokens[0][0], "wsfunction": FUNCTION, **params}))
    body = body_of(resp)
    assert body["errorcode"] == "invalidparameter"
    assert debuginfo is None or body["debuginfo"] == debuginfo


def test_multipart_names_that_are_not_utf8_and_malformed_bodies(db, site):
    app = app_for(db)
    token = site.tokens[0][0]
    parts = [b"--XyZ\r\nContent-Disposition: form-data; name=\"\xff\xfe\"\r\n\r\n1\r\n",
             f"--XyZ\r\nContent-Disposition: form-data; name=\"wstoken\"\r\n\r\n{token}\r\n".encode(),
             b"--XyZ\r\nContent-Disposition: form-data; name=\"wsfunction\"\r\n\r\ncore_webservice_get_site_info\r\n",
             b"--XyZ--\r\n"]
    resp = app.request(f"{ENDPOINT}?moodlewsrestformat=json", method="POST", body=b"".join(parts),
                       content_type="multipart/form-data; boundary=XyZ", expect_errors=True)
    assert body_of(resp)["username"]  # the bad part is skipped, the others read
    resp = app.request(f"{ENDPOINT}?moodlewsrestformat=json", method="POST", body=b"--XyZ\r\nContent-Dispo",
                       content_type="multipart/form-data; boundary=XyZ", expect_errors=True)
    assert body_of(resp)["errorcode"] == "invalidtoken"


def test_the_site_configuration_unreadable_is_a_moodle_error(db, site):
    app = app_for(db)  # config_cache_seconds 0: read on every request
    db.db.execute_sql(f"ALTER TABLE {db.table('config')} RENAME TO {db.quote(db.prefix + 'config_gone')}")
    try:
        resp = raw_post(app, urlencode({"wstoken": site.tokens[0][0], "wsfunction": FUNCTION}))
        assert body_of(resp)["errorcode"] in ("dmlreadexception", "dbconnectionfailed")
    finally:
        db.db.execute_sql(f"ALTER TABLE {db.quote(db.prefix + 'config_gone')} RENAME TO {db.table('config')}")
    assert last_log(db)["errorcode"] == body_of(resp)["errorcode"]


# -- 4 and 9. NUL bytes -------------------------------------------------------------------------------
def test_nul_in_logged_values_is_logged_escaped(db, site):
    app = app_for(db)
    for _ in range(3):
        resp = raw_post(app, urlencode({"wstoken": "abc\x00def", "wsfunction": "x\x00y"}))
        assert body_of(resp)["errorcode"] == "invalidtoken"
    rows = db.rows("SELECT endpoint, errorcode FROM {t:local_alx_api_logs}")
    assert rows == [("x\\x00y", "invalidtoken")] * 3
    resp = raw_post(app, urlencode({"wstoken": site.tokens[0][0], "wsfunction": FUNCTION + "\x00"}))
    assert body_of(resp)["errorcode"] == "invalidrecord" and last_log(db)["endpoint"] == FUNCTION + "\\x00"
    for _ in range(7):  # ten guesses in all from one address: the invalid-token alert
        raw_post(app, urlencode({"wstoken": "guess\x00", "wsfunction": FUNCTION}))
    assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_alerts} WHERE alert_type = 'security' AND "
                     "subject = 'ip:127.0.0.1'") == 1


# -- 8. any method is processed like GET; chunked bodies are read (tests/webservice/gunicorn_test.py) --
@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "FOO", "OPTIONS", "PUT", "DELETE", "CONNECT"])
def test_every_method_is_processed_like_get(db, site, method):
    app = webtest.TestApp(app_for(db).app, lint=False)
    resp = app.request(f"{ENDPOINT}?moodlewsrestformat=json&wsfunction=core_webservice_get_site_info"
                       f"&wstoken={site.tokens[0][0]}", method=method, expect_errors=True)
    assert resp.status_int == 200 and json.loads(resp.body)["username"]
    assert last_log(db)["request_method"] == method


def test_review_findings_stay_fixed(db, site):
    """Found by a second review: a NUL-heavy name still has its log row; a refused body that asks
    for JSON gets JSON; multipart bodies are read past Falcon's default of 64 parts."""
    app = app_for(db)
    resp = raw_post(app, urlencode({"wstoken": "x", "wsfunction": "\x00" * 100}))
    assert body_of(resp)["errorcode"] == "invalidtoken" and last_log(db)["endpoint"] == "\\x00" * 63 + "\\x0"
    resp = app.post(ENDPOINT, "&".join(["a[]=1"] * 1001) + "&moodlewsrestformat=json",
                    content_type="application/x-www-form-urlencoded", expect_errors=True)
    assert body_of(resp)["debuginfo"] == TOO_MANY
    fields = [(f"f{n}", "1") for n in range(70)] + [("wstoken", site.tokens[0][0]),
                                                      ("wsfunction", "core_webservice_get_site_info")]
    parts = b"".join(f"--B\r\nContent-Disposition: form-data; name=\"{n}\"\r\n\r\n{v}\r\n".encode() for n, v in fields)
    resp = app.request(f"{ENDPOINT}?moodlewsrestformat=json", method="POST", body=parts + b"--B--\r\n",
                       content_type="multipart/form-data; boundary=B", expect_errors=True)
    assert body_of(resp)["errorcode"] == "invalidparameter"  # the 70 fields are read: unexpected keys
    assert body_of(resp)["debuginfo"].startswith("Unexpected keys (f0, f1")
