"""Cache page (admin-ui.md 3.6): totals and companies from the cache table and the request log,
and the three purges through the page's own forms, checked by the next REST call's log row."""

from __future__ import annotations

import re

import pytest

from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.admin import PREFIX, admin_app, sign_in, submit
from tests.sites import NOW, acme_and_globex, api_token, company_setting, new_site
from tests.tasks import task_env
from tests.webapp import progress


@pytest.fixture
def site(db):
    """acme (5) and globex (6), Always full; acme's first page asked twice (miss, hit), globex's once."""
    b = acme_and_globex(db)
    tokens = {5: api_token(b, 5, "1" * 32, "api1"), 6: api_token(b, 6, "3" * 32, "api3")}
    for cid in (5, 6):
        company_setting(db, cid, "sync_mode", 2)
    sync_task.execute(task_env(db, NOW - 60))
    app = admin_app(db, NOW)
    progress(app, tokens[5], limit=3)
    progress(app, tokens[5], limit=3)
    progress(app, tokens[6], limit=3)
    sign_in(app)
    return db, app, tokens


def count(db, where: str = "1 = 1") -> int:
    return int(db.scalar(f"SELECT COUNT(*) FROM {{t:local_alx_api_cache}} WHERE {where}"))


def last_cache_status(db) -> str:
    return db.scalar("SELECT cache_status FROM {t:local_alx_api_logs} WHERE endpoint NOT LIKE 'admin:%' "
                     "ORDER BY id DESC LIMIT 1")


def expired_entry(db, companyid: int = 6, data: str = '{"rows":[],"count":0,"last":null,"note":"é ☕"}') -> None:
    db.insert("local_alx_api_cache", {"cache_key": f"old_{companyid}", "companyid": companyid, "cache_data": data,
                                      "cache_timestamp": NOW - 7200, "expires_at": NOW - 3600, "hit_count": 4,
                                      "last_accessed": NOW - 3600})


def card(page, title: str) -> str:
    return re.search(rf"<h2>{re.escape(title)}</h2><p class=\"big\">([^<]*)</p>", page.text).group(1)


def company_row(page, shortname: str) -> list[str]:
    row = re.search(rf"<tr>\s*<td><a [^>]*>[^<]*</a> <small class=\"muted\">{shortname} · .*?</tr>", page.text, re.S)
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)]


def test_totals_and_companies(site):
    db, app, _ = site
    expired_entry(db)
    company_setting(db, 6, "enable_cache", 0)
    company_setting(db, 6, "cache_ttl_minutes", 5)
    # older lookups: inside 24 h but outside the 60-minute metrics window
    db.insert_rows("local_alx_api_logs", ["userid", "endpoint", "timeaccessed", "companyid", "cache_status"],
                   [(0, "local_alx_report_api_get_course_progress", NOW - 7200, 6, "hit")] * 3
                   + [(0, "admin:login", NOW - 60, 0, "hit")])  # sign-ins never count
    size = sum(len(d.encode("utf-8")) for (d,) in db.rows("SELECT cache_data FROM {t:local_alx_api_cache}"))
    page = app.get(PREFIX + "/cache")
    assert card(page, "Entries") == "3" and card(page, "Active") == "2" and card(page, "Expired") == "1"
    assert card(page, "Total hits") == "5"  # one real hit + the inserted entry's 4
    assert card(page, "Stored size") == f"{size:,} bytes" and size > 100
    assert card(page, "Hit rate 24 h") == "66.7%"  # (1 + 3) hits of (3 + 3) lookups
    assert card(page, "Hit rate 60 min") == "33.3%"  # 1 hit of 3 lookups
    assert company_row(page, "acme")[1:7] == ["1", "1", "1", "50.0%", "on", "60"]
    assert company_row(page, "globex")[1:7] == ["2", "1", "4", "75.0%", "off", "5"]
    wide = admin_app(db, NOW, local_alx_report_api__metrics_window_minutes="180")
    sign_in(wide)
    assert card(wide.get(PREFIX + "/cache"), "Hit rate 180 min") == "66.7%"


def test_empty_cache(db):
    new_site(db)
    app = admin_app(db, NOW)
    sign_in(app)
    page = app.get(PREFIX + "/cache")
    assert card(page, "Entries") == "0" and card(page, "Stored size") == "0 bytes"
    assert card(page, "Hit rate 24 h") == "—"


def test_purge_expired(site):
    db, app, tokens = site
    expired_entry(db)
    resp = app.get(PREFIX + "/cache").forms["purge-expired"].submit()
    assert resp.status_int == 303 and resp.location.endswith(PREFIX + "/cache")
    assert "Deleted 1 expired cache entry." in resp.follow().text
    assert count(db) == 2 and count(db, f"expires_at < {NOW}") == 0
    progress(app, tokens[5], limit=3)
    assert last_cache_status(db) == "hit"  # active entries stay
    resp = app.get(PREFIX + "/cache").forms["purge-expired"].submit()
    assert "Deleted 0 expired cache entries." in resp.follow().text


def test_purge_one_company_makes_its_next_call_a_miss(site):
    db, app, tokens = site
    page = app.get(PREFIX + "/cache")
    resp = page.forms["purge-company-5"].submit()
    assert resp.status_int == 303
    assert "Deleted 1 cache entry of company acme." in resp.follow().text
    assert count(db, "companyid = 5") == 0 and count(db, "companyid = 6") == 1
    progress(app, tokens[5], limit=3)
    assert last_cache_status(db) == "miss"
    progress(app, tokens[6], limit=3)
    assert last_cache_status(db) == "hit"  # the other company's cache is untouched


def test_purge_a_deleted_companys_leftovers(site):
    db, app, _ = site
    expired_entry(db, companyid=77)
    page = app.get(PREFIX + "/cache")
    assert "deleted company 77" in page.text
    resp = page.forms["purge-company-77"].submit()
    assert "Deleted 1 cache entry of company id 77." in resp.follow().text
    assert count(db, "companyid = 77") == 0


@pytest.mark.parametrize("companyid", ["999", "abc", "", "-5", "1" * 30])
def test_purge_unknown_company_is_404_and_changes_nothing(site, companyid):
    db, app, _ = site
    resp = submit(app, "/cache/purge-company", companyid=companyid)
    assert resp.status_int == 404 and "There is no company with this id." in resp.text
    assert count(db) == 2


def test_purge_all_asks_first(site):
    db, app, tokens = site
    page = app.get(PREFIX + "/cache")
    confirm = page.click("Purge all…")
    assert "This deletes all 2 cache entries of every company" in confirm.text
    assert count(db) == 2  # the confirmation page changes nothing
    assert "Deleted 2 cache entries: the whole cache." in confirm.forms["purge-all"].submit().follow().text
    assert count(db) == 0
    progress(app, tokens[6], limit=3)
    assert last_cache_status(db) == "miss"
    assert confirm.click("Cancel").request.path == PREFIX + "/cache"


@pytest.mark.parametrize("path,fields", [("/cache/purge-expired", {}), ("/cache/purge-company", {"companyid": "5"}),
                                         ("/cache/purge-all", {})])
def test_forms_need_sesskey_and_a_signed_in_admin(site, path, fields):
    db, app, _ = site
    expired_entry(db)
    before = count(db)
    for sesskey in (None, "wrong"):
        data = fields if sesskey is None else {**fields, "sesskey": sesskey}
        resp = app.post(PREFIX + path, data, expect_errors=True)
        assert resp.status_int == 403 and "This form has expired" in resp.text
    signed_out = admin_app(db, NOW)
    resp = signed_out.post(PREFIX + path, {**fields, "sesskey": "x"}, expect_errors=True)
    assert resp.status_int == 403
    db.execute("UPDATE {t:config} SET value = '' WHERE name = 'siteadmins'")  # no longer an admin
    assert submit(app, path, **fields).status_int == 403
    assert count(db) == before


def test_pages_send_signed_out_and_removed_admins_to_login(site):
    db, app, _ = site
    for path in ("/cache", "/cache/purge-all"):
        resp = admin_app(db, NOW).get(PREFIX + path, expect_errors=True)
        assert resp.status_int == 303 and "/login?next=" in resp.location
    db.execute("UPDATE {t:config} SET value = '' WHERE name = 'siteadmins'")
    resp = app.get(PREFIX + "/cache", expect_errors=True)
    assert resp.status_int == 303 and "/login?next=" in resp.location
