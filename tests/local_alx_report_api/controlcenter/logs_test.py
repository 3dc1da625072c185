"""Logs page (admin-ui.md 3.9): rows written by real REST calls and sign-ins, plus inserted rows
for volume; filters through the page's own form, keyset paging, the detail, the CSV export."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from local_alx_report_api.controlcenter import logs
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.admin import PREFIX, admin_app, sign_in
from tests.sites import NOW, acme_and_globex, api_token
from tests.tasks import task_env
from tests.webapp import FUNCTION, post, progress

ZONE = "America/New_York"  # NOW = 2024-11-25 10:00:00 there
COLUMNS = ["id", "userid", "company_shortname", "endpoint", "record_count", "error_message", "response_time_ms",
           "timeaccessed", "ip_address", "user_agent", "additional_data", "companyid", "token_hash", "errorcode",
           "counted", "sync_mode", "data_source", "cache_status", "db_time_ms", "response_bytes", "source"]


@pytest.fixture
def site(db):
    """Company 5 acme with a token; four REST calls an hour apart and one sign-in."""
    b = acme_and_globex(db, shared=False)
    token = api_token(b, 5, "1" * 32, "api1")
    clock = [NOW - 3 * 3600]
    sync_task.execute(task_env(db, clock[0]))
    app = admin_app(db, lambda: clock[0], site__timezone=ZONE)
    post(app, {"User-Agent": "PowerBI/2.0 (=evil)"}, wstoken=token, wsfunction=FUNCTION,
         moodlewsrestformat="json", limit=3)                               # 07:00 local: table, miss
    clock[0] += 3600
    progress(app, token, limit=3)                                          # 08:00: repeat pull, cache hit
    clock[0] += 3600
    other = admin_app(db, lambda: clock[0], site__timezone=ZONE)
    other.extra_environ["REMOTE_ADDR"] = "10.1.2.3"
    progress(other, "f" * 32, limit=3)                                     # 09:00: invalidtoken from 10.1.2.3
    clock[0] += 3600
    sign_in(app)                                                           # 10:00: admin:login row
    return db, app, clock


def api_rows(db, where: str = "1 = 1", params=()):
    return [r[0] for r in db.rows(f"SELECT id FROM {{t:local_alx_api_logs}} WHERE endpoint NOT LIKE 'admin:%' "
                                  f"AND {where} ORDER BY timeaccessed DESC, id DESC", params)]


def listed(page) -> list[int]:
    """Ids of the rows a logs page lists, in order."""
    return [int(i) for i in re.findall(r'href="/local/alx_report_api/logs\?id=(\d+)"', page.text)]


def filtered(app, **values):
    page = app.get(PREFIX + "/logs")
    form = page.forms["filters"]
    for name, value in values.items():
        form[name] = value
    return form.submit()


def test_lists_api_calls_newest_first_with_their_columns(site):
    db, app, _ = site
    page = app.get(PREFIX + "/logs")
    ids = api_rows(db)
    assert len(ids) == 3 and listed(page) == ids  # the sign-in is not an API row
    text = page.text
    for header in ("Time", "User", "Company", "Function", "Elements", "Outcome", "Response time (ms)", "Source",
                   "Cache", "IP"):
        assert f">{header}</th>" in text
    assert "2024-11-25 07:00:00" in text and "2024-11-25 09:00:00" in text  # site time zone
    assert "api1" in text and "acme" in text and FUNCTION in text and "10.1.2.3" in text
    assert "invalidtoken</span> Invalid token - token not found" in text
    assert ">cache</td>" in text and ">hit</td>" in text and ">miss</td>" in text
    assert "admin:login" not in text.split("<tbody>")[1]


def test_sign_in_rows_only_with_the_admin_login_function(site):
    db, app, _ = site
    admin_row = db.scalar("SELECT id FROM {t:local_alx_api_logs} WHERE endpoint = 'admin:login'")
    page = filtered(app, function="admin:login")
    assert listed(page) == [admin_row]
    assert "admin:login" in page.text
    assert listed(filtered(app, function=FUNCTION)) == api_rows(db, "endpoint = ?", (FUNCTION,))
    assert listed(filtered(app, function="admin:other")) == []


def test_each_filter(site):
    db, app, _ = site
    user = db.scalar("SELECT id FROM {t:user} WHERE username = 'api1'")
    ok = api_rows(db, "errorcode IS NULL")
    bad = api_rows(db, "errorcode IS NOT NULL")
    assert len(ok) == 2 and len(bad) == 1
    assert listed(filtered(app, company="5")) == ok
    assert listed(filtered(app, company="6")) == []
    assert listed(filtered(app, user="API1")) == ok  # username, any case
    assert listed(filtered(app, user=str(user))) == ok
    assert listed(filtered(app, user="0")) == bad  # no user known
    assert listed(filtered(app, outcome="success")) == ok
    assert listed(filtered(app, outcome="error")) == bad
    assert listed(filtered(app, outcome="invalidtoken")) == bad
    assert listed(filtered(app, outcome="ratelimitexceeded")) == []
    assert listed(filtered(app, ip="10.1.2.3")) == bad
    assert listed(filtered(app, ip="127.0.0.1")) == ok
    assert listed(filtered(app, source="cache")) == api_rows(db, "data_source = 'cache'")
    assert listed(filtered(app, source="table")) == api_rows(db, "data_source = 'table'")
    assert len(listed(filtered(app, source="cache"))) == 1
    # site time zone: the calls were at 07:00, 08:00 and 09:00 New York time
    assert listed(filtered(app, **{"from": "2024-11-25 08:00"})) == api_rows(db)[:2]
    assert listed(filtered(app, to="2024-11-25 08:00")) == api_rows(db)[1:]  # a minute includes its seconds
    assert listed(filtered(app, to="2024-11-25 07:59:59")) == api_rows(db)[2:]
    assert listed(filtered(app, **{"from": "2024-11-25", "to": "2024-11-25"})) == api_rows(db)  # whole day
    assert listed(filtered(app, to="2024-11-24")) == []
    assert listed(filtered(app, company="5", outcome="success", source="cache", ip="127.0.0.1",
                           **{"from": "2024-11-25T08:00"})) == api_rows(db, "data_source = 'cache'")


@pytest.mark.parametrize("name,value,message", [
    ("from", "yesterday", "Use YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]"),
    ("to", "2024-02-30", "Use YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]"),
    ("to", "2024-11-25 25:00", "Use YYYY-MM-DD or YYYY-MM-DD HH:MM[:SS]"),
    ("ip", "10.1.2", "Enter an IPv4 or IPv6 address."),
    ("user", "nobody", "No user has this username."),
])
def test_invalid_filter_shows_its_message_and_no_rows(site, name, value, message):
    db, app, _ = site
    page = filtered(app, **{name: value})
    assert page.status_int == 200
    assert re.search(rf'id="error-{name}">{re.escape(message)}', page.text)
    assert listed(page) == [] and "Export CSV" not in page.text
    assert page.forms["filters"][name].value == value  # kept for correcting


def test_invalid_values_sent_in_the_url(site):
    db, app, _ = site
    page = app.get(PREFIX + "/logs?company=acme&outcome=DROP%20TABLE&source=disk&from=2024-11-25&to=2024-11-24")
    for name in ("company", "outcome", "source"):
        assert f'id="error-{name}"' in page.text
    assert 'id="error-to">The end is before the start.' in page.text
    assert listed(page) == []
    resp = app.get(PREFIX + "/logs.csv?ip=nope")
    assert resp.content_type == "text/html" and 'id="error-ip"' in resp.text


def volume(db, n: int, start: int, **values) -> None:
    """n API rows, two per second (ties on timeaccessed), newest last."""
    row = {"userid": 0, "endpoint": FUNCTION, "record_count": 0, "timeaccessed": 0, "companyid": 6,
           "company_shortname": "globex", "ip_address": "192.0.2.7", "counted": 0, "response_bytes": 0, **values}
    cols = list(row)
    db.insert_rows("local_alx_api_logs", cols, [tuple(start + i // 2 if c == "timeaccessed" else row[c]
                                                      for c in cols) for i in range(n)])


def test_keyset_pages_walk_every_row_once(site):
    db, app, clock = site
    volume(db, 125, NOW - 7200)
    expected = api_rows(db, "companyid = 6")
    page, seen, pages = filtered(app, company="6"), [], 0
    assert "← Newer" not in page.text
    while True:
        ids = listed(page)
        assert len(ids) == (50 if pages < 2 else 25)
        seen += ids
        pages += 1
        if "Older →" not in page.text:
            break
        page = page.click("Older →")
    assert seen == expected and pages == 3
    back = page.click("← Newer")
    assert listed(back) == expected[50:100]
    first = back.click("← Newer")
    assert listed(first) == expected[:50] and "← Newer" not in first.text and "Older →" in first.text
    assert listed(page.click("Newest")) == expected[:50]


def test_detail_shows_every_column(site):
    db, app, _ = site
    rid = api_rows(db, "cache_status = 'miss'")[0]
    page = app.get(PREFIX + f"/logs?id={rid}")
    text = page.text
    for column in COLUMNS:
        assert f"<dt>{column}</dt>" in text
    assert "PowerBI/2.0 (=evil)" in text
    assert "{\n  &#34;auth&#34;: &#34;wstoken&#34;,\n  &#34;format&#34;: &#34;json&#34;," in text  # formatted
    assert "2024-11-25 07:00:00" in text and "api1" in text
    login = db.scalar("SELECT id FROM {t:local_alx_api_logs} WHERE endpoint = 'admin:login'")
    assert "&#34;username&#34;: &#34;admin&#34;" in app.get(PREFIX + f"/logs?id={login}").text
    for bad in ("999999", "abc", "", "1" * 40):
        resp = app.get(PREFIX + f"/logs?id={bad}", expect_errors=True)
        assert resp.status_int == 404 and "There is no log entry with this id." in resp.text


def read_csv(resp) -> list[list[str]]:
    return list(csv.reader(io.StringIO(resp.body.decode("utf-8"))))


def test_csv_export_of_the_filtered_rows(site):
    db, app, clock = site
    volume(db, 2, NOW - 60, error_message="=HYPERLINK(\"http://x\")", user_agent="@SUM(A1)", errorcode="-1",
           company_shortname="Café ☕")
    page = filtered(app, company="6")
    resp = page.click("Export CSV")
    assert resp.status_int == 200 and resp.content_type == "text/csv" and resp.charset == "utf-8"
    local = datetime.fromtimestamp(NOW, ZoneInfo(ZONE)).strftime("%Y%m%d_%H%M")
    assert local == "20241125_1000"
    assert resp.headers["Content-Disposition"] == f'attachment; filename="alx_api_logs_{local}.csv"'
    rows = read_csv(resp)
    assert rows[0] == COLUMNS
    assert [int(r[0]) for r in rows[1:]] == api_rows(db, "companyid = 6")
    one = dict(zip(COLUMNS, rows[1], strict=True))
    assert one["error_message"] == "'=HYPERLINK(\"http://x\")" and one["user_agent"] == "'@SUM(A1)"
    assert one["errorcode"] == "'-1" and one["company_shortname"] == "Café ☕"
    assert one["timeaccessed"] == str(NOW - 60) and one["response_time_ms"] == "" and one["counted"] == "0"
    # every API row, with the real calls' values
    rows = read_csv(app.get(PREFIX + "/logs.csv?company=5"))
    real = dict(zip(COLUMNS, rows[-1], strict=True))  # the oldest: the first call
    assert real["user_agent"] == "PowerBI/2.0 (=evil)" and real["cache_status"] == "miss"
    assert real["endpoint"] == FUNCTION and re.fullmatch(r"\d+\.\d\d", real["response_time_ms"])
    assert len(read_csv(app.get(PREFIX + "/logs.csv?function=admin:login"))) == 2


def test_csv_streams_in_batches_up_to_the_limit(site, monkeypatch):
    db, app, _ = site
    volume(db, 2500, NOW - 5000)
    expected = api_rows(db, "companyid = 6")
    rows = read_csv(app.get(PREFIX + "/logs.csv?company=6"))
    assert [int(r[0]) for r in rows[1:]] == expected  # three batches of 1000, ties kept in order
    monkeypatch.setattr(logs, "CSV_BATCH", 7)
    monkeypatch.setattr(logs, "CSV_MAX", 30)
    resp = app.get(PREFIX + "/logs.csv?company=6")
    assert [int(r[0]) for r in read_csv(resp)[1:]] == expected[:30]
    # the body is produced chunk by chunk as the client reads it
    filters = logs.Filters({"company": "6", **{k: "" for k in logs.FILTERS if k != "company"}})
    filters.add("companyid = ?", 6)
    chunks = list(logs.csv_chunks(db, filters))
    assert len(chunks) == 1 + 5  # header, then batches of 7, 7, 7, 7, 2


def test_signed_out_and_removed_admin(site):
    db, app, clock = site
    for path in ("/logs", "/logs.csv", "/logs?id=1"):
        resp = admin_app(db, NOW).get(PREFIX + path, expect_errors=True)
        assert resp.status_int == 303 and "/login?next=" in resp.location
    assert app.get(PREFIX + "/logs").status_int == 200
    db.execute("UPDATE {t:config} SET value = '' WHERE name = 'siteadmins'")
    resp = app.get(PREFIX + "/logs.csv", expect_errors=True)
    assert resp.status_int == 303 and "/login?next=" in resp.location
