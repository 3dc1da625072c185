"""The pull model through the endpoint (sync-and-cache.md 5): start, next, repeat, stateless,
completion and the watermark, Auto and the other modes, tombstones, the error fallback."""

import json

import pytest

from local_alx_report_api.classes import company_state, pulls
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.sites import NOW, synced_company
from tests.tasks import task_env
from tests.webapp import make_app, progress


class Client:
    def __init__(self, db, token, start=NOW):
        self.db, self.token, self.now = db, token, start
        self.app = make_app(db, lambda: self.now)

    def page(self, limit, offset):
        return json.loads(progress(self.app, self.token, limit=limit, offset=offset).body)

    def log(self):
        row = self.db.execute("SELECT sync_mode, data_source, cache_status, additional_data FROM "
                              "{t:local_alx_api_logs} ORDER BY id DESC LIMIT 1").fetchone()
        return row[0], row[1], row[2], json.loads(row[3])

    def state(self):
        row = self.db.execute("SELECT change_seq, last_sync_status, total_syncs, state_data FROM "
                              "{t:local_alx_api_sync_status} WHERE kind = 'api' ORDER BY id DESC LIMIT 1").fetchone()
        return {"watermark": row[0], "status": row[1], "total": row[2], "data": json.loads(row[3] or "{}")}

    def open(self):
        return pulls.open_pulls(self.state()["data"])


@pytest.fixture
def big(db):
    """60 learners in 5 courses of company 1 (300 rows), synced, and the manager's token."""
    return db, None, synced_company(db)


def keys(rows):
    return [(r["userid"], r["courseid"]) for r in rows]


def test_a_pull_pages_by_key_and_sees_changes_made_between_pages(big):
    db, b, token = big
    client = Client(db, token)
    first = client.page(100, 0)
    assert len(first) == 100 and client.log()[3]["page"] == "start"
    until = company_state.current(db, 1)
    # between pages: a row already delivered changes, a later row changes, a later row leaves scope
    delivered, later, leaving = keys(first)[10], (first[-1]["userid"] + 5, 5), (first[-1]["userid"] + 7, 5)
    db.execute("UPDATE {t:user} SET lastname = 'Changed', timemodified = ? WHERE id IN (?, ?)",
               (NOW + 10, delivered[0], later[0]))
    db.execute("DELETE FROM {t:user_enrolments} WHERE userid = ? AND enrolid = (SELECT id FROM {t:enrol} WHERE "
               "courseid = ?)", (leaving[0], leaving[1]))
    sync_task.execute(task_env(db, NOW + 20))
    second = client.page(100, 100)
    assert client.log()[3]["page"] == "next"
    assert keys(second)[0] > keys(first)[-1] and leaving not in keys(second)
    assert next(r for r in second if (r["userid"], r["courseid"]) == later)["lastname"] == "Changed"
    third = client.page(100, 200)
    everything = keys(first) + keys(second) + keys(third)
    assert len(third) < 100 and everything == sorted(set(everything))  # no key twice, in order
    state = client.state()
    assert (state["watermark"], state["status"], state["total"]) == (until, "success", 1)
    # two hours later Auto is incremental: the changes and the tombstone, nothing else
    client.now += 7200
    delta = client.page(100, 0)
    assert client.log()[0] == "incremental"
    by_key = {(r["userid"], r["courseid"]): r for r in delta}
    assert by_key[leaving]["status"] == "deleted"
    assert all(by_key[k]["lastname"] == "Changed" for k in by_key if k[0] in (delivered[0], later[0]))
    assert {k[0] for k in by_key} == {delivered[0], later[0], leaving[0]}
    assert client.state()["watermark"] == company_state.current(db, 1)
    client.now += 7200
    assert client.page(100, 0) == []  # nothing changed since


def test_repeat_stateless_and_abandon(big):
    db, _, token = big
    client = Client(db, token)
    first, second = client.page(50, 0), client.page(50, 50)
    assert client.page(50, 50) == second and client.log()[3]["page"] == "repeat"
    assert client.page(50, 100)[0] == client.page(50, 100)[0]  # next, then a repeat of it
    stateless = client.page(10, 7)
    assert client.log()[3]["page"] == "stateless" and keys(stateless) == keys(first)[7:17]
    assert client.open()[0]["next_offset"] == 150  # unchanged by the stateless page
    restart = client.page(50, 0)
    assert restart == first and client.state()["watermark"] == 0  # the abandoned pull moved nothing
    # another client of the token may still be reading the first pull (issue 12): both stay open
    assert [p["id"] for p in client.open()] == [1, 2]


def test_modes(big):
    db, _, token = big
    client = Client(db, token)

    def mode(value):
        db.execute("DELETE FROM {t:local_alx_api_settings} WHERE setting_name = 'sync_mode'")
        db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
                   "timemodified) VALUES (1, 'sync_mode', ?, 0, 0)", (value,))

    mode(2)
    for _ in range(2):
        assert len(client.page(1000, 0)) == 300 and client.log()[0] == "full"
    mode(1)
    assert client.page(1000, 0) == [] and client.log()[0] == "incremental"  # watermark of the full pulls kept
    mode(3)
    before = db.scalar("SELECT updated_at FROM {t:local_alx_api_sync_status} WHERE kind = 'api'")
    client.now += 50
    assert len(client.page(1000, 0)) == 300 and client.log()[0] == "disabled"
    assert keys(client.page(10, 295)) == keys(client.page(1000, 0))[295:]
    assert db.scalar("SELECT updated_at FROM {t:local_alx_api_sync_status} WHERE kind = 'api'") == before


def test_auto_goes_full_after_the_window_or_a_failure(big):
    db, _, token = big
    client = Client(db, token)
    assert len(client.page(1000, 0)) == 300
    client.now += 3600
    assert client.page(1000, 0) == [] and client.log()[0] == "incremental"
    client.now += 49 * 3600  # a low-usage token has a 48 h window
    assert len(client.page(1000, 0)) == 300 and client.log()[0] == "full"
    assert client.state()["data"]["last_pull"]["mode"] == "full"
    # a pull that used the error fallback completes as failed; the next one is full again
    db.db.execute_sql(f"ALTER TABLE {db.table('local_alx_api_reporting')} RENAME TO {db.quote(db.prefix + 'hidden')}")
    client.now += 60
    served = client.page(1000, 0)
    log = client.log()
    assert len(served) == 300 and log[1] == "live" and log[3]["fallback_reason"]
    assert client.state()["status"] == "failed"
    db.db.execute_sql(f"ALTER TABLE {db.quote(db.prefix + 'hidden')} RENAME TO {db.table('local_alx_api_reporting')}")
    client.now += 60
    assert len(client.page(1000, 0)) == 300 and client.log()[0] == "full"
    assert client.state()["status"] == "success"


def test_tombstones_only_when_enabled_and_after_a_first_pull(big):
    db, _, token = big
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (1, 'sync_mode', 1, 0, 0)")
    db.execute("DELETE FROM {t:user_enrolments} WHERE userid = (SELECT MIN(userid) FROM {t:company_users} "
               "WHERE companyid = 1 AND managertype = 0)")
    sync_task.execute(task_env(db, NOW + 10))
    client = Client(db, token, NOW + 20)
    first = client.page(1000, 0)  # since 0: nothing to delete on the client's side
    assert len(first) == 295 and all(r["status"] != "deleted" for r in first)
    db.execute("DELETE FROM {t:user_enrolments} WHERE userid = ?", (first[-1]["userid"],))
    sync_task.execute(task_env(db, NOW + 30))
    assert {r["status"] for r in client.page(1000, 0)} == {"deleted"}
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (1, 'incremental_deletions', 0, 0, 0)")
    db.execute("UPDATE {t:user_enrolments} SET status = 1, timemodified = ? WHERE userid = ?",
               (NOW + 40, first[0]["userid"]))
    sync_task.execute(task_env(db, NOW + 50))
    assert client.page(1000, 0) == []


def test_effective_window_adapts_to_usage(big):
    db, _, _ = big
    req = pulls.PageRequest(1, "h", 50, 100, 0, None, 0, 24, True, True, NOW, "UTC")
    state = {"data": {}}
    assert pulls.effective_window(db, req, state) == (48.0, "low")
    for n in range(6 * 48):  # 48 calls a day for six days
        db.execute("INSERT INTO {t:local_alx_api_logs} (userid, endpoint, record_count, timeaccessed, companyid, "
                   "counted, response_bytes) VALUES (50, ?, 0, ?, 1, 1, 0)", (pulls.FUNCTION, NOW - n * 1800))
    assert pulls.effective_window(db, req, state) == (48.0, "low")  # computed at most once an hour
    req.now += 3600
    assert pulls.effective_window(db, req, state) == (12.0, "high")
    req.adaptive = False
    assert pulls.effective_window(db, req, state) == (24.0, None)


@pytest.mark.parametrize("db", ["postgresql", "mariadb"], indirect=True)
def test_simultaneous_pages_of_one_token_are_handled_one_at_a_time(big):
    import threading

    db, _, token = big
    client = Client(db, token)
    first = client.page(50, 0)
    results, barrier = [], threading.Barrier(4)

    def same_next_page():
        barrier.wait()
        results.append(client.page(50, 50))

    threads = [threading.Thread(target=same_next_page) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == results[0] for r in results) and keys(results[0])[0] > keys(first)[-1]
    [pull] = client.open()
    assert (pull["next_offset"], pull["prev_offset"]) == (100, 50)  # one next, then repeats of it
    assert pull["pages"] == 5  # no update was lost: each request saw the state the one before left


def test_a_counter_read_before_another_pull_completed_never_ends_below_the_watermark(big):
    """The counter is read with the settings, before the pull's lock (decision 118). If another
    pull of the token completed in between with a newer counter (its watermark), the pull reads
    the counter again: `until` is never below `since`, and the watermark never moves back."""
    from local_alx_report_api.classes.progress import Scope
    from webservice.call import token_hash

    db, _, token = big
    client = Client(db, token)
    assert len(client.page(1000, 0)) == 300  # a completed full pull: the watermark is the counter
    watermark = client.state()["watermark"]
    assert watermark == company_state.current(db, 1) > 1
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (1, 'sync_mode', 1, 0, 0)")  # Always incremental
    uid = db.scalar("SELECT userid FROM {t:external_tokens} WHERE token = ?", (token,))
    req = pulls.PageRequest(1, token_hash(token), uid, 1000, 0, lambda: Scope.load(db, 1, ["student"]), 1, 24, True,
                            True, NOW + 60, "UTC", table=(watermark - 1, True))  # read before that pull ended
    outcome = pulls.serve(db, req, read_table=lambda d, a, o, v: pulls.Slice([], None, 0), to_elements=list,
                          attempts=1, base_delay=0)
    assert (outcome.definition.since, outcome.definition.until) == (watermark, watermark)
    assert client.state()["watermark"] == watermark
