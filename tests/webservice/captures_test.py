"""Replays the 46 raw responses of the original plugin on the IOMAD 4.4.5 reference site
(protocol.md section 17) in the modes "identical", "layout" and "differs".

Where a capture depends on the pull model (sync-and-cache.md 5), a comment says what our answer
is by that model: pages of one pull continue by key, a pull completes with its short page, and
Auto answers an offset-0 request incrementally only after a completed pull within the window."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest

from local_alx_report_api.classes import installer, webservice_setup
from local_alx_report_api.classes.populate import populate
from moodle_core.moodle import Moodle
from tests.oracle import expected_rows
from tests.webapp import ENDPOINT, FUNCTION, make_app, post, progress

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "iomad-4.4.5" / "original-responses"
NOW = 1795700000  # 2026-11-26 13:33:20 GMT: after the captures; "+1 year" tokens valid, the expired one expired
LONDON = ZoneInfo("Europe/London")
RESET = int(datetime.combine(datetime.fromtimestamp(NOW, LONDON).date() + timedelta(days=1), time(),
                             LONDON).timestamp())  # next midnight in the site time zone

ACME, GLOBEX, INITECH = "6b84b9954ee4488dbdd473f3a0c892fe", "5b975a61f627044445ee7e7fc5c40be5", "f14ce0ba34ddb357cf7640e92b409415"
INITECH0, EXPIRED = "d984f9b36d729b63fb40923eef63eca8", "d73d836b86444dd1ca302dc829e25e8d"
ADMIN_ALX, ADMIN_CORE = "e778c52b031d94b315fe2ac99f17d0e8", "955140674376026653d6222056637b9f"
UNKNOWN = "0123456789abcdef0123456789abcdef"
SITE_INFO = "core_webservice_get_site_info"

ALL_KEYS = ("userid", "firstname", "lastname", "email", "courseid", "coursename", "timecompleted",
            "timecompleted_unix", "timestarted", "timestarted_unix", "percentage", "status")
FIELDS = {1: ALL_KEYS, 2: tuple(k for k in ALL_KEYS if k not in ("email", "timecompleted_unix")), 3: ALL_KEYS}
XML_HEAD = b'<?xml version="1.0" encoding="UTF-8" ?>\n'
IGNORED = {"host", "date", "connection", "x-powered-by", "content-length", "server", "transfer-encoding"}
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after")
INVALIDLIMIT = (b'{"exception":"moodle_exception","errorcode":"invalidlimit","message":"Requested limit is too small. '
                b'Minimum allowed records per request is 1. Please increase your limit parameter and try again."}')
CAPTURED_KEY = b"09e19f006448d64911c5f064f85d6536"  # the admin's core_files key on the reference site
KEY_ROW = ("script", "userid", "instance", "iprestriction", "validuntil", "timecreated")


class Capture(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def capture(name: str) -> Capture:
    """Status line, CRLF headers, blank line; the body is the rest of the file, byte for byte."""
    head, body = (CAPTURES / name).read_bytes().split(b"\r\n\r\n", 1)
    status_line, *lines = head.decode("ascii").split("\r\n")
    return Capture(int(status_line.split()[1]), [tuple(line.split(": ", 1)) for line in lines], body)


def prepared(engine, *, populated: bool = True, emptied: int | None = None):
    """The app on the adopted reference site, reporting rows rebuilt with our formulas, and
    optionally one company's rows deleted so that the live fallback serves it."""
    installer.install(engine, NOW)
    if populated:
        state = populate(engine, Moodle(engine).companies(), batch_size=100, report_roles=["student"],
                         now=lambda: NOW, lock_wait=5)
        assert not state.errors
    if emptied is not None:
        engine.execute("DELETE FROM {t:local_alx_api_reporting} WHERE companyid = ?", (emptied,))
    return make_app(engine, NOW)


def check_headers(resp, name: str, remaining: int | None, limit: int = 100, retry: bool = False) -> None:
    """Section 12 headers as captured (names case-insensitive, values and order exact), nothing else
    but the section 14 headers, which must be exactly the expected ones."""
    cap = capture(name)
    assert resp.status_int == cap.status
    ours = {k.lower(): v for k, v in resp.headerlist if k.lower() not in IGNORED}
    rate = {k: ours.pop(k) for k in RATE_HEADERS if k in ours}
    theirs = {k.lower(): v for k, v in cap.headers if k.lower() not in IGNORED}
    assert list(ours.items()) == list(theirs.items())
    expected = {} if remaining is None else {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(remaining),
                                            "x-ratelimit-reset": str(RESET)}
    if retry:
        expected["retry-after"] = str(RESET - NOW)
    assert rate == expected


def check_identical(resp, name: str, remaining: int | None, **rate) -> None:
    check_headers(resp, name, remaining, **rate)
    assert resp.body == capture(name).body


def ordered(engine, companyid: int) -> list:
    return sorted(expected_rows(engine, companyid, NOW).items())


def php_json(value) -> bytes:
    """PHP json_encode without flags for the values of an element (protocol.md section 10)."""
    return json.dumps(value, separators=(",", ":")).replace("/", "\\/").encode("ascii")


def expected_values(key, row, fields) -> dict:
    firstname, lastname, email, coursename, completed, started, hundredths, status = row
    pct = hundredths // 100 if hundredths % 100 == 0 else hundredths / 100

    def readable(ts):
        return datetime.fromtimestamp(ts, LONDON).strftime("%Y-%m-%d %H:%M:%S") if ts else ""

    full = {"userid": key[0], "firstname": firstname, "lastname": lastname, "email": email, "courseid": key[1],
            "coursename": coursename, "timecompleted": readable(completed), "timecompleted_unix": completed,
            "timestarted": readable(started), "timestarted_unix": started, "percentage": pct, "status": status}
    return {k: full[k] for k in fields}


def json_elements(body: bytes) -> list[bytes]:
    """A JSON list split into the exact bytes of each element."""
    text, decoder, out, pos = body.decode("utf-8"), json.JSONDecoder(), [], 1
    assert text.startswith("[")
    while text[pos] != "]":
        _, end = decoder.raw_decode(text, pos)
        out.append(text[pos:end].encode("utf-8"))
        pos = end + (text[end] == ",")
    assert body == b"[" + b",".join(out) + b"]"
    return out


def xml_singles(body: bytes) -> list[bytes]:
    """The <SINGLE> blocks of an XML page; the document holds nothing else and is well-formed."""
    singles = re.findall(rb"<SINGLE>\n.*?</SINGLE>\n", body, re.S)
    assert body == XML_HEAD + b"<RESPONSE>\n<MULTIPLE>\n" + b"".join(singles) + b"</MULTIPLE>\n</RESPONSE>\n"
    ET.fromstring(body)
    return singles


def xml_values(single: bytes) -> dict:
    return {key.get("name"): None if value.get("null") == "null" else value.text or ""
            for key in ET.fromstring(single) for value in [key.find("VALUE")]}


def check_json_page(resp, name: str, rows: list, fields: tuple, remaining: int | None = 99, **rate) -> None:
    """Layout: headers, element keys as in the capture, values from the oracle, PHP rendering, and
    the capture's bytes for every element equal in value to one of the capture's."""
    check_headers(resp, name, remaining, **rate)
    theirs = [(json.loads(e), e) for e in json_elements(capture(name).body)]
    assert all(tuple(value) == fields for value, _ in theirs)
    ours = json_elements(resp.body)
    expected = [expected_values(key, row, fields) for key, row in rows]
    assert [json.loads(e) for e in ours] == expected
    assert ours == [php_json(e) for e in expected]
    for element in ours:
        assert all(element == raw for value, raw in theirs if value == json.loads(element))


def check_xml_page(resp, name: str, rows: list, fields: tuple, remaining: int | None = 99) -> None:
    check_headers(resp, name, remaining)
    theirs = [(xml_values(s), s) for s in xml_singles(capture(name).body)]
    assert all(tuple(value) == ALL_KEYS for value, _ in theirs)
    ours = xml_singles(resp.body)
    expected = []
    for key, row in rows:
        values = expected_values(key, row, fields)
        expected.append({k: None if k not in fields else json.dumps(values[k]) if k == "percentage" else str(values[k])
                         for k in ALL_KEYS})
    assert [xml_values(s) for s in ours] == expected  # disabled fields are <VALUE null="null"/>
    for single in ours:
        assert all(single == raw for value, raw in theirs if value == xml_values(single))


# --- identical -------------------------------------------------------------------------------

def _p(token=None, function=FUNCTION, fmt="json", **params) -> dict:
    out = {"wstoken": token} if token else {}
    out.update({"wsfunction": function} if function else {})
    return {**out, **({"moodlewsrestformat": fmt} if fmt else {}), **params}


# file: (method, parameters, X-RateLimit-Remaining or None when the token/user checks fail)
IDENTICAL = {
    "bad_token_json.txt": ("POST", _p(UNKNOWN, limit="5", offset="0"), None),
    "bad_token_xml.txt": ("POST", _p(UNKNOWN, fmt=None, limit="5", offset="0"), None),
    "no_token_json.txt": ("POST", _p(limit="5", offset="0"), None),
    # Parameter, limit and protocol errors are never counted (course-progress.md 12).
    "limit_abc_json.txt": ("POST", _p(GLOBEX, limit="abc", offset="0"), 100),
    "limit_abc_xml.txt": ("POST", _p(GLOBEX, fmt=None, limit="abc", offset="0"), 100),
    "offset_abc_json.txt": ("POST", _p(GLOBEX, limit="5", offset="abc"), 100),
    "limit_5000_json.txt": ("POST", _p(GLOBEX, limit="5000", offset="0"), 100),
    "limit_5000_xml.txt": ("POST", _p(GLOBEX, fmt=None, limit="5000", offset="0"), 100),
    "unknown_function_json.txt": ("POST", _p(GLOBEX, "local_alx_report_api_does_not_exist"), 100),
    "unknown_function_xml.txt": ("POST", _p(GLOBEX, "local_alx_report_api_does_not_exist", fmt=None), 100),
    "missing_function_json.txt": ("POST", _p(GLOBEX, function=None), 100),
    # The method check (step 6) comes after admission (step 5): counted.
    "get_method_json.txt": ("GET", _p(GLOBEX, limit="5", offset="0"), 99),
    "get_method_xml.txt": ("GET", _p(GLOBEX, fmt=None, limit="5", offset="0"), 99),
    "admin_no_company_json.txt": ("POST", _p(ADMIN_ALX, limit="5"), 99),
    "options_method.txt": ("OPTIONS", {}, None),
    "json_body_post.txt": ("JSON", _p(GLOBEX, function=FUNCTION), None),
    "globex_json_offset1000.txt": ("POST", _p(GLOBEX, limit="5", offset="1000"), 99),
}


@pytest.mark.parametrize("name", list(IDENTICAL))
def test_identical(refsite, name):
    method, params, remaining = IDENTICAL[name]
    app = prepared(refsite, populated=name.startswith("globex"))
    if method == "GET":
        resp = app.get(ENDPOINT, params, expect_errors=True)
    elif method == "OPTIONS":
        resp = app.options(ENDPOINT, expect_errors=True)
    elif method == "JSON":
        resp = app.post(ENDPOINT, json.dumps(params), content_type="application/json", expect_errors=True)
    else:
        resp = post(app, **params)
    check_identical(resp, name, remaining)


def test_expired_token_is_deleted_on_first_use(refsite):
    app = prepared(refsite, populated=False)
    check_identical(progress(app, EXPIRED, limit="5", offset="0"), "expired_token_json.txt", None)
    assert refsite.scalar("SELECT COUNT(*) FROM {t:external_tokens} WHERE token = ?", (EXPIRED,)) == 0
    check_identical(progress(app, EXPIRED, limit="5", offset="0"), "bad_token_json.txt", None)


def test_site_info_with_alx_token_until_install_links_it(refsite):
    app = prepared(refsite, populated=False)
    check_identical(post(app, wstoken=GLOBEX, wsfunction=SITE_INFO, moodlewsrestformat="json"),
                    "site_info_alx_token_json.txt", 100)
    webservice_setup.prepare(refsite, NOW, False, installer.Report())
    resp = post(app, wstoken=GLOBEX, wsfunction=SITE_INFO, moodlewsrestformat="json")
    check_headers(resp, "site_info_alx_token_json.txt", 100)  # site-info calls are not counted
    info = json.loads(resp.body)
    assert (info["username"], info["userid"]) == ("globex_api", 61)
    assert [f["name"] for f in info["functions"]] == [SITE_INFO, FUNCTION]


def test_rate_limit_calls_in_order(refsite):
    app = prepared(refsite)
    refsite.insert("local_alx_api_settings", {"companyid": 3, "setting_name": "rate_limit", "setting_value": 2,
                                              "timecreated": NOW, "timemodified": NOW})
    rows = ordered(refsite, 3)[:2]
    # Call 1 starts a full pull (the token has no completed pull); its page is full (2 rows), so the
    # pull stays open and call 2, at offset 0 again, starts a new full pull: the same 2 rows (the
    # original answered [] to call 2, sync-and-cache.md 5.3).
    check_json_page(progress(app, INITECH, limit="2"), "initech_ratelimit_call1.txt", rows, ALL_KEYS, 1, limit=2)
    check_json_page(progress(app, INITECH, limit="2"), "initech_ratelimit_call2.txt", rows, ALL_KEYS, 0, limit=2)
    check_identical(progress(app, INITECH, limit="2"), "initech_ratelimit_call3_json.txt", 0, limit=2, retry=True)
    check_identical(progress(app, INITECH, fmt=None, limit="2"), "initech_ratelimit_call4_xml.txt", 0, limit=2,
                    retry=True)


# --- layout ----------------------------------------------------------------------------------

# file: (token, company, parameters); "fallback" files are served live from Moodle's tables.
# The offset-0 rows assume a full definition (spec: "first page of a first pull"); with the pull
# model that depends on the token's sync state (sync-and-cache.md 5.4). Now: the full list.
JSON_PAGES = {
    "acme_json_limit5_offset0.txt": (ACME, 1, {"limit": "5", "offset": "0"}),
    "acme_json_all_default_limit.txt": (ACME, 1, {}),
    "globex_json_limit5_offset0.txt": (GLOBEX, 2, {"limit": "5", "offset": "0"}),
    "globex_json_limit5_offset5.txt": (GLOBEX, 2, {"limit": "5", "offset": "5"}),
    "initech_validuntil0_json_limit5.txt": (INITECH0, 3, {"limit": "5", "offset": "0"}),
    "initech_json_default_limit.txt": (INITECH, 3, {}),
    "initech_fallback_json_default_limit.txt": (INITECH, 3, {}),
    "acme_fallback_json_default_limit.txt": (ACME, 1, {}),
}
XML_PAGES = {
    "acme_xml_limit5_offset0.txt": (ACME, 1, None, {"limit": "5", "offset": "0"}),
    "globex_xml_limit5_offset0.txt": (GLOBEX, 2, None, {"limit": "5", "offset": "0"}),
    "bad_format_json.txt": (GLOBEX, 2, "yaml", {"limit": "5"}),
    "initech_fallback_xml_limit5.txt": (INITECH, 3, None, {"limit": "5"}),
    "acme_fallback_xml_limit10.txt": (ACME, 1, None, {"limit": "10"}),
}


def _page(params: dict) -> slice:
    offset = int(params.get("offset", 0))
    return slice(offset, offset + int(params.get("limit", 100)))


def _app_for(refsite, name: str, companyid: int):
    fallback = "fallback" in name
    return prepared(refsite, populated=not fallback, emptied=companyid if fallback else None)


@pytest.mark.parametrize("name", list(JSON_PAGES))
def test_json_page_layout(refsite, name):
    token, companyid, params = JSON_PAGES[name]
    app = _app_for(refsite, name, companyid)
    resp = progress(app, token, **params)
    check_json_page(resp, name, ordered(refsite, companyid)[_page(params)], FIELDS[companyid])
    if name == "acme_fallback_json_default_limit.txt":  # section 17: the original sent 50 / completed
        david = next(e for e in json.loads(resp.body) if (e["userid"], e["courseid"]) == (6, 2))
        assert (david["percentage"], david["status"]) == (33.33, "in_progress")


@pytest.mark.parametrize("name", list(XML_PAGES))
def test_xml_page_layout(refsite, name):
    token, companyid, fmt, params = XML_PAGES[name]
    app = _app_for(refsite, name, companyid)
    check_xml_page(progress(app, token, fmt=fmt, **params), name, ordered(refsite, companyid)[_page(params)],
                   FIELDS[companyid])


def test_globex_first_page_again(refsite):
    app = prepared(refsite)
    first = progress(app, GLOBEX, limit="5", offset="0")
    again = progress(app, GLOBEX, limit="5", offset="0")  # a cache hit in the original; the same page here
    assert again.body == first.body
    check_json_page(again, "globex_json_limit5_offset0_again.txt", ordered(refsite, 2)[:5], FIELDS[2], 98)


def test_bearer_header_does_not_override_wstoken(refsite):
    app = prepared(refsite)
    resp = post(app, headers={"Authorization": f"Bearer {ACME}"}, wstoken=GLOBEX, wsfunction=FUNCTION,
                moodlewsrestformat="json", limit="3")
    check_json_page(resp, "globex_bearer_header_limit3.txt", ordered(refsite, 2)[:3], FIELDS[2])


def test_acme_empty_xml_page(refsite):
    # The capture is an incremental page with no changes: after a completed full pull, Auto answers
    # the next offset-0 request within the window incrementally (sync-and-cache.md 5.4), and nothing
    # changed, so the page is empty and byte-identical to the capture.
    app = prepared(refsite)
    full = json.loads(progress(app, ACME, limit="1000").body)
    assert len(full) == len(ordered(refsite, 1))  # short page: the pull completed
    check_identical(progress(app, ACME, fmt=None, limit="5", offset="0"), "acme_xml_limit5_incremental.txt", 98)
    # a stateless page past the end is the same empty document
    check_identical(progress(app, ACME, fmt=None, limit="5", offset="1000"), "acme_xml_limit5_incremental.txt", 97)


# --- differs ---------------------------------------------------------------------------------

def test_acme_second_page_is_the_next_five_rows(refsite):
    # The original answered [] (incremental). Here: rows 6-10 of the full pull (a "next" page).
    app = prepared(refsite)
    rows = ordered(refsite, 1)
    check_json_page(progress(app, ACME, limit="5", offset="0"), "acme_json_limit5_offset0.txt", rows[:5], ALL_KEYS)
    # the next page of the open pull is free (issue 12): the day's count stays at 1
    check_json_page(progress(app, ACME, limit="5", offset="5"), "acme_json_limit5_offset5.txt", rows[5:10], ALL_KEYS,
                    99)


def test_acme_offset_zero_again_is_a_full_start_page(refsite):
    # The original answered [] (incremental within the window). The spec: a full start page
    # again, as the earlier pull never completed (sync-and-cache.md 5.3, 5.4).
    app = prepared(refsite)
    rows = ordered(refsite, 1)
    progress(app, ACME, limit="5", offset="0")
    progress(app, ACME, limit="5", offset="5")
    check_json_page(progress(app, ACME, limit="5", offset="0"), "acme_json_limit5_offset0_again.txt", rows[:5],
                    ALL_KEYS, 98)  # two starts counted; the next page between them was free (issue 12)


@pytest.mark.parametrize("name, limit", [("globex_json_limit0.txt", "0"), ("globex_json_limit_negative.txt", "-5"),
                                         ("globex_fallback_json_limit0.txt", "0")])
def test_limit_below_one_is_invalidlimit(refsite, name, limit):
    fallback = "fallback" in name
    app = prepared(refsite, populated=not fallback, emptied=2 if fallback else None)
    params = {"limit": limit} if fallback else {"limit": limit, "offset": "0"}
    resp = progress(app, GLOBEX, **params)
    check_headers(resp, name, 100)  # step 1 fails before admission: not counted
    assert resp.body == INVALIDLIMIT


def keys_of(engine) -> list[tuple]:
    return engine.rows(f"SELECT value, {', '.join(KEY_ROW)} FROM {{t:user_private_key}} ORDER BY id")


def with_key(body: bytes, key: bytes) -> bytes:
    """A captured body with the admin's private key replaced (the reference site's is random)."""
    assert body.count(CAPTURED_KEY) == 1
    return body.replace(CAPTURED_KEY, key)


def test_site_info_is_the_capture_when_the_site_holds_the_captured_key(refsite):
    """Keys 17–21 as Moodle 4.4 fills them (decision 101): with the reference site's own key row
    (the dump leaves user_private_key out), both answers are the captures byte for byte."""
    refsite.execute("INSERT INTO {t:user_private_key} (script, value, userid, instance, iprestriction, validuntil, "
                    "timecreated) VALUES ('core_files', ?, 2, NULL, NULL, NULL, 1795649500)", (CAPTURED_KEY.decode(),))
    app = prepared(refsite, populated=False)
    check_identical(post(app, wstoken=ADMIN_CORE, wsfunction=SITE_INFO, moodlewsrestformat="json"),
                    "site_info_core_token_json.txt", 100)
    resp = post(app, wstoken=ADMIN_CORE, wsfunction=SITE_INFO)
    check_identical(resp, "site_info_core_token_xml.txt", 100)
    ET.fromstring(resp.body)
    assert len(keys_of(refsite)) == 1  # found, not made again


def test_site_info_makes_the_users_key_once_and_keeps_it(refsite):
    """get_user_key('core_files', 2) on a site where the admin has no key yet: Moodle's row is
    written (decision 101); every later answer, JSON or XML, carries the same key."""
    app = prepared(refsite, populated=False)
    assert keys_of(refsite) == []
    first = post(app, wstoken=ADMIN_CORE, wsfunction=SITE_INFO, moodlewsrestformat="json")
    check_headers(first, "site_info_core_token_json.txt", 100)
    key = json.loads(first.body)["userprivateaccesskey"]
    assert re.fullmatch("[0-9a-f]{32}", key) and key != CAPTURED_KEY.decode()
    assert first.body == with_key(capture("site_info_core_token_json.txt").body, key.encode())
    assert keys_of(refsite) == [(key, "core_files", 2, None, None, None, NOW)]
    again = post(app, wstoken=ADMIN_CORE, wsfunction=SITE_INFO, moodlewsrestformat="json")
    assert again.body == first.body
    xml = post(app, wstoken=ADMIN_CORE, wsfunction=SITE_INFO)
    check_headers(xml, "site_info_core_token_xml.txt", 100)
    assert xml.body == with_key(capture("site_info_core_token_xml.txt").body, key.encode())
    assert len(keys_of(refsite)) == 1


def test_site_info_for_a_company_manager(refsite):
    """Keys 17–21 for a user who is not a site admin, from the reference site's real roles: the
    authenticated-user role allows moodle/user:manageownfiles; nobody holds ignoreuserquota or
    ignorefilesizelimits, so the site quota (config userquota 104857600) and PHP's 2 MiB
    upload_max_filesize apply (config maxbytes is 0); config defaulthomepage is 1 (Dashboard)."""
    app = prepared(refsite, populated=False)
    webservice_setup.prepare(refsite, NOW, False, installer.Report())
    info = json.loads(post(app, wstoken=GLOBEX, wsfunction=SITE_INFO, moodlewsrestformat="json").body)
    key = info["userprivateaccesskey"]
    assert {k: info[k] for k in ("usercanmanageownfiles", "userquota", "usermaxuploadfilesize", "userhomepage",
                                 "userissiteadmin")} == {
        "usercanmanageownfiles": True, "userquota": 104857600, "usermaxuploadfilesize": 2097152, "userhomepage": 1,
        "userissiteadmin": False}
    assert re.fullmatch("[0-9a-f]{32}", key) and keys_of(refsite) == [(key, "core_files", 61, None, None, None, NOW)]
    assert list(info) == list(json.loads(capture("site_info_core_token_json.txt").body))  # Moodle's key order
