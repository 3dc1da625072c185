"""What a worker reuses between requests (decision 116) and what it never does: with
config_cache_seconds on, a revoked token, a suspended user and a switched-off field take effect
on the very next request; a removed capability within the period, not after it. JSON and XML
pages are separate cache entries, and a hit sends the bytes the miss sent (decision 115)."""

from __future__ import annotations

import json
import time

from tests.sites import NOW, company_setting, synced_company
from tests.webapp import FUNCTION, make_app, post, progress


def app_with_reuse(db, seconds: int = 60):
    return make_app(db, NOW, local_alx_report_api__config_cache_seconds=str(seconds),
                    local_alx_report_api__enable_cache="1")


def test_tokens_users_and_settings_are_read_by_every_request(db):
    token = synced_company(db, users=4, courses=2)
    app = app_with_reuse(db)
    assert len(json.loads(progress(app, token, limit=10).body)) == 8
    company_setting(db, 1, "field_email", 0)
    assert all("email" not in e for e in json.loads(progress(app, token, limit=10).body))
    uid = db.scalar("SELECT userid FROM {t:external_tokens} WHERE token = ?", (token,))
    db.execute("UPDATE {t:user} SET suspended = 1 WHERE id = ?", (uid,))
    assert json.loads(progress(app, token, limit=10).body)["errorcode"] == "wsaccessusersuspended"
    db.execute("UPDATE {t:user} SET suspended = 0 WHERE id = ?", (uid,))
    db.execute("DELETE FROM {t:external_tokens} WHERE token = ?", (token,))
    assert json.loads(progress(app, token, limit=10).body)["errorcode"] == "invalidtoken"


def test_a_removed_capability_holds_until_the_period_ends(db):
    token = synced_company(db, users=2, courses=1)
    app = app_with_reuse(db, seconds=1)
    assert progress(app, token, limit=5).status_int == 200
    db.execute("DELETE FROM {t:role_capabilities} WHERE capability = 'webservice/rest:use'")
    kept = json.loads(progress(app, token, limit=5).body)
    assert isinstance(kept, list)  # reused within the second
    time.sleep(1.1)
    refused = json.loads(progress(app, token, limit=5).body)
    assert refused["errorcode"] == "accessexception"


def test_json_and_xml_pages_are_separate_entries_and_hits_send_the_same_bytes(db):
    token = synced_company(db, users=6, courses=3)
    app = app_with_reuse(db)
    answers = {}
    for fmt in ("json", "xml", "json", "xml"):
        resp = post(app, wstoken=token, wsfunction=FUNCTION, moodlewsrestformat=fmt, limit=7)
        answers.setdefault(fmt, []).append(resp.body)
    assert answers["json"][0] == answers["json"][1] and answers["xml"][0] == answers["xml"][1]
    assert answers["xml"][0].startswith(b"<?xml") and answers["xml"][0].count(b"<SINGLE>") == 7
    stored = db.rows("SELECT cache_data, hit_count FROM {t:local_alx_api_cache} ORDER BY id")
    assert [h for _, h in stored] == [1, 1]
    assert json.loads(stored[0][0])["rows"] == json.loads(answers["json"][0])  # the spec's shape, as sent
    assert json.loads(stored[1][0])["xml"].encode() == answers["xml"][0]
