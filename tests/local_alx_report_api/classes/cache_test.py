"""The response cache (sync-and-cache.md 9): hits, isolation, invalidation, TTL, corruption."""

import json

import pytest

from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.sites import NOW, acme_and_globex, api_token
from tests.tasks import task_env
from tests.webapp import make_app, progress


@pytest.fixture
def site(db):
    b = acme_and_globex(db)
    tokens = {"acme1": api_token(b, 5, "1" * 32, "api1"), "acme2": api_token(b, 5, "2" * 32, "api2"),
              "globex": api_token(b, 6, "3" * 32, "api3")}
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (5, 'sync_mode', 2, 0, 0)")
    sync_task.execute(task_env(db, NOW))
    return db, make_app(db, NOW), tokens


def last_log(db):
    row = db.execute("SELECT data_source, cache_status, additional_data FROM {t:local_alx_api_logs} "
                     "ORDER BY id DESC LIMIT 1").fetchone()
    return row[0], row[1], json.loads(row[2])


def test_second_identical_page_is_a_hit_and_counts(site):
    db, app, tokens = site
    first = progress(app, tokens["acme1"], limit=3).body
    assert last_log(db)[:2] == ("table", "miss")
    assert progress(app, tokens["acme1"], limit=3).body == first
    assert last_log(db)[:2] == ("cache", "hit")
    assert progress(app, tokens["acme2"], limit=3).body == first  # another token, same position: shared
    assert db.scalar("SELECT hit_count FROM {t:local_alx_api_cache}") == 2
    key = db.scalar("SELECT cache_key FROM {t:local_alx_api_cache}")
    assert key.startswith("api_response_5_full_0_a0-0_3_") and key.endswith("_6")  # six changes so far


def test_companies_and_modes_never_share_pages(site):
    db, app, tokens = site
    acme = progress(app, tokens["acme1"], limit=10).body
    globex = progress(app, tokens["globex"], limit=10).body
    assert acme != globex and [e["userid"] for e in json.loads(globex)] == [101]
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (6, 'sync_mode', 1, 0, 0)")
    assert json.loads(progress(app, tokens["globex"], limit=10).body) == []  # incremental: its own pages
    keys = [r[0] for r in db.rows("SELECT cache_key FROM {t:local_alx_api_cache} ORDER BY id")]
    assert len(keys) == len(set(keys)) == 3


def test_a_settings_change_is_visible_on_the_very_next_request(site):
    db, app, tokens = site
    progress(app, tokens["acme1"], limit=3)
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (5, 'field_email', 0, 0, 0)")
    page = json.loads(progress(app, tokens["acme1"], limit=3).body)
    assert "email" not in page[0] and last_log(db)[1] == "miss"


def test_changed_rows_and_disabled_cache(site):
    db, app, tokens = site
    progress(app, tokens["acme1"], limit=3)
    db.execute("UPDATE {t:user} SET firstname = 'Sara', timemodified = ? WHERE id = 101", (NOW + 10,))
    sync_task.execute(task_env(db, NOW + 20))  # a changed row purges the company's cache
    assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_cache} WHERE companyid = 5") == 0
    assert json.loads(progress(app, tokens["acme1"], limit=3).body)[0]["firstname"] == "Sara"
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (5, 'enable_cache', 0, 0, 0)")
    db.execute("DELETE FROM {t:local_alx_api_cache}")
    progress(app, tokens["acme1"], limit=3)
    assert last_log(db)[:2] == ("table", "off")
    assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_cache}") == 0


def test_expired_and_corrupt_entries_are_misses(site):
    db, app, tokens = site
    body = progress(app, tokens["acme1"], limit=3).body
    db.execute("UPDATE {t:local_alx_api_cache} SET expires_at = ?", (NOW - 1,))
    assert progress(app, tokens["acme1"], limit=3).body == body and last_log(db)[1] == "miss"
    db.execute("UPDATE {t:local_alx_api_cache} SET cache_data = '{\"rows\": 5}'")
    assert progress(app, tokens["acme1"], limit=3).body == body
    source, status, extra = last_log(db)
    assert (source, status, extra["cache_corrupt"]) == ("table", "miss", True)
    assert json.loads(db.scalar("SELECT cache_data FROM {t:local_alx_api_cache}"))["count"] == 3
    ttl = db.scalar("SELECT expires_at - cache_timestamp FROM {t:local_alx_api_cache}")
    assert ttl == 3600
