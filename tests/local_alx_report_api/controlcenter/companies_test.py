"""Companies (admin-ui.md 3.2) and the company page (3.3): the list and its sorting, the page's
state, the settings form (valid, invalid, CSRF, effective on the very next API request), the
actions and clearing company data, through the real HTML forms."""

from __future__ import annotations

import json

import pytest

from local_alx_report_api.classes import company_state, jobs
from local_alx_report_api.controlcenter.companies import BUSY, NO_STATUS, POWER_BI, SWITCHED_ON
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.admin import PREFIX, admin_app, sign_in, submit
from tests.sites import NOW, api_token, new_site, worked_examples
from tests.tasks import task_env
from tests.webapp import progress
from webservice.call import token_hash

TOKEN, TOKEN2 = "a" * 32, "b" * 32
ALL_ROWS = [(101, 12), (102, 12), (103, 12), (104, 13), (105, 12), (106, 12)]


@pytest.fixture
def site(db):
    """Company 5 (acme) of the worked examples, synced: 6 active rows in courses 12 and 13; a
    hidden course 14; a second, empty company 6 (beta); two API tokens of acme."""
    b = new_site(db)
    worked_examples(b)
    b.course("Hidden Course", "HID", courseid=14, visible=0)
    b.company_course(5, 14)
    b.company("Beta Corp", "beta", companyid=6)
    b.flush()
    api_token(b, 5, TOKEN, "api")
    api_token(b, 5, TOKEN2, "api2")
    db.execute("UPDATE {t:external_tokens} SET name = 'Power BI' WHERE token = ?", (TOKEN,))
    sync_task.execute(task_env(db, NOW))
    return b


@pytest.fixture
def app(db, site):
    app = admin_app(db, lambda: app.now)
    app.now = NOW
    assert sign_in(app).status_int == 303
    return app


def pull(app, token=TOKEN, **params):
    resp = progress(app, token, **{"limit": 100, "offset": 0, **params})
    assert resp.status_int == 200, resp.text
    return json.loads(resp.body)


def keys(rows):
    return [(r["userid"], r["courseid"]) for r in rows]


def settings_rows(db, companyid=5):
    return dict(db.rows("SELECT setting_name, setting_value FROM {t:local_alx_api_settings} WHERE companyid = ?",
                        (companyid,)))


def reporting(db, companyid=5):
    return db.rows("SELECT userid, courseid, is_deleted, change_seq FROM {t:local_alx_api_reporting} "
                   "WHERE companyid = ? ORDER BY userid, courseid", (companyid,))


def count(db, table, where="companyid = 5"):
    return int(db.scalar(f"SELECT COUNT(*) FROM {{t:{table}}} WHERE {where}"))


def snapshot(db):
    """Everything a company POST may change."""
    return (settings_rows(db), reporting(db), count(db, "local_alx_api_cache"),
            db.rows("SELECT id, kind, change_seq, state_data FROM {t:local_alx_api_sync_status} ORDER BY id"))


def settings_form(app, companyid=5):
    return app.get(f"{PREFIX}/companies/{companyid}").forms["settings"]


def set_course(form, courseid, on):
    for field in form.fields["course"]:
        if field._value == str(courseid):
            field.checked = on
            return
    raise AssertionError(f"no checkbox for course {courseid}")


def notice(app, resp):
    assert resp.status_int == 303, resp.text
    return resp.follow().html.select_one("p.notice[role=status]").text


# -- the list ----------------------------------------------------------------------------------
def table(page, selector):
    return [[td.get_text(" ", strip=True) for td in tr.select("td")] for tr in page.html.select(f"{selector} tbody tr")]


def test_the_list_has_one_row_per_company_with_its_numbers(app, db, site):
    site.company("Gamma", "gamma", companyid=7)  # created after the sync
    site.flush()
    pull(app)
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (6, 'rate_limit', 0, 0, 0), (6, 'sync_mode', 2, 0, 0), (6, 'enable_cache', 0, 0, 0)")
    page = app.get(PREFIX + "/companies")
    rows = table(page, "#companies")
    assert [r[:6] for r in rows] == [["5", "Acme Learning Ltd", "acme", "2", "6", "0"],
                                     ["6", "Beta Corp", "beta", "0", "0", "0"], ["7", "Gamma", "gamma", "0", "0", "0"]]
    assert [r[6] for r in rows] == ["1 / 100", "0 / unlimited", "0 / 100"]
    assert [r[7] for r in rows] == ["2024-11-25 15:00:00 success", "2024-11-25 15:00:00 success", "never"]
    assert [r[8:] for r in rows] == [["0", "Auto", "on", "Ready"], ["0", "Always full", "off", "Not populated"],
                                     ["0", "Auto", "on", "Not populated"]]
    assert page.html.select_one("#companies a[href$='/companies/5']").text == "Acme Learning Ltd"


@pytest.mark.parametrize("sort,first", [("id", "5"), ("-id", "6"), ("name", "5"), ("-name", "6"),
                                        ("-active", "5"), ("active", "6"), ("status", "6"), ("-courses", "5"),
                                        ("shortname", "5"), ("-shortname", "6"), ("-calls", "5"), ("bogus", "5")])
def test_the_list_sorts_by_any_column(app, sort, first):
    pull(app)
    page = app.get(PREFIX + "/companies", {"sort": sort})
    assert table(page, "#companies")[0][0] == first


def test_a_heading_link_reverses_the_current_sort(app):
    page = app.get(PREFIX + "/companies", {"sort": "active"})
    assert page.html.select_one("th[aria-sort=ascending] a")["href"].endswith("sort=-active")
    assert page.html.select_one("th a[href$='sort=name']") is not None


# -- the company page ------------------------------------------------------------------------------
def test_the_company_page_shows_status_sync_state_clients_and_courses(app, db):
    pull(app)
    app.now = NOW + 60
    pull(app, TOKEN2, limit=2)  # an open pull
    page = app.get(PREFIX + "/companies/5")
    assert page.html.select_one("#data-status").text == "Ready: 6 active rows"
    sync = page.html.select_one("#sync-state").get_text(" ", strip=True)
    assert "success" in sync and "6 pairs checked, inserted 6" in sync and "Pending run none" in sync
    states = table(page, "#client-states")
    assert states[0][0] == "Power BI aaaaaaaa…" and states[0][1].startswith("api API User")
    assert "success" in states[0][2] and "full, 6 rows" in states[0][2] and "2024-11-25 15:00:00" in states[0][2]
    assert states[0][3] == str(company_state.current(db, 5)) and states[0][4] == "none"
    assert states[0][5] == "low → 48 h"  # one call a day: the base window of 24 h doubled
    assert states[1][0] == "(no name) bbbbbbbb…" and states[1][2] == "in progress (none completed yet)"
    assert states[1][4] == "full since 2024-11-25 15:01:00, 2 rows so far Why: Auto: the token's first pull"
    assert "Why: Auto: the token's first pull" in states[0][2]
    assert [r[:2] for r in table(page, "#rate-usage")] == [["api API User", "1"], ["api2 API User", "1"]]
    hidden = page.html.select_one("input[name=course][value='14']")
    assert hidden.has_attr("disabled") and "(hidden: not reported)" in hidden.parent.text
    assert not page.html.select_one("input[name=course][value='12']").has_attr("disabled")
    assert page.html.select_one("#rate_limit")["placeholder"] == "Global default: 100"
    assert POWER_BI in page
    assert NO_STATUS not in page.text


def test_an_unpopulated_company_says_so(app):
    page = app.get(PREFIX + "/companies/6")
    assert page.html.select_one("#data-status").text == \
        "Not populated: answers come from live data until the first sync completes."
    assert "No token has pulled data of this company yet." in page.text


@pytest.mark.parametrize("path", ["/companies/99", "/companies/99/clear-data", "/companies/0", "/companies/-5",
                                  "/companies/99999999999999999999"])
def test_unknown_companies_are_404(app, path):
    page = app.get(PREFIX + path, expect_errors=True)
    assert page.status_int == 404 and page.html.select_one("p.error-page").text.startswith("Company ")


@pytest.mark.parametrize("action", ["", "/sync", "/rebuild", "/clear-cache", "/reset-clients", "/reset-client",
                                    "/clear-data"])
def test_posting_to_an_unknown_company_is_404(app, db, action):
    before = snapshot(db)
    assert submit(app, f"/companies/99{action}", shortname="x", state="1").status_int == 404
    assert snapshot(db) == before


# -- saving settings ---------------------------------------------------------------------------------
def test_switching_a_field_off_removes_the_key_from_the_next_response_and_the_cache(app, db):
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (5, 'sync_mode', 2, 1, 1)")
    assert "email" in pull(app)[0]
    assert "email" in pull(app)[0]  # the second full pull is a cache hit
    assert db.scalar("SELECT cache_status FROM {t:local_alx_api_logs} ORDER BY id DESC LIMIT 1") == "hit"
    app.now = NOW + 60
    form = settings_form(app)
    form["field_email"] = False
    assert notice(app, form.submit()) == "Settings saved."
    stored = settings_rows(db)
    assert stored["field_email"] == 0 and stored["field_userid"] == 1 and stored["sync_mode"] == 2
    assert stored["course_12"] == 1 and stored["course_13"] == 1 and "course_14" not in stored
    assert "rate_limit" not in stored and stored["sync_window_hours"] == 24 and stored["cache_ttl_minutes"] == 60
    assert db.rows("SELECT timecreated, timemodified FROM {t:local_alx_api_settings} WHERE companyid = 5 AND "
                   "setting_name IN ('sync_mode', 'field_email') ORDER BY setting_name") == [(NOW + 60, NOW + 60),
                                                                                            (1, NOW + 60)]
    assert count(db, "local_alx_api_cache") == 0
    rows = pull(app)
    assert keys(rows) == ALL_ROWS and all("email" not in r and "firstname" in r for r in rows)
    assert db.scalar("SELECT cache_status FROM {t:local_alx_api_logs} ORDER BY id DESC LIMIT 1") == "miss"
    assert reporting(db) == [(u, c, 0, s) for u, c, _, s in reporting(db)]  # rows untouched


def test_switching_a_course_off_tombstones_its_rows_at_once(app, db):
    assert keys(pull(app)) == ALL_ROWS  # token 1's first (full) pull
    assert keys(pull(app, TOKEN2, limit=4)) == ALL_ROWS[:4]  # caches a first page of the old scope
    before = dict(((u, c), s) for u, c, _, s in reporting(db))
    app.now = NOW + 60
    form = settings_form(app)
    set_course(form, 13, False)
    assert notice(app, form.submit()) == "Settings saved. 1 rows of switched-off courses were removed from the reports."
    assert settings_rows(db)["course_13"] == 0
    after = {(u, c): (d, s) for u, c, d, s in reporting(db)}
    assert after[(104, 13)] == (1, company_state.current(db, 5)) and company_state.current(db, 5) > max(before.values())
    assert all(after[k] == (0, before[k]) for k in before if k != (104, 13))
    assert count(db, "local_alx_api_cache") == 0
    app.now = NOW + 120
    delta = pull(app)  # Auto, within the window: incremental
    assert [(r["userid"], r["courseid"], r["status"]) for r in delta] == [(104, 13, "deleted")]
    submit(app, "/companies/5/reset-client", state=str(db.scalar(
        "SELECT id FROM {t:local_alx_api_sync_status} WHERE kind = 'api' AND token_hash = ?",
        (token_hash(TOKEN2),))))
    # a new full pull; its first page was cached under the old scope, but is never served again
    first = pull(app, TOKEN2, limit=4)
    assert keys(first) == [(101, 12), (102, 12), (103, 12), (105, 12)]
    assert keys(first + pull(app, TOKEN2, limit=4, offset=4)) == [k for k in ALL_ROWS if k != (104, 13)]


def test_switching_a_course_on_queues_a_sync_that_brings_its_rows(app, db):
    form = settings_form(app)
    set_course(form, 13, False)
    form.submit()
    assert keys(pull(app)) == [k for k in ALL_ROWS if k != (104, 13)]
    app.now = NOW + 60
    form = settings_form(app)
    assert not form.get("course", index=1).checked
    set_course(form, 13, True)
    assert notice(app, form.submit()) == "Settings saved. " + SWITCHED_ON
    [job] = jobs.recent(db)
    assert (job["type"], job["companyids"], job["status"], job["userid"]) == ("sync", [5], "queued", 2)
    assert settings_rows(db)["course_13"] == 1
    jobs.run_queued(task_env(db, NOW + 90))
    assert jobs.get(db, job["id"])["status"] == "success"
    app.now = NOW + 120
    assert keys(pull(app)) == [(104, 13)]  # the incremental pull brings the reactivated row
    page = app.get(PREFIX + "/companies/5")
    assert table(page, "#jobs")[0][:4] == [str(job["id"]), "sync", "5", "success"]


def test_invalid_values_are_shown_next_to_each_field_and_nothing_changes(app, db):
    pull(app)
    before = snapshot(db)
    form = settings_form(app)
    form["field_email"] = False
    set_course(form, 13, False)
    form["sync_window_hours"] = "9999"
    form["cache_ttl_minutes"] = "0"
    form["rate_limit"] = "-1"
    page = form.submit()
    assert page.status_int == 200
    assert page.html.select_one("#page-error").text.startswith("The settings were not saved")
    assert page.html.select_one("#error-sync_window_hours").text == "Enter a whole number from 0 to 8760."
    assert page.html.select_one("#error-cache_ttl_minutes").text == "Enter a whole number from 1 to 1440."
    assert page.html.select_one("#error-rate_limit").text == "Enter a whole number from 0 to 1000000."
    assert page.html.select_one("#error-sync_mode") is None
    assert snapshot(db) == before
    # the form keeps what was typed
    again = page.forms["settings"]
    assert again["sync_window_hours"].value == "9999" and not again["field_email"].checked
    assert not again.get("course", index=1).checked


@pytest.mark.parametrize("field,value,message", [
    ("sync_mode", "4", "Choose one of the listed modes."), ("sync_mode", "", "Choose one of the listed modes."),
    ("sync_window_hours", "1.5", "Enter a whole number from 0 to 8760."),
    ("sync_window_hours", "²", "Enter a whole number from 0 to 8760."),
    ("cache_ttl_minutes", "1441", "Enter a whole number from 1 to 1440."),
    ("rate_limit", "1000001", "Enter a whole number from 0 to 1000000."),
    ("rate_limit_per_pull", "2", "Choose one of the listed modes."),
    ("course", "99", "Course 99 is not a course of this company.")])
def test_each_range_is_checked(app, db, field, value, message):
    before = snapshot(db)
    fields = {"sync_mode": "0", "sync_window_hours": "24", "cache_ttl_minutes": "60", "rate_limit": "", field: value}
    page = submit(app, "/companies/5", **fields)
    assert page.status_int == 200
    assert page.html.select_one(f"#error-{field if field != 'course' else 'courses'}").text == message
    assert snapshot(db) == before


def test_the_rate_limit_row_is_written_and_deleted(app, db):
    form = settings_form(app)
    form["rate_limit"] = "1"
    notice(app, form.submit())
    assert settings_rows(db)["rate_limit"] == 1
    assert progress(app, TOKEN, limit=1).headers["X-RateLimit-Limit"] == "1"
    assert json.loads(progress(app, TOKEN, limit=1).body)["errorcode"] == "ratelimitexceeded"
    page = app.get(PREFIX + "/companies/5")
    assert [r[:3] for r in table(page, "#rate-usage")][0] == ["api API User", "1", "1"]
    form = page.forms["settings"]
    assert form["rate_limit"].value == "1"
    form["rate_limit"] = ""
    notice(app, form.submit())
    assert "rate_limit" not in settings_rows(db)
    assert progress(app, TOKEN, limit=1).headers["X-RateLimit-Limit"] == "100"
    form = settings_form(app)
    form["rate_limit"] = "0"
    notice(app, form.submit())
    assert settings_rows(db)["rate_limit"] == 0 and "X-RateLimit-Limit" not in progress(app, TOKEN, limit=1).headers


def test_what_the_limit_counts_is_a_company_setting(app, db):
    """Issue 12: each pull once (the global default), every request, or the global value again."""
    form = settings_form(app)
    assert form["rate_limit_per_pull"].value == "" and "Global default: each pull once" in app.get(
        PREFIX + "/companies/5").text
    form["rate_limit"] = "2"
    notice(app, form.submit())
    assert len(pull(app, limit=1)) == 1 and len(pull(app, limit=1, offset=1)) == 1
    assert len(pull(app, limit=1, offset=2)) == 1  # next pages are free
    form = settings_form(app)
    form["rate_limit_per_pull"] = "0"
    notice(app, form.submit())
    assert settings_rows(db)["rate_limit_per_pull"] == 0
    assert settings_form(app)["rate_limit_per_pull"].value == "0"
    assert len(pull(app, limit=1, offset=3)) == 1  # counted: the second of two
    assert pull(app, limit=1, offset=4)["errorcode"] == "ratelimitexceeded"
    form = settings_form(app)
    form["rate_limit_per_pull"] = ""
    notice(app, form.submit())
    assert "rate_limit_per_pull" not in settings_rows(db)
    assert len(pull(app, limit=1, offset=4)) == 1  # free again


def test_mode_window_deletions_and_cache_settings_reach_the_api(app, db):
    pull(app)
    form = settings_form(app)
    form["sync_mode"] = "1"
    form["sync_window_hours"] = "0"
    form["incremental_deletions"] = False
    form["adaptive_sync_window"] = False
    form["enable_cache"] = False
    form["cache_ttl_minutes"] = "5"
    notice(app, form.submit())
    stored = settings_rows(db)
    assert [stored[n] for n in ("sync_mode", "sync_window_hours", "incremental_deletions", "adaptive_sync_window",
                                "enable_cache", "cache_ttl_minutes")] == [1, 0, 0, 0, 0, 5]
    form = settings_form(app)
    assert form["sync_mode"].value == "1" and not form["enable_cache"].checked
    set_course(form, 13, False)
    notice(app, form.submit())
    assert pull(app) == []  # Always incremental, no deletions: the tombstone is not sent
    assert db.rows("SELECT sync_mode, cache_status FROM {t:local_alx_api_logs} ORDER BY id DESC LIMIT 1") == \
        [("incremental", "off")]


def test_the_status_note_appears_when_deletions_are_on_without_the_status_field(app, db):
    form = settings_form(app)
    form["field_status"] = False
    page = form.submit().follow()
    assert page.html.select_one("#status-note").text == NO_STATUS
    form = page.forms["settings"]
    form["incremental_deletions"] = False
    assert NO_STATUS not in form.submit().follow().text


# -- actions -------------------------------------------------------------------------------------------
def action_form(page, path):
    return next(f for f in page.forms.values() if f.action.endswith(path))


def test_sync_now_and_rebuild_queue_jobs_and_a_second_rebuild_is_refused(app, db):
    page = app.get(PREFIX + "/companies/5")
    resp = action_form(page, "/companies/5/sync").submit()
    [sync] = jobs.recent(db)
    assert notice(app, resp) == f"Sync job {sync['id']} queued."
    assert (sync["type"], sync["companyids"], sync["userid"]) == ("sync", [5], 2)
    resp = action_form(page, "/companies/5/rebuild").submit()
    populate = jobs.recent(db)[0]
    assert notice(app, resp) == f"Rebuild (populate) job {populate['id']} queued."
    assert (populate["type"], populate["companyids"], populate["status"]) == ("populate", [5], "queued")
    refused = action_form(page, "/companies/5/rebuild").submit()
    assert refused.status_int == 200
    assert refused.html.select_one("#page-error").text == "A job for this company is already queued or running."
    assert len(jobs.recent(db)) == 2
    assert table(app.get(PREFIX + "/companies/5"), "#jobs")[0][:4] == [str(populate["id"]), "populate", "5", "queued"]


def test_clear_cache_empties_the_company_cache_only(app, db):
    pull(app)
    pull(app, TOKEN2)
    db.execute("INSERT INTO {t:local_alx_api_cache} (cache_key, companyid, cache_data, cache_timestamp, expires_at, "
               "hit_count, last_accessed) VALUES ('other', 6, '{}', 0, 0, 0, 0)")
    resp = action_form(app.get(PREFIX + "/companies/5"), "/clear-cache").submit()
    assert notice(app, resp) == "Cache cleared: 1 entries deleted."
    assert count(db, "local_alx_api_cache") == 0 and count(db, "local_alx_api_cache", "companyid = 6") == 1


def test_reset_all_client_states_makes_every_next_pull_a_first_pull(app, db):
    pull(app)
    pull(app, TOKEN2)
    app.now = NOW + 60
    assert pull(app) == []  # incremental: nothing changed
    resp = action_form(app.get(PREFIX + "/companies/5"), "/reset-clients").submit()
    assert notice(app, resp) == "2 client states reset: every client's next pull is a first pull."
    assert count(db, "local_alx_api_sync_status", "kind = 'api'") == 0
    assert count(db, "local_alx_api_sync_status", "kind = 'cron' AND companyid = 5") == 1
    assert keys(pull(app)) == ALL_ROWS


def test_reset_one_client_state(app, db):
    pull(app)
    pull(app, TOKEN2)
    db.execute("INSERT INTO {t:local_alx_api_sync_status} (companyid, token_hash, kind, created_at, updated_at) "
               "VALUES (6, 'x', 'api', 0, 0)")
    other = db.scalar("SELECT id FROM {t:local_alx_api_sync_status} WHERE companyid = 6 AND kind = 'api'")
    page = app.get(PREFIX + "/companies/5")
    [first, second] = [f for f in page.forms.values() if f.action.endswith("/reset-client")]
    assert notice(app, second.submit()) == "Client state reset: the token's next pull is a first pull."
    hashes = [r[0] for r in db.rows("SELECT token_hash FROM {t:local_alx_api_sync_status} WHERE kind = 'api' AND "
                                    "companyid = 5")]
    assert hashes == [token_hash(TOKEN)]
    before = snapshot(db)
    for state in (str(other), "abc", "", str(2**70), first["state"].value + "0"):
        assert submit(app, "/companies/5/reset-client", state=state).status_int == 404  # not this company's
    assert snapshot(db) == before


def test_clear_company_data_after_typing_the_shortname(app, db):
    pull(app)
    app.now = NOW + 60
    page = action_form(app.get(PREFIX + "/companies/5"), "/companies/5/clear-data").submit()
    assert "6 active and 0 deleted reporting rows" in page.html.select_one("#clear-counts").get_text(" ", strip=True)
    before = snapshot(db)
    form = page.forms["clear-data"]
    form["shortname"] = "ACME"
    wrong = form.submit()
    assert wrong.status_int == 200
    assert wrong.html.select_one("#error-shortname").text == "Type the company shortname acme to confirm."
    assert snapshot(db) == before
    form = wrong.forms["clear-data"]
    form["shortname"] = " acme "
    counter = db.scalar("SELECT change_seq FROM {t:local_alx_api_sync_status} WHERE companyid = 5 AND kind = 'cron'")
    assert counter > 0
    assert notice(app, form.submit()) == \
        "Company data cleared: 6 reporting rows, 2 sync states and 1 cache entries deleted."
    assert count(db, "local_alx_api_reporting") == 0 and count(db, "local_alx_api_cache") == 0
    assert count(db, "local_alx_api_sync_status", "companyid = 5 AND kind <> 'cron'") == 0
    # the cron row is a new row's again, but for its change counter, which never goes back (decision 136)
    assert db.rows("SELECT state_data, total_syncs, last_sync_timestamp, change_seq FROM {t:local_alx_api_sync_status} "
                   "WHERE companyid = 5 AND kind = 'cron'") == [(None, 0, 0, counter)]
    assert count(db, "local_alx_api_sync_status", "companyid = 6 AND kind = 'cron'") == 1
    assert app.get(PREFIX + "/companies/5").html.select_one("#data-status").text.startswith("Not populated")
    assert keys(pull(app)) == ALL_ROWS  # live data, a first pull
    assert db.scalar("SELECT data_source FROM {t:local_alx_api_logs} ORDER BY id DESC LIMIT 1") == "live"
    sync_task.execute(task_env(db, NOW + 120))  # the next sync is a first (full) sync
    assert count(db, "local_alx_api_reporting", "companyid = 5 AND is_deleted = 0") == 6


def test_clear_company_data_waits_for_nobody(app, db):
    before = snapshot(db)
    form = app.get(PREFIX + "/companies/5/clear-data").forms["clear-data"]
    form["shortname"] = "acme"
    with db.lock("company_5"):
        busy = form.submit()
    assert busy.status_int == 200 and busy.html.select_one("#page-error").text == BUSY
    assert snapshot(db) == before
    assert busy.forms["clear-data"]["shortname"].value == "acme"


# -- who may post ----------------------------------------------------------------------------------------
POSTS = [("/companies/5", {"sync_mode": "2", "sync_window_hours": "1", "cache_ttl_minutes": "1"}),
         ("/companies/5/sync", {}), ("/companies/5/rebuild", {}), ("/companies/5/clear-cache", {}),
         ("/companies/5/reset-clients", {}), ("/companies/5/reset-client", {"state": "1"}),
         ("/companies/5/clear-data", {"shortname": "acme"})]


@pytest.mark.parametrize("path,fields", POSTS)
def test_a_post_without_the_right_sesskey_is_refused_and_changes_nothing(app, db, path, fields):
    pull(app)
    before = snapshot(db)
    for sesskey in (None, "wrong"):
        data = {**fields, **({"sesskey": sesskey} if sesskey else {})}
        resp = app.post(PREFIX + path, data, expect_errors=True)
        assert resp.status_int == 403 and "This form has expired" in resp.text
    assert snapshot(db) == before


@pytest.mark.parametrize("path,fields", POSTS)
def test_signed_out_posts_are_refused(db, site, path, fields):
    app = admin_app(db, NOW)
    before = snapshot(db)
    assert app.post(PREFIX + path, {**fields, "sesskey": "x"}, expect_errors=True).status_int == 403
    assert snapshot(db) == before


@pytest.mark.parametrize("path", ["/companies", "/companies/5", "/companies/5/clear-data"])
def test_signed_out_pages_go_to_the_login(db, site, path):
    resp = admin_app(db, NOW).get(PREFIX + path)
    assert resp.status_int == 303 and resp.location.endswith(f"{PREFIX}/login?next={PREFIX}{path}")


def test_an_admin_removed_from_siteadmins_is_sent_to_the_login(app, db):
    assert app.get(PREFIX + "/companies").status_int == 200
    db.execute("UPDATE {t:config} SET value = '' WHERE name = 'siteadmins'")
    resp = app.get(PREFIX + "/companies/5")
    assert resp.status_int == 303 and "/login?next=" in resp.location
    before = snapshot(db)
    form_post = app.post(PREFIX + "/companies/5/reset-clients", {"sesskey": "x"}, expect_errors=True)
    assert form_post.status_int == 403 and snapshot(db) == before


def test_a_non_admin_cannot_sign_in(db, site):
    from moodle_core.generator import moodle_password_hash

    site.user("teacher", "Tea", "Cher", "t@example.com", userid=60, password_hash=moodle_password_hash("Tea#1", 4))
    site.flush()
    app = admin_app(db, NOW)
    assert "Invalid login" in sign_in(app, "teacher", "Tea#1").text
    assert app.get(PREFIX + "/companies").status_int == 303
