"""Issue 13: the OData feed through the WSGI app on the three engines: the whole entity set equals
a full REST pull, $filter answers equal the same rows filtered in Python, the query options, the
checks and errors of the REST endpoint as OData errors, the rate limit and skiptokens, hostile
filters, and a database that stops answering."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from local_alx_report_api.task import sync_reporting_data_task as sync_task
from moodle_core import engines
from tests.conftest import drop_prefixed, make_engine
from tests.faults import Proxy
from tests.sites import NOW, company_setting, generated_site
from tests.tasks import task_env
from tests.webapp import make_app, progress

FEED = "/local/alx_report_api/odata/"
SET = FEED + "CourseProgress"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
TIMES = ("timecompleted", "timestarted", "lastupdated", "created")


@pytest.fixture
def site(db):
    """Two generated companies in Berlin time, names that differ only in case or trailing space,
    synced at NOW; (engine, token of company 1, token of company 2, company 1's id)."""
    demo = generated_site(db, NOW, companies=2, users=120, seed=11, timezone="Europe/Berlin")
    token, _, companyid = demo.tokens[0]
    members = [r[0] for r in db.rows("SELECT DISTINCT cu.userid FROM {t:company_users} cu JOIN {t:user_enrolments} ue "
                                     "ON ue.userid = cu.userid WHERE cu.companyid = ? AND cu.managertype = 0 "
                                     "ORDER BY cu.userid", (companyid,))]
    for uid, name in zip(members, ("alice", "Alice", "alice ", "Zoë", "O'Brien", "ALICE"), strict=False):
        db.execute("UPDATE {t:user} SET firstname = ? WHERE id = ?", (name, uid))
    sync_task.execute(task_env(db, NOW))
    return db, token, demo.tokens[1][0], companyid


def get(app, path, token=None, expect=200, headers=None, **params):
    if token is not None:
        params["wstoken"] = token
    response = app.get(path, params=params, headers=headers or {}, expect_errors=True)
    assert response.status_int == expect, response.body[:500]
    return response


def follow(app, first, headers=None) -> tuple[list[dict], list]:
    """Every entity of a feed from its first response, following nextLinks as a client does."""
    rows, pages, document = [], [first], first.json
    while True:
        rows += document["value"]
        link = document.get("@odata.nextLink")
        if not link:
            return rows, pages
        parts = urlsplit(link)
        response = app.get(f"{parts.path}?{parts.query}", headers=headers or {}, expect_errors=True)
        assert response.status_int == 200, response.body[:500]
        pages.append(response)
        document = response.json


def unix(value: str | None) -> int:
    return 0 if value is None else int(datetime.fromisoformat(value).timestamp())


def rest_rows(app, token) -> list[dict]:
    rows, offset = [], 0
    while True:
        page = progress(app, token, limit=1000, offset=offset, mode="full").json
        rows += page
        offset += len(page)
        if len(page) < 1000:
            return rows


def test_the_whole_entity_set_is_a_full_rest_pull(site):
    engine, token, _, _ = site
    app = make_app(engine, NOW)
    rows, pages = follow(app, get(app, SET, token, headers={"Prefer": "odata.maxpagesize=7"}))
    assert len(pages) > 5 and all(p.headers["Preference-Applied"] == "odata.maxpagesize=7" for p in pages)
    rest = rest_rows(app, token)
    assert len(rows) == len(rest) > 50
    for o, r in zip(rows, rest, strict=True):
        assert {k: o[k] for k in ("userid", "courseid", "firstname", "lastname", "email", "coursename",
                                  "timecompleted_unix", "timestarted_unix", "percentage", "status")} == {
            k: r[k] for k in ("userid", "courseid", "firstname", "lastname", "email", "coursename",
                              "timecompleted_unix", "timestarted_unix", "percentage", "status")}
        assert unix(o["timecompleted"]) == r["timecompleted_unix"] and unix(o["timestarted"]) == r["timestarted_unix"]
        assert (o["timecompleted"] or "+01:00").endswith(("+01:00", "+02:00"))  # the site's zone
    assert {unix(o["created"]) for o in rows} == {NOW}
    # descending, $top and $skip, $count, /$count
    down, _ = follow(app, get(app, SET, token, headers={"Prefer": "odata.maxpagesize=9"},
                              **{"$orderby": "userid desc,courseid desc"}))
    assert down == rows[::-1]
    some, _ = follow(app, get(app, SET, token, headers={"Prefer": "odata.maxpagesize=4"},
                              **{"$top": "10", "$skip": "3", "$count": "true"}))
    assert some == rows[3:13]
    first = get(app, SET, token, **{"$top": "2", "$count": "true"}).json
    assert first["@odata.count"] == len(rows) and len(first["value"]) == 2 and "@odata.nextLink" not in first
    assert get(app, SET + "/$count", token).text == str(len(rows))
    # Power BI with ApiKeyName adds wstoken to every request, next pages too: the links do not grow
    response, lengths, again = get(app, SET, token, headers={"Prefer": "odata.maxpagesize=7"}), set(), []
    while True:
        again += response.json["value"]
        link = response.json.get("@odata.nextLink")
        if not link:
            break
        parts = urlsplit(link)
        lengths.add(len(link) - len(parts.query.rpartition("$skiptoken=")[2]))
        response = get(app, f"{parts.path}?{parts.query}&wstoken={token}")
    assert again == rows and len(lengths) == 1


FILTERS = [
    ("userid gt 40", lambda r: r["userid"] > 40),
    ("userid ge 40 and userid le 50 or courseid eq 3", lambda r: 40 <= r["userid"] <= 50 or r["courseid"] == 3),
    ("userid ge 40 and (userid le 50 or courseid eq 3)", lambda r: r["userid"] >= 40 and (r["userid"] <= 50 or r["courseid"] == 3)),
    ("not (userid lt 45)", lambda r: not r["userid"] < 45),
    ("45 gt userid", lambda r: r["userid"] < 45),
    ("firstname eq 'alice'", lambda r: r["firstname"] == "alice"),
    ("firstname eq 'Alice'", lambda r: r["firstname"] == "Alice"),
    ("firstname eq 'alice '", lambda r: r["firstname"] == "alice "),
    ("firstname ne 'alice'", lambda r: r["firstname"] != "alice"),
    ("firstname gt 'a'", lambda r: r["firstname"] > "a"),
    ("firstname lt 'B'", lambda r: r["firstname"] < "B"),
    ("firstname eq 'O''Brien'", lambda r: r["firstname"] == "O'Brien"),
    ("firstname in ('alice', 'ALICE', 'Zoë')", lambda r: r["firstname"] in ("alice", "ALICE", "Zoë")),
    ("status in ('completed','in_progress')", lambda r: r["status"] in ("completed", "in_progress")),
    ("status ne 'not_started' and percentage lt 100", lambda r: r["status"] != "not_started" and r["percentage"] < 100),
    ("percentage gt 33.33", lambda r: r["percentage"] > 33.33),
    ("percentage eq 50", lambda r: r["percentage"] == 50),
    ("percentage ge 0.5 and percentage le 66.67", lambda r: 0.5 <= r["percentage"] <= 66.67),
    ("timecompleted eq null", lambda r: r["timecompleted"] is None),
    ("timecompleted ne null", lambda r: r["timecompleted"] is not None),
    ("timecompleted gt 2024-06-01T00:00:00Z", lambda r: r["timecompleted"] is not None and unix(r["timecompleted"]) > 1717200000),
    ("not (timecompleted gt 2024-06-01T00:00:00Z)", lambda r: not (r["timecompleted"] is not None and unix(r["timecompleted"]) > 1717200000)),
    ("timecompleted lt 2024-06-01T02:00:00+02:00", lambda r: r["timecompleted"] is not None and unix(r["timecompleted"]) < 1717200000),
    ("timecompleted ne 2024-06-01T00:00:00Z", lambda r: r["timecompleted"] is None or unix(r["timecompleted"]) != 1717200000),
    ("timestarted_unix gt 0 and timestarted_unix lt 1717200000", lambda r: 0 < r["timestarted_unix"] < 1717200000),
    ("created ge 2024-11-25T15:00:00.0000001Z", lambda r: False),
    ("created lt 2024-11-25t15:00:00.0000001z and created gt 2024-11-25T14:59:59.999999999Z", lambda r: True),
    ("percentage eq 1e-99999999 or userid eq 1e-400", lambda r: False),
    ("percentage lt 1e999999 and percentage ge -1e999999 and percentage ge 1e-99999999", lambda r: r["percentage"] > 0),
    ("timestarted ge 2024-01-01T00:00:00.5Z", lambda r: r["timestarted"] is not None and unix(r["timestarted"]) >= 1704067201),
    ("created ge 2024-11-25T15:00:00Z and created lt 2024-11-25T15:00:01Z", lambda r: True),
    ("lastupdated lt 2024-11-25T15:00:00Z", lambda r: False),
    ("userid eq null or true", lambda r: True),
    ("percentage gt 99.999999999999999", lambda r: Decimal(str(r["percentage"])) > Decimal("99.999999999999999")),
    ("percentage gt -1e-400", lambda r: True),
    ("percentage eq 33.330000000000000001 or percentage lt 1e400", lambda r: True),
    ("percentage le 33.333", lambda r: Decimal(str(r["percentage"])) <= Decimal("33.333")),
    ("percentage ge 33.333", lambda r: Decimal(str(r["percentage"])) >= Decimal("33.333")),
    ("percentage in (0, 33.333, 100)", lambda r: r["percentage"] in (0, 100)),
    ("userid gt 40.5 and userid lt 60.5", lambda r: 40.5 < r["userid"] < 60.5),
    ("userid in (10)", lambda r: r["userid"] == 10),
    ("status in ('completed')", lambda r: r["status"] == "completed"),
    ("not not not (userid lt 30)", lambda r: not r["userid"] < 30),
    (" or ".join(f"userid eq {n}" for n in range(1, 300)), lambda r: r["userid"] < 300),
    (" or ".join(f"(userid ge {n} and userid lt {n + 1})" for n in range(1, 100)), lambda r: r["userid"] < 100),
    ("contains(firstname, 'lic')", lambda r: "lic" in r["firstname"]),
    ("contains(firstname, 'ë') or contains(firstname, '''')", lambda r: "ë" in r["firstname"] or "'" in r["firstname"]),
    ("startswith(firstname, 'A')", lambda r: r["firstname"].startswith("A")),
    ("endswith(firstname, 'e ')", lambda r: r["firstname"].endswith("e ")),
    ("endswith(firstname, 'ë')", lambda r: r["firstname"].endswith("ë")),
    ("not contains(email, 'learner1')", lambda r: "learner1" not in r["email"]),
    ("startswith(coursename, '') and endswith(coursename, '')", lambda r: True),
    ("contains(firstname, null)", lambda r: False),
    ("courseid in (1, 2, 3, 4) and not (status eq 'completed' or status eq 'in_progress')",
     lambda r: r["courseid"] in (1, 2, 3, 4) and r["status"] not in ("completed", "in_progress")),
]


ORDERS = ["courseid", "userid asc,courseid desc", "lastupdated desc", "status,percentage desc",
          "timecompleted", "timecompleted desc,firstname", "firstname desc,lastname", "percentage,email desc",
          "coursename,timestarted_unix desc,userid desc", "created,courseid desc,userid"]


def test_any_order_pages_like_python_sorts(site):
    """$orderby on any properties (text by code point, null times first), paged by keyset over
    the order's values: the pages together are the whole set in Python's order."""
    engine, token, _, _ = site
    app = make_app(engine, NOW, local_alx_report_api__rate_limit=0)
    everything, _ = follow(app, get(app, SET, token))

    def value(row, name):
        v = row[name]
        return (v is not None, v) if name in TIMES else v

    for text in ORDERS:
        wanted = list(everything)
        items = [(i.split()[0], i.endswith(" desc")) for i in text.split(",")]
        names = [n for n, _ in items]
        items += [(k, items[-1][1]) for k in ("userid", "courseid") if k not in names]
        for name, desc in reversed(items):
            wanted.sort(key=lambda r, n=name: value(r, n), reverse=desc)
        got, pages = follow(app, get(app, SET, token, headers={"Prefer": "odata.maxpagesize=9"},
                                     **{"$orderby": text, "$select": "userid,courseid"}))
        assert [(r["userid"], r["courseid"]) for r in got] == [(r["userid"], r["courseid"]) for r in wanted], text
        assert len(pages) > 3
    filtered, _ = follow(app, get(app, SET, token, headers={"Prefer": "odata.maxpagesize=5"},
                                  **{"$orderby": "firstname desc", "$filter": "startswith(firstname, 'A')"}))
    assert [r["firstname"] for r in filtered] == sorted((r["firstname"] for r in everything
                                                         if r["firstname"].startswith("A")), reverse=True)
    top = get(app, SET, token, **{"$orderby": "lastupdated desc", "$top": "1", "$select": "lastupdated"}).json
    assert top["value"] == [{"lastupdated": max(r["lastupdated"] for r in everything)}]


def test_filters_give_the_rows_python_gives(site):
    """Every case on every engine (the SQL differs by engine: collations, text functions)."""
    engine, token, _, _ = site
    app = make_app(engine, NOW, local_alx_report_api__rate_limit=0)
    everything, _ = follow(app, get(app, SET, token))
    assert len({r["firstname"] for r in everything} & {"alice", "Alice", "alice ", "ALICE"}) >= 3
    for text, keep in FILTERS:
        filtered, _ = follow(app, get(app, SET, token, headers={"Prefer": "odata.maxpagesize=40"}, **{"$filter": text}))
        assert filtered == [r for r in everything if keep(r)], text
        assert get(app, SET + "/$count", token, **{"$filter": text}).text == str(len(filtered)), text
    assert len({len([r for r in everything if keep(r)]) for _, keep in FILTERS}) > 15  # the cases tell rows apart


def test_metadata_select_formats_and_switched_off_fields(site):
    engine, token, _, companyid = site
    company_setting(engine, companyid, "field_email", 0)
    company_setting(engine, companyid, "field_timestarted", 0)
    app = make_app(engine, NOW)
    document = get(app, FEED + "$metadata", token)
    assert document.content_type == "application/xml" and document.headers["OData-Version"] == "4.0"
    tree = ET.fromstring(document.body)
    props = {p.get("Name"): p.get("Type") for p in tree.iter(f"{EDM}Property")}
    assert [k.get("Name") for k in tree.iter(f"{EDM}PropertyRef")] == ["userid", "courseid"]
    assert props == {"userid": "Edm.Int64", "firstname": "Edm.String", "lastname": "Edm.String",
                     "courseid": "Edm.Int64", "coursename": "Edm.String", "timecompleted": "Edm.DateTimeOffset",
                     "timecompleted_unix": "Edm.Int64", "timestarted_unix": "Edm.Int64",
                     "percentage": "Edm.Decimal", "status": "Edm.String", "lastupdated": "Edm.DateTimeOffset",
                     "created": "Edm.DateTimeOffset"}
    service = get(app, FEED, token).json
    assert service["value"] == [{"name": "CourseProgress", "kind": "EntitySet", "url": "CourseProgress"}]
    row = get(app, SET, token, **{"$top": "1"}).json["value"][0]
    assert set(row) == set(props)
    for hidden in ("email", "timestarted"):
        assert get(app, SET, token, 400, **{"$select": hidden}).json["error"]["message"].startswith("Could not find")
        assert get(app, SET, token, 400, **{"$filter": f"{hidden} eq null"}).json["error"]["code"] == "badrequest"
    chosen = get(app, SET, token, **{"$select": "courseid,status", "$top": "1"}).json
    assert chosen["@odata.context"].endswith("$metadata#CourseProgress(courseid,status)")
    assert list(chosen["value"][0]) == ["courseid", "status"]
    none = get(app, SET, token, **{"$top": "1", "$format": "application/json;odata.metadata=none"})
    assert "@odata.context" not in none.json and "odata.metadata=none" in none.headers["Content-Type"]
    full = get(app, SET, token, **{"$top": "1"}, headers={"Accept": "application/json;odata.metadata=full"}).json
    assert full["value"][0]["@odata.type"] == "#ALX.CourseProgress" and "CourseProgress(userid=" in full["value"][0]["@odata.id"]
    assert full["value"][0]["userid@odata.type"] == "#Int64" and full["value"][0]["created@odata.type"] == "#DateTimeOffset"
    assert "firstname@odata.type" not in full["value"][0]
    preflight = app.options(SET, headers={"Origin": "https://app.powerbi.com"}, expect_errors=True)
    assert preflight.status_int == 200 and "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    ieee = get(app, SET, token, **{"$top": "1", "$count": "true", "$format": "application/json;IEEE754Compatible=true"}).json
    assert isinstance(ieee["value"][0]["userid"], str) and isinstance(ieee["@odata.count"], str)
    assert isinstance(ieee["value"][0]["percentage"], str)


def test_checks_of_the_rest_endpoint_as_odata_errors(site):
    engine, token, other, _ = site
    app = make_app(engine, NOW, webservice__allow_bearer_token="true")
    basic = "Basic " + __import__("base64").b64encode(f"anyone:{token}".encode()).decode()
    assert get(app, SET, headers={"Authorization": basic}, **{"$top": "1"}).json["value"]
    assert get(app, SET, headers={"Authorization": f"Bearer {token}"}, **{"$top": "1"}).json["value"]
    missing = get(app, SET, expect=401)
    assert missing.json == {"error": {"code": "invalidtoken", "message": "Invalid token - token not found"}}
    assert "Basic" in missing.headers["WWW-Authenticate"]
    get(app, SET, "b" * 32, 401)
    get(app, SET, expect=401, headers={"Authorization": "Basic !!!"})
    # another company's token sees its own company only
    mine = {(r["userid"], r["courseid"]) for r in follow(app, get(app, SET, token))[0]}
    theirs = {(r["userid"], r["courseid"]) for r in follow(app, get(app, SET, other))[0]}
    assert mine and theirs and not mine & theirs
    engine.execute("UPDATE {t:external_tokens} SET iprestriction = '10.0.0.0/8' WHERE token = ?", (token,))
    assert get(app, SET, token, 403).json["error"]["code"] == "accessexception"
    engine.execute("UPDATE {t:external_tokens} SET iprestriction = NULL WHERE token = ?", (token,))
    userid = engine.scalar("SELECT userid FROM {t:external_tokens} WHERE token = ?", (token,))
    engine.execute("UPDATE {t:user} SET suspended = 1 WHERE id = ?", (userid,))
    assert get(app, FEED + "$metadata", token, 403).json["error"]["code"] == "wsaccessusersuspended"
    engine.execute("UPDATE {t:user} SET suspended = 0 WHERE id = ?", (userid,))
    engine.execute("DELETE FROM {t:external_services_functions} WHERE functionname = ?",
                   ("local_alx_report_api_get_course_progress",))
    assert get(app, SET, token, 403).json["error"]["code"] == "accessexception"
    engine.execute("UPDATE {t:external_tokens} SET validuntil = ? WHERE token = ?", (NOW - 1, other))
    assert get(app, SET, other, 403).json["error"]["code"] == "accessexception"
    engine.execute("UPDATE {t:config} SET value = '0' WHERE name = 'enablewebservices'")
    assert get(app, SET, token, 403).json["error"]["code"] == "restdisabled"
    logged = engine.rows("SELECT source, endpoint, errorcode FROM {t:local_alx_api_logs} ORDER BY id")
    assert {r[0] for r in logged} == {"odata"} and ("odata", "odata/CourseProgress", "restdisabled") in logged
    assert len([r for r in logged if r[0] == "odata"]) == 12


REFUSED = [
    (SET, {"$expand": "x"}, 501), (SET, {"$apply": "aggregate(userid with max as m)"}, 501),
    (SET, {"$search": "x"}, 501), (SET, {"$orderby": "userid,userid desc"}, 400),
    (SET, {"$orderby": "status,email,firstname,lastname,coursename"}, 400), (SET, {"$orderby": "x/y"}, 501),
    (SET, {"$orderby": "status up"}, 400),
    (SET, {"$orderby": "nosuch"}, 400), (SET, {"$select": "nosuch"}, 400), (SET, {"$top": "-1"}, 400),
    (SET, {"$skip": "x"}, 400), (SET, {"$count": "yes"}, 400), (SET, {"$format": "xml"}, 406), (SET, {"$top": "²"}, 400), (SET, {"$skip": "①"}, 400),
    (SET, {"$format": "application/json;odata.metadata=lots"}, 400), (SET + "(userid=1,courseid=2)", {}, 501),
    (FEED + "Nothing", {}, 404), (SET, {"$filter": "tolower(firstname) eq 'a'"}, 501),
    (SET, {"$format": ""}, 406),
    (SET, {"$filter": "contains(userid, '1')"}, 400), (SET, {"$filter": "substringof('a', firstname)"}, 400),
    (SET, {"$skiptoken": "abc"}, 400), (SET, {"$skiptoken": "W10.AAAA"}, 400),
]


def test_what_the_feed_does_not_do_is_a_clear_error(site):
    engine, token, _, _ = site
    app = make_app(engine, NOW)
    for path, params, status in REFUSED:
        error = get(app, path, token, status, **params).json["error"]
        assert error["code"] and error["message"]
    message = get(app, SET, token, 501, **{"$filter": "tolower(firstname) eq 'a'"}).json["error"]["message"]
    assert "tolower()" in message


HOSTILE = [
    "userid eq 1; DROP TABLE mdl_user", "userid eq 1) OR (1 eq 1", "firstname eq 'x'' OR ''1''=''1'",
    "firstname eq '\x00'", "firstname eq '" + "a" * 7000 + "'", "userid eq " + "9" * 400, "percentage eq 1e999",
    "percentage eq -1e400", "userid eq 99999999999999999999", "not " * 3000 + "userid eq 1",
    " or ".join(["userid eq 1"] * 1500), "(" * 5000 + "userid eq 1" + ")" * 5000, "a" * 9000,
    "userid in (" + ",".join(["1"] * 3000) + ")", "userid eq userid", "userid add 1 eq 2", "contains(email, 'a')",
    "timecompleted gt 2024-13-45T99:99:99Z", "timecompleted gt 2024-01-01T00:00:00", "timecompleted gt 2024-01-01",
    "userid eq 'x'", "firstname eq 5", "email/x eq 1", "userid eq @p", "x eq 1", "userid eq", "", "   ",
    "status eq 'a' and", "$filter", "userid eq 0x10", "userid in ()", "userid eq 1 eq 1", "timecompleted eq 1",
    "percentage eq 'NaN'", "userid eq -9223372036854775809", "userid eq ١٠",
    "(" * 30 + " and ".join(f"userid eq {n}) or (courseid eq {n}" for n in range(30)) + ")" * 30,
    "".join(f"(userid eq {n} and (courseid eq {n} or " for n in range(25)) + "true" + "))" * 25, "userid any(x: x eq 1)", "geography'POINT(1 2)' eq userid",
]


def test_hostile_filters_get_odata_errors_and_change_nothing(site):
    engine, token, _, _ = site
    app = make_app(engine, NOW, local_alx_report_api__rate_limit=0)
    before = engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting}")
    for text in HOSTILE:
        response = app.get(SET, params={"wstoken": token, "$filter": text}, expect_errors=True)
        assert response.status_int in (200, 400, 501), (text[:80], response.status_int, response.body[:300])
        if response.status_int != 200:
            assert set(response.json["error"]) == {"code", "message"}
    assert engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting}") == before
    assert engine.scalar("SELECT COUNT(*) FROM {t:user}") > 0
    assert engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_logs} WHERE source = 'odata'") == len(HOSTILE)


def test_rate_limit_counts_first_pages_and_not_their_next_links(site):
    engine, token, other, companyid = site
    company_setting(engine, companyid, "rate_limit", 2)
    clock = {"now": NOW}
    app = make_app(engine, lambda: clock["now"])
    small = {"Prefer": "odata.maxpagesize=5"}
    first = get(app, SET, token, headers=small)
    assert first.headers["X-RateLimit-Remaining"] == "1"
    rows, pages = follow(app, first, small)
    assert len(pages) > 3 and pages[-1].headers["X-RateLimit-Remaining"] == "1"
    get(app, FEED + "$metadata", token)  # the model is not data: not counted
    second = get(app, SET, token, headers=small)
    refused = get(app, SET, token, 429)
    assert refused.json["error"]["code"] == "ratelimitexceeded" and int(refused.headers["Retry-After"]) > 0
    again, _ = follow(app, second, small)  # a nextLink of a counted page is followed within its time
    assert again == rows
    link = urlsplit(second.json["@odata.nextLink"])
    clock["now"] = NOW + 6 * 3600 + 1  # six hours after its first page the chain is counted: the day's two are used
    late = app.get(f"{link.path}?{link.query}", expect_errors=True)
    assert late.status_int == 429
    counted = engine.rows("SELECT COUNT(*) FROM {t:local_alx_api_logs} WHERE counted = 1 AND source = 'odata'")
    assert counted[0][0] == 2
    # a skiptoken works for its own token and query only
    bad_token = app.get(f"{link.path}?{link.query.replace(token, other)}", expect_errors=True)
    assert bad_token.status_int == 400
    changed = app.get(f"{link.path}?{link.query}&$select=userid", expect_errors=True)
    assert changed.status_int == 400
    for extra in ("$top=1", "$skip=2"):
        assert app.get(f"{link.path}?{link.query}&{extra}", expect_errors=True).status_int == 400
    body, _, mac = link.query.partition("$skiptoken=")[2].partition(".")
    forged = app.get(f"{link.path}?{link.query.replace(mac, 'A' * len(mac))}", expect_errors=True)
    assert forged.status_int == 400 and "skiptoken" in forged.json["error"]["message"]


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_a_database_that_stops_answering_gives_503(kind, tmp_path):
    db = make_engine(kind, tmp_path)
    try:
        _outage(db)
    finally:
        drop_prefixed(db)
        db.db.close()


def _outage(db):
    site = generated_site(db, NOW, companies=1, users=5, seed=3)
    sync_task.execute(task_env(db, NOW))
    parts = urlsplit(db.url)
    proxy = Proxy(parts.hostname, parts.port)
    through = engines.connect(db.url.replace(f":{parts.port}/", f":{proxy.port}/"), db.prefix)
    app = make_app(through, NOW)
    token = site.tokens[0][0]
    assert get(app, SET, token).json["value"]
    proxy.cut()
    down = get(app, SET, token, 503)
    assert down.json["error"]["code"] == "dbconnectionfailed" and down.headers["Retry-After"]
    json.dumps(down.json)
