"""`core_webservice_get_site_info` keys 17–21 on every engine, as Moodle 4.4 computes them
(core_webservice_external::get_site_info; decision 101): capabilities in the user's context,
the quota, the upload limit, the home page and the private access key of `user_private_key`."""

import json
import re
import threading

import pytest

from tests.sites import generated_site
from tests.webapp import make_app, post
from tests.webservice.captures_test import CAPTURES

NOW = 1760040000
SITE_INFO = "core_webservice_get_site_info"
KEYS = ("usercanmanageownfiles", "userquota", "usermaxuploadfilesize", "userhomepage")
KEY_COLUMNS = ("value", "script", "userid", "instance", "iprestriction", "validuntil", "timecreated")
MiB = 1024 * 1024


@pytest.fixture
def site(db):
    return generated_site(db, NOW, companies=1, users=5, seed=3)


def info(db, token, fmt="json", now=NOW):
    resp = post(make_app(db, now), wstoken=token, wsfunction=SITE_INFO, moodlewsrestformat=fmt)
    assert resp.status_int == 200
    return json.loads(resp.body) if fmt == "json" else resp.body


def manager(db, site):
    token = site.tokens[0][0]
    return token, db.scalar("SELECT userid FROM {t:external_tokens} WHERE token = ?", (token,))


def set_config(db, name, value):
    db.execute("DELETE FROM {t:config} WHERE name = ?", (name,))
    if value is not None:
        db.execute("INSERT INTO {t:config} (name, value) VALUES (?, ?)", (name, value))


def grant(db, roleid, contextid, capability, permission=1):
    db.execute("INSERT INTO {t:role_capabilities} (contextid, roleid, capability, permission, timemodified, "
               "modifierid) VALUES (?, ?, ?, ?, 0, 2)", (contextid, roleid, capability, permission))


def user_context(db, userid):
    return db.scalar("SELECT id FROM {t:context} WHERE contextlevel = 30 AND instanceid = ?", (userid,))


def keys(db):
    return db.rows(f"SELECT {', '.join(KEY_COLUMNS)} FROM {{t:user_private_key}} ORDER BY id")


def test_a_site_admin_in_moodles_key_order(db, site):
    db.insert("external_tokens", {"token": "b" * 32, "tokentype": 0, "userid": 2, "contextid": 1, "creatorid": 2,
                                  "validuntil": 0, "timecreated": NOW, "externalserviceid": db.scalar(
                                      "SELECT MIN(id) FROM {t:external_services}")})
    set_config(db, "userquota", "104857600")
    set_config(db, "defaulthomepage", "1")
    got = info(db, "b" * 32)
    # admins hold every capability: no quota, no upload limit (USER_CAN_IGNORE_FILE_SIZE_LIMITS)
    assert {k: got[k] for k in KEYS} == {"usercanmanageownfiles": True, "userquota": 0, "usermaxuploadfilesize": -1,
                                         "userhomepage": 1}
    captured = (CAPTURES / "site_info_core_token_json.txt").read_bytes().split(b"\r\n\r\n", 1)[1]
    assert list(got) == list(json.loads(captured))


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("grants, manageownfiles", [
    ([], False),
    ([(7, "system", 1)], True),  # the authenticated-user role, as Moodle's installer sets it
    ([(13, "system", 1)], True),  # a role assigned at the system context
    ([(7, "system", 1), (7, "user", -1)], False),  # overridden in the user's context
    ([(7, "system", 1), (13, "user", -1000)], False),  # prohibited by another role
    ([(7, "system", -1), (13, "system", 1)], True),  # one role's allow is enough
])
def test_usercanmanageownfiles_is_resolved_in_the_users_context(db, site, grants, manageownfiles):
    token, uid = manager(db, site)
    for role, where, permission in grants:
        grant(db, role, 1 if where == "system" else user_context(db, uid), "moodle/user:manageownfiles", permission)
    assert info(db, token)["usercanmanageownfiles"] is manageownfiles


def test_a_user_without_a_user_context_is_resolved_at_the_system_context(db, site):
    token, uid = manager(db, site)
    db.execute("DELETE FROM {t:context} WHERE contextlevel = 30 AND instanceid = ?", (uid,))
    assert info(db, token)["usercanmanageownfiles"] is False
    grant(db, 7, 1, "moodle/user:manageownfiles")
    assert info(db, token)["usercanmanageownfiles"] is True


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("userquota, ignore, expected", [
    ("104857600", False, 104857600), ("104857600", True, 0), (None, False, 0), ("", False, 0),
    ("5242880 bytes", False, 5242880), ("99999999999999999999", False, 2 ** 63 - 1)])
def test_userquota(db, site, userquota, ignore, expected):
    token, _ = manager(db, site)
    set_config(db, "userquota", userquota)
    if ignore:
        grant(db, 7, 1, "moodle/user:ignoreuserquota")
    assert info(db, token)["userquota"] == expected


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("maxbytes, ignore, expected", [
    (None, False, 2 * MiB),  # PHP's upload_max_filesize 2M (below post_max_size 8M)
    ("0", False, 2 * MiB), ("512000", False, 512000), ("52428800", False, 2 * MiB), ("512000", True, -1)])
def test_usermaxuploadfilesize(db, site, maxbytes, ignore, expected):
    token, uid = manager(db, site)
    set_config(db, "maxbytes", maxbytes)
    if ignore:
        grant(db, 13, user_context(db, uid), "moodle/course:ignorefilesizelimits")
    assert info(db, token)["usermaxuploadfilesize"] == expected


@pytest.mark.case_matrix_on_sqlite
@pytest.mark.parametrize("default, dashboard, preference, expected", [
    (None, None, None, 0), ("0", "1", "1", 0),  # site home
    ("1", "1", None, 1), ("1", None, None, 1), ("1", "0", None, 3),  # Dashboard; off: the default page
    ("3", "1", "0", 3),  # My courses
    ("2", "1", None, 1), ("2", "1", "0", 0), ("2", "1", "3", 3), ("2", "0", "1", 3), ("2", "0", None, 3),
    ("2", "1", "junk", 0),  # the user chooses; (int) of the preference
])
def test_userhomepage(db, site, default, dashboard, preference, expected):
    token, uid = manager(db, site)
    set_config(db, "defaulthomepage", default)
    set_config(db, "enabledashboard", dashboard)
    if preference is not None:
        db.execute("INSERT INTO {t:user_preferences} (userid, name, value) VALUES (?, "
                   "'user_home_page_preference', ?)", (uid, preference))
    assert info(db, token)["userhomepage"] == expected


def test_the_guest_user_always_has_the_site_home(db, site):
    token, uid = manager(db, site)
    set_config(db, "defaulthomepage", "1")
    set_config(db, "siteguest", str(uid))
    assert info(db, token)["userhomepage"] == 0


def test_private_access_key_is_made_once_as_moodle_stores_it(db, site):
    token, uid = manager(db, site)
    first = info(db, token)["userprivateaccesskey"]
    assert re.fullmatch("[0-9a-f]{32}", first)
    assert keys(db) == [(first, "core_files", uid, None, None, None, NOW)]  # "now" is the request's clock
    assert info(db, token, now=NOW + 3600)["userprivateaccesskey"] == first
    assert f"<VALUE>{first}</VALUE>".encode() in info(db, token, fmt="xml")
    assert keys(db) == [(first, "core_files", uid, None, None, None, NOW)]


def test_private_access_key_reuses_only_a_plain_core_files_key(db, site):
    token, uid = manager(db, site)
    other = {"userid": uid, "timecreated": NOW - 10}
    for row in ({"script": "core_files", "value": "1" * 32, "instance": 5},
                {"script": "core_files", "value": "2" * 32, "iprestriction": "127.0.0.1"},
                {"script": "core_files", "value": "3" * 32, "validuntil": NOW + 86400},
                {"script": "rss", "value": "4" * 32},
                {"script": "core_files", "value": "5" * 32, "userid": 2}):
        db.insert("user_private_key", {**other, **row})
    made = info(db, token)["userprivateaccesskey"]
    assert made not in ("1" * 32, "2" * 32, "3" * 32, "4" * 32, "5" * 32) and len(keys(db)) == 6
    db.execute("DELETE FROM {t:user_private_key} WHERE value = ?", (made,))
    db.insert("user_private_key", {**other, "script": "core_files", "value": "6" * 32})
    assert info(db, token)["userprivateaccesskey"] == "6" * 32 and len(keys(db)) == 6


def test_simultaneous_first_calls_store_one_key(db, site, tmp_path):
    token, uid = manager(db, site)
    from moodle_core import engines
    results, start = [], threading.Barrier(6)

    def call():
        engine = engines.connect(db.url, db.prefix)
        try:
            start.wait()
            results.append(info(engine, token)["userprivateaccesskey"])
        finally:
            engine.db.close()

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and len(set(results)) == 1
    assert [row[0] for row in keys(db)] == results[:1]
