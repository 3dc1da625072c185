"""The REST endpoint end to end on every engine (protocol.md 1–8, 10–14, 16; course-progress.md
12–13): enablement, request reading, format, token/user/capability/function checks in order,
parameter errors, Bearer tokens, client IP, rate-limit headers and the log row."""

import hashlib
import json
from urllib.parse import urlencode

import pytest

from tests.sites import generated_site
from tests.webapp import ENDPOINT, FUNCTION, make_app

NOW = 1760040000  # 2025-10-09 20:00:00 UTC; the generated site's time zone is UTC
RESET = 1760054400  # the next midnight
SITE_INFO = "core_webservice_get_site_info"
COMMON = [("cache-control", "private, must-revalidate, pre-check=0, post-check=0, max-age=0"),
          ("expires", "Thu, 01 Jan 1970 00:00:00 GMT"), ("pragma", "no-cache"), ("accept-ranges", "none"),
          ("access-control-allow-origin", "*")]
JSON_HEADERS = [("content-type", "application/json"), *COMMON]
XML_HEADERS = [("content-type", "application/xml; charset=utf-8"),
               ("content-disposition", 'inline; filename="response.xml"'), *COMMON]
SERVER_HEADERS = {"content-length", "date", "server", "connection", "transfer-encoding"}
INVALIDTOKEN = ("moodle_exception", "invalidtoken", "Invalid token - token not found")
ACCESS = ("webservice_access_exception", "accessexception", "Access control exception")
INVALIDPARAM = ("invalid_parameter_exception", "invalidparameter", "Invalid parameter value detected")
NO_FUNCTION = ("dml_missing_record_exception", "invalidrecord",
               "Can't find data record in database table external_functions.")
NO_USER = ("dml_missing_record_exception", "invalidrecord", "Can't find data record in database table user.")
INVALIDTOKEN_XML = (b'<?xml version="1.0" encoding="UTF-8" ?>\n<EXCEPTION class="moodle_exception">\n'
                    b"<ERRORCODE>invalidtoken</ERRORCODE>\n<MESSAGE>Invalid token - token not found</MESSAGE>\n"
                    b"</EXCEPTION>\n")
NO_CAPABILITY = "You are not allowed to use the rest protocol (missing capability: webservice/rest:use)"
LOG_COLUMNS = ("userid", "companyid", "company_shortname", "endpoint", "record_count", "error_message", "errorcode",
               "timeaccessed", "ip_address", "user_agent", "token_hash", "counted", "response_bytes",
               "additional_data")


@pytest.fixture
def site(db):
    return generated_site(db, NOW, companies=2, users=20, seed=11)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def app_for(db, debug=False, **settings):
    return make_app(db, NOW, site__debug=str(debug).lower(), **settings)


def send(app, method="POST", query="", headers=None, ip="127.0.0.1", **params):
    """One request; form parameters go in a urlencoded body (for methods that may carry one)."""
    url = ENDPOINT + (f"?{query}" if query else "")
    kw = {"headers": headers or {}, "extra_environ": {"REMOTE_ADDR": ip}, "expect_errors": True}
    if params:
        return getattr(app, method.lower())(url, urlencode(params), content_type="application/x-www-form-urlencoded",
                                            **kw)
    return getattr(app, method.lower())(url, **kw)


def ws(app, token=None, function=FUNCTION, fmt="json", *, headers=None, ip="127.0.0.1", **params):
    """POST a call; `None` leaves wstoken / wsfunction / moodlewsrestformat out."""
    reserved = {"wstoken": token, "wsfunction": function, "moodlewsrestformat": fmt}
    return send(app, headers=headers, ip=ip, **{k: v for k, v in reserved.items() if v is not None}, **params)


def headers(resp) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in resp.headerlist if k.lower() not in SERVER_HEADERS]


def rate(remaining, limit=100):
    return [("x-ratelimit-limit", str(limit)), ("x-ratelimit-remaining", str(remaining)),
            ("x-ratelimit-reset", str(RESET))]


def error_body(err, debuginfo=None, fmt="json") -> bytes:
    """The error document of protocol.md 10/11, written independently of the product."""
    exception, code, message = err
    if fmt == "json":
        doc = {"exception": exception, "errorcode": code, "message": message}
        doc.update({"debuginfo": debuginfo} if debuginfo is not None else {})
        return json.dumps(doc, separators=(",", ":")).replace("/", "\\/").encode()

    def esc(text):
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    debug = f"<DEBUGINFO>{esc(debuginfo)}</DEBUGINFO>\n" if debuginfo is not None else ""
    return (f'<?xml version="1.0" encoding="UTF-8" ?>\n<EXCEPTION class="{exception}">\n<ERRORCODE>{code}'
            f"</ERRORCODE>\n<MESSAGE>{esc(message)}</MESSAGE>\n{debug}</EXCEPTION>\n").encode()


def assert_error(resp, err, debuginfo=None, fmt="json", extra_headers=()):
    assert resp.status_int == 200
    assert resp.body == error_body(err, debuginfo, fmt)
    assert headers(resp) == (JSON_HEADERS if fmt == "json" else XML_HEADERS) + list(extra_headers)


def site_info_ok(resp) -> bool:
    return resp.status_int == 200 and resp.body.startswith(b'{"sitename":')


def logs(db) -> list[dict]:
    return [dict(zip(LOG_COLUMNS, row, strict=True)) for row in
            db.rows(f"SELECT {', '.join(LOG_COLUMNS)} FROM {{t:local_alx_api_logs}} ORDER BY id")]


def extra(row) -> dict:
    return json.loads(row["additional_data"])


def userid(db, token) -> int:
    return db.scalar("SELECT userid FROM {t:external_tokens} WHERE token = ?", (token,))


def add_token(db, token, user, **columns) -> int:
    service = db.scalar("SELECT id FROM {t:external_services} WHERE shortname = 'alx_report_api_custom'")
    row = {"token": token, "tokentype": 0, "userid": user, "externalserviceid": service, "contextid": 1,
           "creatorid": 2, "validuntil": 0, "timecreated": NOW - 86400, **columns}
    return db.insert("external_tokens", row)


def set_config(db, name, value):
    db.execute("DELETE FROM {t:config} WHERE name = ?", (name,))
    if value is not None:
        db.insert("config", {"name": name, "value": value})


# -- 1. endpoint, methods, enablement -----------------------------------------------------------
@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("enable, protocols, open_", [
    ("1", "rest", True), ("1", " soap , rest ", True), ("0", "rest", False), ("", "rest", False),
    (None, "rest", False), ("1", "soap", False), ("1", "restful,soap", False), ("1", None, False)])
def test_enablement(db, site, enable, protocols, open_):
    set_config(db, "enablewebservices", enable)
    set_config(db, "webserviceprotocols", protocols)
    resp = ws(app_for(db), site.tokens[0][0], SITE_INFO)
    if open_:
        assert site_info_ok(resp)
        return
    assert resp.status_int == 403 and resp.body == b""
    assert headers(resp) == [("content-type", "text/html; charset=UTF-8")]
    [row] = logs(db)
    assert (row["errorcode"], row["userid"], row["counted"]) == ("restdisabled", 0, 0)


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("path", [ENDPOINT + "/", ENDPOINT + "/more", "/webservice/rest/", "/server.php", "/"])
def test_other_paths_are_not_found(db, site, path):
    resp = app_for(db).get(path + "?wstoken=x", expect_errors=True)
    assert (resp.status_int, resp.body, resp.content_type) == (404, b"Not Found", "text/plain")
    assert logs(db) == []


def test_head_is_get_without_a_body(db, site):
    app = app_for(db)
    query = urlencode({"wstoken": site.tokens[0][0], "wsfunction": SITE_INFO, "moodlewsrestformat": "json"})
    got, head = send(app, "GET", query), send(app, "HEAD", query)
    assert site_info_ok(got) and head.status_int == 200 and head.body == b""
    assert headers(head) == headers(got) == JSON_HEADERS + rate(100)
    assert [extra(r)["request_method"] for r in logs(db)] == ["GET", "HEAD"]


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_get_and_options_has_no_preflight(db, site, method):
    app, token = app_for(db), site.tokens[0][0]
    resp = send(app, method, headers={"Origin": "http://x", "Access-Control-Request-Method": "POST"})
    assert resp.status_int == 200 and resp.body == INVALIDTOKEN_XML and headers(resp) == XML_HEADERS
    query = urlencode({"wstoken": token, "wsfunction": SITE_INFO, "moodlewsrestformat": "json"})
    assert site_info_ok(send(app, method, query))
    if method != "OPTIONS":
        assert send(app, method, wstoken=token, wsfunction=SITE_INFO).body == INVALIDTOKEN_XML


# -- 2. reading the request, 3. format ------------------------------------------------------------
def test_query_and_body_merge_and_the_body_wins(db, site):
    app, token = app_for(db, debug=True), site.tokens[0][0]
    assert site_info_ok(send(app, query=f"wstoken=bad&moodlewsrestformat=json&wsfunction={SITE_INFO}", wstoken=token))
    assert_error(send(app, query=f"wstoken={token}&moodlewsrestformat=json", wstoken="bad"), INVALIDTOKEN)
    query = f"wstoken={token}&moodlewsrestformat=json&wsfunction={FUNCTION}"
    assert send(app, query=query + "&limit[]=1", limit="1").body.startswith(b'[{"userid":')  # whole value
    assert_error(send(app, query=query + "&limit=1", **{"limit[x]": "1"}), INVALIDPARAM,
                 "limit => Invalid parameter value detected: Scalar type expected, array or object received.",
                 extra_headers=rate(99))


def test_a_name_in_query_and_body_takes_the_whole_body_value(db, site):
    query = f"wstoken={site.tokens[0][0]}&moodlewsrestformat=json&wsfunction={SITE_INFO}&serviceshortnames[0]=not+ok"
    assert site_info_ok(send(app_for(db), query=query, **{"serviceshortnames[1]": "ok"}))  # not a deep merge


def test_multipart_body_is_read(db, site):
    fields = [("wstoken", site.tokens[0][0]), ("wsfunction", SITE_INFO), ("moodlewsrestformat", "json")]
    resp = app_for(db).post(ENDPOINT, params=fields, content_type="multipart/form-data", expect_errors=True)
    assert resp.request.content_type == "multipart/form-data" and site_info_ok(resp)


def test_json_body_is_ignored(db, site):
    body = json.dumps({"wstoken": site.tokens[0][0], "wsfunction": SITE_INFO, "moodlewsrestformat": "json"})
    resp = app_for(db).post(ENDPOINT, body, content_type="application/json", expect_errors=True)
    assert resp.body == INVALIDTOKEN_XML and headers(resp) == XML_HEADERS


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("fmt", ["JSON", "Json", "", None, "yaml", " json", "xml"])
def test_every_format_but_json_is_xml(db, site, fmt):
    app = app_for(db)
    assert_error(ws(app, "nope", fmt=fmt), INVALIDTOKEN, fmt="xml")
    resp = ws(app, site.tokens[0][0], fmt=fmt, limit=1)
    assert resp.body.startswith(b'<?xml version="1.0" encoding="UTF-8" ?>\n<RESPONSE>\n<MULTIPLE>\n<SINGLE>\n'
                                b'<KEY name="userid"><VALUE>')
    assert headers(resp) == XML_HEADERS + rate(99)


# -- 4.1–4.3 tokens ---------------------------------------------------------------------------
@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("case", ["unknown", "empty", "absent", "tokentype1", "tokentype2"])
def test_tokens_that_are_not_found(db, site, case):
    token = {"unknown": "0123456789abcdef0123456789abcdef", "empty": "", "absent": None}.get(case, site.tokens[0][0])
    if case.startswith("tokentype"):
        db.execute("UPDATE {t:external_tokens} SET tokentype = ? WHERE token = ?", (int(case[-1]), token))
    resp = ws(app_for(db, debug=True), token, FUNCTION, limit="abc")
    assert_error(resp, INVALIDTOKEN)  # no debuginfo, no rate-limit headers
    [row] = logs(db)
    assert row["token_hash"] == (sha(token) if token else None)
    assert (row["userid"], row["companyid"], row["company_shortname"], row["endpoint"], row["counted"]) == (
        0, 0, "unknown", FUNCTION, 0)
    assert (row["errorcode"], row["error_message"], extra(row)["auth"]) == (
        "invalidtoken", INVALIDTOKEN[2], "wstoken" if token else "none")


def test_token_equality_is_the_databases_and_the_hash_is_of_the_stored_token(db, site):
    token = site.tokens[0][0]
    resp = ws(app_for(db), token.upper(), SITE_INFO)
    [row] = logs(db)
    if db.kind == "mariadb":  # case-insensitive collation, as in Moodle
        assert site_info_ok(resp) and row["token_hash"] == sha(token)
    else:
        assert_error(resp, INVALIDTOKEN)
        assert row["token_hash"] == sha(token.upper())


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("validuntil, expired", [(0, False), (None, False), (NOW, False), (NOW - 1, True)])
def test_validuntil(db, site, validuntil, expired):
    token = site.tokens[0][0]
    db.execute("UPDATE {t:external_tokens} SET validuntil = ? WHERE token = ?", (validuntil, token))
    add_token(db, token, userid(db, token), validuntil=0)  # a later duplicate row: deleted with the first
    add_token(db, token, userid(db, token), tokentype=2)
    app = app_for(db, debug=True)
    if not expired:
        assert site_info_ok(ws(app, token, SITE_INFO))
        return
    assert_error(ws(app, token, SITE_INFO), ACCESS, "Invalid token - token expired - check validuntil time for the token")
    assert db.rows("SELECT tokentype FROM {t:external_tokens} WHERE token = ?", (token,)) == [(2,)]
    assert_error(ws(app, token, SITE_INFO), INVALIDTOKEN)


@pytest.mark.parametrize("debug", [False, True])
def test_token_linked_to_a_browser_login(db, site, debug):
    token = site.tokens[0][0]
    db.execute("UPDATE {t:external_tokens} SET sid = 'abc123' WHERE token = ?", (token,))
    resp = ws(app_for(db, debug=debug), token, SITE_INFO)
    assert_error(resp, ACCESS, "Invalid token - token linked to a browser login" if debug else None)
    assert db.scalar("SELECT COUNT(*) FROM {t:external_tokens} WHERE token = ?", (token,)) == 1


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("entries, ip, allowed", [
    ("192.168.1.10", "192.168.1.10", True), ("192.168.1.10", "192.168.1.11", False),
    ("192.168.1.0/24", "192.168.1.200", True), ("192.168.1.0/24", "192.168.2.1", False),
    ("192.168.1.10-20", "192.168.1.20", True), ("192.168.1.10-20", "192.168.1.21", False),
    ("192.168.1.10-20", "192.168.1.9", False), ("192.168.", "192.168.7.7", True), ("192.168", "192.168.7.7", True),
    ("192.168", "192.169.7.7", False), ("192.16", "192.168.7.7", False),
    (" 10.0.0.1 , , 192.168.1.0/24 ", "192.168.1.5", True), ("10.0.0.1,", "10.0.0.2", False),
    ("2001:db8::1", "2001:db8::1", True), ("2001:db8::/32", "2001:db8:1::5", True),
    ("2001:db8::/32", "2001:db9::1", False), ("2001:db8::1-ff", "2001:db8::ff", True),
    ("2001:db8::1-ff", "2001:db8::100", False)])
def test_token_iprestriction(db, site, entries, ip, allowed):
    token = site.tokens[0][0]
    db.execute("UPDATE {t:external_tokens} SET iprestriction = ? WHERE token = ?", (entries, token))
    resp = ws(app_for(db, debug=True), token, SITE_INFO, ip=ip)
    if allowed:
        assert site_info_ok(resp)
        return
    assert_error(resp, ACCESS, f"Invalid service - IP:{ip} is not supported - check this allowed user")
    assert db.scalar("SELECT lastaccess FROM {t:external_tokens} WHERE token = ?", (token,)) is None


@pytest.mark.parametrize("debug", [False, True])
def test_token_user_missing(db, site, debug):
    token = site.tokens[0][0]
    db.execute("DELETE FROM {t:user} WHERE id = ?", (userid(db, token),))
    resp = ws(app_for(db, debug=debug), token, SITE_INFO)
    if not debug:
        assert_error(resp, NO_USER)
        return
    doc = json.loads(resp.body)
    assert [doc[k] for k in ("exception", "errorcode", "message")] == list(NO_USER)
    assert doc["debuginfo"].startswith("SELECT ") and "\n[array (\n  0 => " in doc["debuginfo"]  # real newlines
    assert doc["debuginfo"].endswith(",\n)]")


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("before, after", [(None, NOW), (0, NOW), (NOW - 60, NOW), (NOW - 59, NOW - 59),
                                           (NOW + 500, NOW + 500)])
def test_lastaccess_updated_at_most_every_minute_even_if_a_later_step_fails(db, site, before, after):
    token = site.tokens[0][0]
    db.execute("UPDATE {t:external_tokens} SET lastaccess = ? WHERE token = ?", (before, token))
    assert_error(ws(app_for(db), token, "no_such_function"), NO_FUNCTION, extra_headers=rate(100))
    assert db.scalar("SELECT lastaccess FROM {t:external_tokens} WHERE token = ?", (token,)) == after


# -- 4.4 users, 4.5 capability -------------------------------------------------------------------
@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("change, code, word", [
    ("deleted = 1", "wsaccessuserdeleted", "deleted"), ("confirmed = 0", "wsaccessuserunconfirmed", "unconfirmed"),
    ("suspended = 1", "wsaccessusersuspended", "suspended"),
    ("auth = 'nologin'", "wsaccessusernologin", "nologin authentication"),
    ("deleted = 1, suspended = 1, auth = 'nologin'", "wsaccessuserdeleted", "deleted"),
    ("suspended = 1, confirmed = 0", "wsaccessuserunconfirmed", "unconfirmed"),
    ("suspended = 1, auth = 'nologin'", "wsaccessusersuspended", "suspended")])
def test_user_checks(db, site, change, code, word):
    token, username, _ = site.tokens[0]
    db.execute(f"UPDATE {{t:user}} SET {change} WHERE id = ?", (userid(db, token),))
    resp = ws(app_for(db, debug=True), token, "no_such_function")
    assert_error(resp, ("moodle_exception", code, f"Refused web service access for {word} username: {username}"))
    [row] = logs(db)
    assert (row["userid"], row["errorcode"], row["token_hash"]) == (userid(db, token), code, sha(token))


def test_maintenance_mode_lets_only_maintenance_access_through(db, site):
    token = site.tokens[0][0]
    set_config(db, "maintenance_enabled", "1")
    add_token(db, "admintoken", 2)
    db.execute("UPDATE {t:user} SET suspended = 1 WHERE id = ?", (userid(db, token),))
    app = app_for(db, debug=True)
    assert_error(ws(app, token, SITE_INFO), (
        "moodle_exception", "sitemaintenance", "The site is undergoing maintenance and is currently not available"))
    assert site_info_ok(ws(app, "admintoken", SITE_INFO))
    db.execute(grant(13, 1, 1, "moodle/site:maintenanceaccess"))
    assert json.loads(ws(app, token, SITE_INFO).body)["errorcode"] == "wsaccessusersuspended"


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("last, timecreated, expiration, days, auth, expired", [
    (NOW - 30 * 86400 - 1, NOW, "1", "30", "manual", True), (NOW - 30 * 86400, 0, "1", "30", "manual", False),
    (None, NOW - 30 * 86400 - 1, "1", "30", "manual", True), (None, NOW - 86400, "1", "30", "manual", False),
    (NOW - 99 * 86400, NOW, "0", "30", "manual", False), (NOW - 99 * 86400, NOW, "1", "0", "manual", False),
    (NOW - 99 * 86400, NOW, "1", "30", "email", False), (NOW - 99 * 86400, NOW, None, None, "manual", False)])
def test_password_expiry(db, site, last, timecreated, expiration, days, auth, expired):
    token, username, _ = site.tokens[0]
    uid = userid(db, token)
    db.execute("UPDATE {t:user} SET timecreated = ?, auth = ? WHERE id = ?", (timecreated, auth, uid))
    for name, value in (("expiration", expiration), ("expirationtime", days)):
        if value is not None:
            db.insert("config_plugins", {"plugin": "auth_manual", "name": name, "value": value})
    if last is not None:
        db.insert("user_preferences", {"userid": uid, "name": "auth_manual_passwordupdatetime", "value": str(last)})
    resp = ws(app_for(db, debug=True), token, SITE_INFO)
    if not expired:
        assert site_info_ok(resp)
        return
    assert_error(resp, ("moodle_exception", "wsaccessuserexpired",
                        f"Refused web service access for password expired username: {username}"))


UNASSIGN = "DELETE FROM {t:role_assignments} WHERE userid = ? AND roleid = 13"
TOKEN_IN_CONTEXT_2 = "UPDATE {t:external_tokens} SET contextid = 2 WHERE userid = ?"  # path /1/2
ASSIGN_IN_A_COURSE = ("INSERT INTO {t:role_assignments} (roleid, contextid, userid, timemodified) "
                      "SELECT 13, MAX(id), ?, 0 FROM {t:context} WHERE contextlevel = 50")  # not on /1/2


def grant(roleid, contextid, permission, capability="webservice/rest:use"):
    return (f"INSERT INTO {{t:role_capabilities}} (contextid, roleid, capability, permission, timemodified, "
            f"modifierid) VALUES ({contextid}, {roleid}, '{capability}', {permission}, 0, 2)")


def run(db, statements, uid):
    for sql in statements:
        db.execute(sql, (uid,) if "?" in sql else ())


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("statements, allowed", [
    ([UNASSIGN], False), ([grant(7, 1, -1000)], False), ([TOKEN_IN_CONTEXT_2, grant(13, 2, -1)], False),
    ([UNASSIGN, grant(7, 1, 1)], True),
    ([TOKEN_IN_CONTEXT_2, "DELETE FROM {t:role_capabilities} WHERE roleid = 13", grant(13, 2, 1)], True),
    ([UNASSIGN, TOKEN_IN_CONTEXT_2, ASSIGN_IN_A_COURSE], False)])
def test_rest_use_capability(db, site, statements, allowed):
    token = site.tokens[0][0]
    run(db, statements, userid(db, token))
    resp = ws(app_for(db, debug=True), token, SITE_INFO)
    if allowed:
        assert site_info_ok(resp)
    else:  # token and user checks passed: rate-limit headers are sent
        assert_error(resp, ACCESS, NO_CAPABILITY, extra_headers=rate(100))


def test_site_admin_always_holds_the_capability(db, site):
    add_token(db, "admintoken", 2)
    db.execute(grant(7, 1, -1000))
    set_config(db, "siteadmins", "5, 2")
    assert site_info_ok(ws(app_for(db), "admintoken", SITE_INFO))


# -- 5. functions ------------------------------------------------------------------------------
@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("function", [None, ""])
def test_missing_function_name(db, site, debug, function):
    resp = ws(app_for(db, debug=debug), site.tokens[0][0], function)
    assert_error(resp, INVALIDPARAM, "Missing function name" if debug else None, extra_headers=rate(100))
    assert logs(db)[0]["endpoint"] == ""


@pytest.mark.parametrize("debug", [False, True])
def test_unknown_function(db, site, debug):
    resp = ws(app_for(db, debug=debug), site.tokens[0][0], "bad_name", "xml")
    info = "SELECT * FROM {external_functions} WHERE name = ?\n[array (\n  0 => 'bad_name',\n)]"
    assert_error(resp, NO_FUNCTION, info if debug else None, "xml", rate(100))


@pytest.mark.parametrize("case", ["not_implemented", "row_missing"])
def test_functions_the_service_cannot_run_are_unknown(db, site, case):
    name = "core_user_get_users" if case == "not_implemented" else SITE_INFO
    if case == "not_implemented":
        db.insert("external_functions", {"name": name, "classname": "x", "methodname": "y", "classpath": "z",
                                         "component": "moodle", "capabilities": ""})
        db.execute("INSERT INTO {t:external_services_functions} (externalserviceid, functionname) "
                   "SELECT id, ? FROM {t:external_services}", (name,))
    else:
        db.execute("DELETE FROM {t:external_functions} WHERE name = ?", (name,))
    assert_error(ws(app_for(db), site.tokens[0][0], name), NO_FUNCTION, extra_headers=rate(100))


RESTRICT = "UPDATE {t:external_services} SET restrictedusers = 1"


def _service_user(validuntil="NULL", ip="NULL"):
    return (f"INSERT INTO {{t:external_services_users}} (externalserviceid, userid, iprestriction, validuntil, "
            f"timecreated) SELECT id, ?, {ip}, {validuntil}, 0 FROM {{t:external_services}}")


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("statements, allowed", [
    ([], True),
    (["DELETE FROM {t:external_services_functions} WHERE functionname = 'core_webservice_get_site_info'"], False),
    (["UPDATE {t:external_services} SET enabled = 0"], False),
    ([RESTRICT], False), ([RESTRICT, _service_user()], True), ([RESTRICT, _service_user(NOW - 1)], True),
    ([RESTRICT, _service_user(NOW + 3600)], False),  # Moodle's inverted condition (open question 2)
    ([RESTRICT, _service_user(ip="'10.0.0.0/8'")], False), ([RESTRICT, _service_user(ip="'127.0.0.0/8'")], True),
    (["UPDATE {t:external_services} SET requiredcapability = 'moodle/site:config'"], False),
    (["UPDATE {t:external_services} SET requiredcapability = 'webservice/rest:use'"], True)])
def test_function_access_through_the_service(db, site, statements, allowed):
    token = site.tokens[0][0]
    run(db, statements, userid(db, token))
    resp = ws(app_for(db, debug=True), token, SITE_INFO)
    if allowed:
        assert site_info_ok(resp)
        return
    assert headers(resp) == JSON_HEADERS + rate(100)
    doc = json.loads(resp.body)
    assert [doc[k] for k in ("exception", "errorcode", "message")] == list(ACCESS)
    assert doc["debuginfo"].startswith(f"Access to the function {SITE_INFO}() is not allowed.")
    assert "1. The service linked to the user token does not contain the function." in doc["debuginfo"]


# -- 6. parameters, 8.1 debug, 4. order ------------------------------------------------------------
LIMIT_ABC = ("limit => Invalid parameter value detected: Invalid external api parameter: the value is \"abc\", "
             "the server was expecting \"int\" type")


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_parameter_error_with_debuginfo_only_in_debug_mode(db, site, debug, fmt):
    resp = ws(app_for(db, debug=debug), site.tokens[0][0], FUNCTION, fmt, limit="abc")
    assert_error(resp, INVALIDPARAM, LIMIT_ABC if debug else None, fmt, rate(100))
    if debug and fmt == "json":  # the example of section 10, byte for byte
        assert resp.body == (b'{"exception":"invalid_parameter_exception","errorcode":"invalidparameter","message":'
                             b'"Invalid parameter value detected","debuginfo":"limit => Invalid parameter value '
                             b'detected: Invalid external api parameter: the value is \\"abc\\", the server was '
                             b'expecting \\"int\\" type"}')
    [row] = logs(db)
    assert (row["counted"], row["errorcode"], row["error_message"]) == (0, "invalidparameter", INVALIDPARAM[2])
    assert extra(row)["limit"] == "abc"


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("function, params, debuginfo", [
    (FUNCTION, {"limit": "+5"}, LIMIT_ABC.replace("abc", "+5")),
    (FUNCTION, {"offset": "-0"}, LIMIT_ABC.replace("abc", "-0").replace("limit", "offset")),
    (FUNCTION, {"limit": "9223372036854775808"}, LIMIT_ABC.replace("abc", "9223372036854775808")),
    (FUNCTION, {"limit[]": "5"}, "limit => Invalid parameter value detected: Scalar type expected, array or object "
                                 "received."),
    (FUNCTION, {"foo": "1", "limit": "5", "bar": "2"}, "Unexpected keys (foo, bar) detected in parameter array."),
    (SITE_INFO, {"serviceshortnames[0]": "ok", "x": "1"}, "Unexpected keys (x) detected in parameter array.")])
def test_parameter_errors(db, site, function, params, debuginfo):
    assert_error(ws(app_for(db, debug=True), site.tokens[0][0], function, **params), INVALIDPARAM, debuginfo,
                 extra_headers=rate(100))


def test_reserved_parameters_are_accepted_and_ignored(db, site):
    settings = {f"moodlewssetting{k}": "1" for k in ("raw", "fileurl", "filter", "lang", "timezone")}
    app, token = app_for(db), site.tokens[0][0]
    assert ws(app, token, FUNCTION, limit="1", **settings).body.startswith(b'[{"userid":')
    assert site_info_ok(ws(app, token, SITE_INFO, **settings, **{"serviceshortnames[]": "a-b_1"}))


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("token_ok, setup, function, params, expected", [
    (False, None, "bad_name", {}, INVALIDTOKEN),
    (True, None, "bad_name", {"limit": "abc"}, NO_FUNCTION),
    (True, "UPDATE {t:user} SET suspended = 1 WHERE username LIKE '%api'", "bad_name", {}, "wsaccessusersuspended"),
    (True, "DELETE FROM {t:role_assignments} WHERE roleid = 13", "", {}, ACCESS),
    (True, "UPDATE {t:external_services} SET enabled = 0", FUNCTION, {"limit": "abc"}, ACCESS)])
def test_processing_order(db, site, token_ok, setup, function, params, expected):
    if setup:
        db.execute(setup)
    resp = ws(app_for(db), site.tokens[0][0] if token_ok else "nope", function, **params)
    code = expected if isinstance(expected, str) else expected[1]
    assert json.loads(resp.body)["errorcode"] == code


# -- 4.1 Bearer, 13 client IP ------------------------------------------------------------------------
@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("header, wstoken, allow, used, auth", [
    ("Bearer {t}", None, "true", True, "bearer"), ("bearer    {t}", None, "true", True, "bearer"),
    ("  BEARER {t}  ", None, "true", True, "bearer"), ("Bearer {t}", "", "true", True, "bearer"),
    ("Bearer {t}", "wrong", "true", False, "wstoken"), ("Basic {t}", None, "true", False, "none"),
    ("Bearer{t}", None, "true", False, "none"), ("Bearer {t}", None, "false", False, "none")])
def test_bearer_token(db, site, header, wstoken, allow, used, auth):
    token = site.tokens[0][0]
    app = app_for(db, webservice__allow_bearer_token=allow)
    resp = ws(app, wstoken, SITE_INFO, headers={"Authorization": header.format(t=token)})
    assert site_info_ok(resp) if used else resp.body == error_body(INVALIDTOKEN)
    [row] = logs(db)
    assert extra(row)["auth"] == auth
    assert row["token_hash"] == (sha(token) if used else sha(wstoken) if wstoken else None)


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("peer, forwarded, trusted, client", [
    ("10.1.2.3", "203.0.113.7", None, "10.1.2.3"), ("10.1.2.3", "203.0.113.7", "10.0.0.0/8", "203.0.113.7"),
    ("10.1.2.3", "198.51.100.1, 203.0.113.7, 10.9.9.9", "10.0.0.0/8", "203.0.113.7"),
    ("192.0.2.1", "203.0.113.7", "10.0.0.0/8", "192.0.2.1")])
def test_client_ip(db, site, peer, forwarded, trusted, client):
    token = site.tokens[0][0]
    db.execute("UPDATE {t:external_tokens} SET iprestriction = ? WHERE token = ?", (client, token))
    settings = {"webservice__trusted_proxies": trusted} if trusted else {}
    assert site_info_ok(ws(app_for(db, **settings), token, SITE_INFO, ip=peer, headers={"X-Forwarded-For": forwarded}))
    assert logs(db)[0]["ip_address"] == client


# -- 14. rate-limit headers, 16. log rows --------------------------------------------------------------
def test_rate_limit_headers(db, site):
    token, _, company = site.tokens[0]
    app = app_for(db)
    assert headers(ws(app, token, FUNCTION, limit="1")) == JSON_HEADERS + rate(99)
    assert headers(ws(app, token, SITE_INFO)) == JSON_HEADERS + rate(99)  # site info is not counted
    assert headers(ws(app, token, FUNCTION, limit="abc")) == JSON_HEADERS + rate(99)  # never admitted
    assert headers(ws(app, token, FUNCTION, limit="0")) == JSON_HEADERS + rate(99)  # invalidlimit: before admission
    assert headers(ws(app, "nope")) == JSON_HEADERS
    db.insert("local_alx_api_settings", {"companyid": company, "setting_name": "rate_limit", "setting_value": 2,
                                         "timecreated": NOW, "timemodified": NOW})
    assert headers(ws(app, token, FUNCTION, "xml", limit="1")) == XML_HEADERS + rate(0, 2)
    assert_error(ws(app, token, FUNCTION, limit="1"), ("moodle_exception", "ratelimitexceeded",
                                                       "Daily rate limit exceeded"),
                 extra_headers=[*rate(0, 2), ("retry-after", str(RESET - NOW))])
    assert [r["counted"] for r in logs(db)] == [1, 0, 0, 0, 0, 1, 0]


def test_no_rate_limit_headers_when_unlimited(db, site):
    app = app_for(db, local_alx_report_api__rate_limit="0")
    assert headers(ws(app, site.tokens[0][0], FUNCTION, limit="1")) == JSON_HEADERS
    assert headers(ws(app, site.tokens[0][0], SITE_INFO)) == JSON_HEADERS


def test_one_log_row_per_request(db, site):
    token, _, company = site.tokens[0]
    app, uid = app_for(db), userid(db, token)
    ok = ws(app, token, FUNCTION, limit="2", offset="0", headers={"User-Agent": "u" * 300})
    info = ws(app, token, SITE_INFO, "xml")
    bad = ws(app, "nope", "f" * 300, ip="192.0.2.9")
    wrong = ws(app, token, FUNCTION, limit="abc")
    rows = logs(db)
    assert len(rows) == 4
    assert {k: v for k, v in rows[0].items() if k != "additional_data"} == {
        "userid": uid, "companyid": company, "company_shortname": "companya", "endpoint": FUNCTION,
        "record_count": 2, "error_message": None, "errorcode": None, "timeaccessed": NOW, "ip_address": "127.0.0.1",
        "user_agent": "u" * 255, "token_hash": sha(token), "counted": 1, "response_bytes": len(ok.body)}
    assert {k: extra(rows[0])[k] for k in ("request_method", "format", "auth", "limit", "offset")} == {
        "request_method": "POST", "format": "json", "auth": "wstoken", "limit": 2, "offset": 0}
    assert (rows[1]["endpoint"], rows[1]["record_count"], rows[1]["counted"], rows[1]["response_bytes"]) == (
        SITE_INFO, 1, 0, len(info.body))
    assert extra(rows[1])["format"] == "xml" and "limit" not in extra(rows[1])
    assert {k: rows[2][k] for k in ("userid", "companyid", "endpoint", "ip_address", "user_agent", "token_hash",
                                    "errorcode", "response_bytes")} == {
        "userid": 0, "companyid": 0, "endpoint": "f" * 255, "ip_address": "192.0.2.9", "user_agent": "unknown",
        "token_hash": sha("nope"), "errorcode": "invalidtoken", "response_bytes": len(bad.body)}
    assert (rows[3]["userid"], rows[3]["record_count"], rows[3]["response_bytes"]) == (uid, 0, len(wrong.body))
    assert extra(rows[3])["limit"] == "abc"
