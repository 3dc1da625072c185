"""Issue 12 through the endpoint: Power Query clients get full pulls in Auto mode, the `mode`
parameter, the rate limit counting a pull once, and several pulls of one token at once (kept
apart by X-ALX-Pull-Id, or without it never losing a row)."""

import json
import random

import pytest

from local_alx_report_api.classes import company_state, pulls
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.admin import PREFIX, admin_app, sign_in
from tests.sites import NOW, company_setting, synced_company
from tests.tasks import task_env
from tests.webapp import FUNCTION, make_app, post

POWER_QUERY = "Microsoft.Data.Mashup (https://go.microsoft.com/fwlink/?LinkID=304225)"
POSTMAN = "PostmanRuntime/7.39.0"


class Client:
    """One consumer of a token: its user agent, its pull id header (if any) and its own paging."""

    def __init__(self, app, token, agent=POSTMAN, pull_id=None, limit=50, mode=None):
        self.app, self.token, self.agent, self.pull_id, self.limit, self.mode = app, token, agent, pull_id, limit, mode
        self.offset, self.keys, self.done = 0, [], False

    def request(self, offset, limit=None, **extra):
        headers = {"User-Agent": self.agent}
        if self.pull_id:
            headers["X-ALX-Pull-Id"] = self.pull_id
        params = {"wstoken": self.token, "wsfunction": FUNCTION, "moodlewsrestformat": "json",
                  "limit": limit or self.limit, "offset": offset, **extra}
        if self.mode:
            params["mode"] = self.mode
        resp = post(self.app, headers, **params)
        return json.loads(resp.body), resp

    def step(self):
        """Read the next page of this client's pull (a start when it has read nothing)."""
        rows, _ = self.request(self.offset)
        assert isinstance(rows, list), rows
        self.last = len(rows)
        self.keys += [(r["userid"], r["courseid"]) for r in rows]
        self.offset += len(rows)
        self.done = len(rows) < self.limit
        return rows

    def retry(self):
        """The answer to the last page was lost: ask for it again."""
        self.offset -= self.last
        del self.keys[len(self.keys) - self.last:]
        return self.step()

    def pull(self):
        self.offset, self.keys, self.done = 0, [], False
        while not self.done:
            self.step()
        return self.keys


@pytest.fixture
def big(db):
    """60 learners in 5 courses of company 1 (300 rows), synced, and the manager's token."""
    token = synced_company(db)
    clock = {"now": NOW + 60}
    app = make_app(db, lambda: clock["now"])
    return db, token, app, clock


def last_log(db):
    row = db.execute("SELECT sync_mode, counted, errorcode, additional_data FROM {t:local_alx_api_logs} "
                     "ORDER BY id DESC LIMIT 1").fetchone()
    return {"sync_mode": row[0], "counted": row[1], "errorcode": row[2], **json.loads(row[3] or "{}")}


def active_keys(db):
    return {(int(u), int(c)) for u, c in db.rows("SELECT userid, courseid FROM {t:local_alx_api_reporting} WHERE "
                                                   "companyid = 1 AND is_deleted = 0")}


# -- 1. Power Query clients in Auto mode -------------------------------------------------------------
def test_power_query_gets_full_pulls_in_auto_other_clients_keep_the_spec(big):
    db, token, app, clock = big
    power_bi, postman = Client(app, token, POWER_QUERY, limit=1000), Client(app, token, POSTMAN, limit=1000)
    assert len(power_bi.pull()) == 300 and last_log(db)["reason"] == "client_full"
    clock["now"] += 3600  # within the window: a second refresh is complete again, not a delta
    assert len(power_bi.pull()) == 300
    log = last_log(db)
    assert (log["sync_mode"], log["page"], log["reason"]) == ("full", "start", "client_full")
    # another client of the same token within the window: the spec's Auto (an incremental pull)
    assert postman.pull() == [] and (last_log(db)["sync_mode"], last_log(db)["reason"]) == ("incremental", "within_window")
    # Always incremental is the administrator's choice: not overridden for Power Query
    company_setting(db, 1, "sync_mode", 1)
    assert power_bi.pull() == [] and last_log(db)["reason"] == "company_incremental"


def test_the_user_agent_list_is_a_setting(db):
    token = synced_company(db, users=4, courses=2)
    for agents, second in (("", 0), ("Excel/16, Microsoft.Data", 8)):
        db.execute("DELETE FROM {t:local_alx_api_sync_status} WHERE kind = 'api'")
        app = make_app(db, NOW + 60, local_alx_report_api__full_pull_user_agents=agents)
        client = Client(app, token, POWER_QUERY, limit=100)
        assert len(client.pull()) == 8 and len(client.pull()) == second


# -- 2. the mode parameter ---------------------------------------------------------------------------
def test_the_mode_parameter(big):
    db, token, app, clock = big
    client = Client(app, token, limit=1000)
    assert len(client.pull()) == 300 and "mode" not in last_log(db)  # not sent: no change at all
    assert client.pull() == []  # Auto within the window
    client.mode = "full"
    assert len(client.pull()) == 300 and (last_log(db)["sync_mode"], last_log(db)["reason"]) == ("full", "mode_full")
    assert last_log(db)["mode"] == "full"  # the mode asked for, in additional_data
    company_setting(db, 1, "sync_mode", 2)
    client.mode = "incremental"
    assert client.pull() == [] and last_log(db)["reason"] == "mode_incremental"
    client.mode = "auto"
    assert len(client.pull()) == 300 and last_log(db)["reason"] == "company_full"
    db.execute("UPDATE {t:local_alx_api_settings} SET setting_value = 3 WHERE setting_name = 'sync_mode'")
    client.mode = "incremental"  # Disabled keeps no state: stateless full data whatever is asked
    assert len(client.pull()) == 300 and last_log(db)["sync_mode"] == "disabled"


@pytest.mark.parametrize("bad", ["bogus", "FULL1", "full ", "", "Full"])
def test_a_bad_mode_is_invalidparameter_and_changes_nothing(big, bad):
    db, token, app, _ = big
    before = db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_sync_status} WHERE kind = 'api'")
    body, _ = Client(app, token).request(0, mode=bad)
    assert body["exception"] == "invalid_parameter_exception" and body["errorcode"] == "invalidparameter"
    assert body["message"] == "Invalid parameter value detected"
    assert last_log(db)["counted"] == 0 and last_log(db)["errorcode"] == "invalidparameter"
    assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_sync_status} WHERE kind = 'api'") == before


def test_mode_appears_in_the_function_description(big):
    from local_alx_report_api.classes.external import get_course_progress

    mode = get_course_progress.execute_parameters()["properties"]["mode"]
    assert mode["x-param"] == "PARAM_ALPHA" and mode["default"] == "auto" and not mode["x-required"]
    assert all(word in mode["description"] for word in ("auto", "full", "incremental"))


# -- 3. the rate limit counts a pull once --------------------------------------------------------------
def test_fifty_pages_finish_under_a_limit_of_five(big):
    db, token, app, clock = big
    company_setting(db, 1, "rate_limit", 5)
    client = Client(app, token, POWER_QUERY, limit=6)
    assert len(client.pull()) == 300  # 50 full pages and the empty page that ends the pull
    counted = db.rows("SELECT counted, additional_data FROM {t:local_alx_api_logs} ORDER BY id")
    assert len(counted) == 51 and [c for c, _ in counted].count(1) == 1
    assert all(json.loads(a)["free_page"] for c, a in counted if c == 0)
    _, resp = client.request(6)  # the pull is complete: a stateless page, counted
    assert resp.headers["X-RateLimit-Remaining"] == "3" and last_log(db)["page"] == "stateless"
    client.offset, client.keys = 0, []
    client.step()  # a restart counts
    client.step()  # its next page is free
    assert last_log(db)["free_page"] is True
    client.request(6)  # a repeated page counts, twice
    _, resp = client.request(6)
    assert last_log(db)["page"] == "repeat" and resp.headers["X-RateLimit-Remaining"] == "0"
    body, resp = client.request(0)
    assert body["errorcode"] == "ratelimitexceeded" and resp.headers["Retry-After"]
    # the limit never stops the next page of an open pull
    rows, _ = client.request(12)
    assert len(rows) == 6 and last_log(db)["free_page"] is True


@pytest.mark.parametrize("where", ["company", "global"])
def test_counting_every_request_as_the_original(big, where):
    db, token, app, clock = big
    company_setting(db, 1, "rate_limit", 5)
    if where == "company":
        company_setting(db, 1, "rate_limit_per_pull", 0)
    else:
        app = make_app(db, NOW + 60, local_alx_report_api__rate_limit_per_pull="false")
    client = Client(app, token, POWER_QUERY, limit=6)
    for _ in range(5):
        client.step()
    body, _ = client.request(client.offset)
    assert body["errorcode"] == "ratelimitexceeded"
    assert db.scalar("SELECT SUM(counted) FROM {t:local_alx_api_logs}") == 5


def test_a_free_page_taken_by_a_concurrent_request_is_counted(big):
    """Two requests for the same next page: the second is a repeat, and is counted."""
    db, token, app, _ = big
    company_setting(db, 1, "rate_limit", 3)
    client = Client(app, token, limit=50)
    client.step()
    client.request(50)
    client.request(50)
    assert [r[0] for r in db.rows("SELECT counted FROM {t:local_alx_api_logs} ORDER BY id")] == [1, 0, 1]
    assert last_log(db)["page"] == "repeat" and "free_page" not in last_log(db)


# -- 4. several pulls of one token at once ---------------------------------------------------------------
def change_and_sync(db, rng, clock, removed):
    """A random Moodle change among the first users (before most cursors), then a sync run."""
    users = [int(u) for (u,) in db.rows("SELECT userid FROM {t:company_users} WHERE companyid = 1 AND "
                                        "managertype = 0 ORDER BY userid")]
    kind = rng.choice(["unenrol", "unenrol", "rename", "return"] if removed else ["unenrol", "rename"])
    clock["now"] += 10
    if kind == "unenrol":
        uid = rng.choice(users[:40])
        removed.add(uid)
        db.execute("UPDATE {t:user_enrolments} SET status = 1, timemodified = ? WHERE userid = ?", (clock["now"], uid))
    elif kind == "return":
        uid = removed.pop()
        db.execute("UPDATE {t:user_enrolments} SET status = 0, timemodified = ? WHERE userid = ?", (clock["now"], uid))
    else:
        db.execute("UPDATE {t:user} SET lastname = ?, timemodified = ? WHERE id = ?",
                   (f"L{clock['now']}", clock["now"], rng.choice(users)))
    sync_task.execute(task_env(db, clock["now"] + 1))


@pytest.mark.parametrize("named", [True, False], ids=["pull_id", "anonymous"])
def test_interleaved_pulls_of_one_token_each_get_the_whole_table(big, named):
    """Three consumers of one token (queries of one model, Desktop and the service) page at once,
    in random orders, with different page sizes and retried pages, while Moodle changes and the
    sync runs: each gets every row that was active
    for the whole of its pull, and nothing that never was; with pull ids, no key twice."""
    db, token, app, clock = big
    for seed in range(8):
        rng, removed = random.Random(seed), set()
        clients = [Client(app, token, POWER_QUERY, pull_id=f"{seed}-{n}" if named else None,
                          limit=rng.choice([20, 40, 50])) for n in range(3)]
        seen = {id(c): [] for c in clients}  # the active rows at each moment of each client's pull
        while not all(c.done for c in clients):
            client = rng.choice([c for c in clients if not c.done])
            if client.offset == 0 and not client.keys:
                seen[id(client)].append(active_keys(db))
            client.step()
            if not client.done and client.offset > client.last and rng.random() < 0.15:
                client.retry()
            seen[id(client)].append(active_keys(db))
            if rng.random() < 0.3:
                change_and_sync(db, rng, clock, removed)
                for c in clients:
                    if not c.done and (c.keys or c.offset):
                        seen[id(c)].append(active_keys(db))
        for client in clients:
            always, ever = set.intersection(*seen[id(client)]), set.union(*seen[id(client)])
            got = set(client.keys)
            assert always <= got <= ever, (seed, sorted(always - got)[:5], sorted(got - ever)[:5])
            assert client.keys == sorted(client.keys) or not named
            if named:
                assert len(client.keys) == len(got), seed  # no key twice within a pull
        assert not pulls.open_pulls(json.loads(db.scalar(
            "SELECT state_data FROM {t:local_alx_api_sync_status} WHERE kind = 'api'")))  # every pull completed


def test_interleaved_pulls_without_changes_are_exact(big):
    """Lockstep pages of two anonymous consumers: both complete, each row exactly once."""
    db, token, app, _ = big
    a, b = Client(app, token, POWER_QUERY, limit=40), Client(app, token, POWER_QUERY, limit=40)
    while not (a.done and b.done):
        for client in (a, b):
            if not client.done:
                client.step()
    assert a.keys == b.keys == sorted(active_keys(db))
    logs = db.rows("SELECT additional_data FROM {t:local_alx_api_logs} ORDER BY id")
    assert {json.loads(x)["page"] for (x,) in logs} == {"start", "next"}
    state = db.execute("SELECT total_syncs, change_seq FROM {t:local_alx_api_sync_status} WHERE kind = 'api'").fetchone()
    assert state == (2, company_state.current(db, 1))


def test_a_named_restart_abandons_only_its_own_pull(big):
    db, token, app, _ = big
    a, b = Client(app, token, POWER_QUERY, pull_id="A"), Client(app, token, POWER_QUERY, pull_id="B")
    a.step(), b.step(), a.step()
    a.offset, a.keys = 0, []
    a.step()  # the same pull id from offset 0 again: its earlier pull is gone, B's stays
    state = json.loads(db.scalar("SELECT state_data FROM {t:local_alx_api_sync_status} WHERE kind = 'api'"))
    assert sorted((p["client"], p["next_offset"]) for p in pulls.open_pulls(state)) == [("id:A", 50), ("id:B", 50)]
    b.step()
    assert len(b.keys) == 100
    while not b.done:
        b.step()
    assert b.keys == sorted(active_keys(db))


def test_open_pulls_are_bounded(big):
    db, token, app, _ = big
    for n in range(pulls.MAX_OPEN_PULLS + 4):
        Client(app, token, POWER_QUERY, pull_id=str(n)).step()
    state = json.loads(db.scalar("SELECT state_data FROM {t:local_alx_api_sync_status} WHERE kind = 'api'"))
    assert [p["client"] for p in pulls.open_pulls(state)] == [f"id:{n}" for n in range(4, pulls.MAX_OPEN_PULLS + 4)]


def test_an_unnamed_restart_abandons_only_its_idle_pulls(big):
    db, token, app, clock = big
    client, other = Client(app, token, POSTMAN), Client(app, token, POWER_QUERY)
    client.step(), client.step(), other.step()
    clock["now"] += pulls.RESTART_IDLE_SECONDS - 1
    client.offset, client.keys = 0, []
    client.step()  # a concurrent query of the same client may still be reading the first pull
    state = json.loads(db.scalar("SELECT state_data FROM {t:local_alx_api_sync_status} WHERE kind = 'api'"))
    assert [p["id"] for p in pulls.open_pulls(state)] == [1, 2, 3]
    clock["now"] += pulls.RESTART_IDLE_SECONDS
    client.offset, client.keys = 0, []
    client.step()  # pulls of this client idle that long were given up; the other client's stays
    state = json.loads(db.scalar("SELECT state_data FROM {t:local_alx_api_sync_status} WHERE kind = 'api'"))
    assert [p["id"] for p in pulls.open_pulls(state)] == [2, 4]


def rename(db, clock, uid, name):
    """A learner's name changes (all their rows get new values), then the sync task runs."""
    clock["now"] += 10
    db.execute("UPDATE {t:user} SET lastname = ?, timemodified = ? WHERE id = ?", (name, clock["now"], uid))
    sync_task.execute(task_env(db, clock["now"] + 1))


def test_unnamed_pulls_with_different_rows_at_one_offset(big):
    """An unnamed client's full pull (A, Auto's first pull) and its incremental one (C, after
    another pull completed) stand at one offset: whichever asks gets rows holding both."""
    db, token, app, clock = big
    a = Client(app, token, limit=2)
    a.step()
    Client(app, token, limit=1000).pull()
    last = max(u for u, _ in active_keys(db))
    rename(db, clock, last, "Changed")
    c = Client(app, token, limit=2)
    c.step()
    assert last_log(db)["sync_mode"] == "incremental"
    while not (a.done and c.done):
        for client in (a, c):
            if not client.done:
                client.step()
    assert set(a.keys) == active_keys(db)  # A's table is whole
    assert {k for k in active_keys(db) if k[0] == last} <= set(c.keys)  # C has its changes


def test_unnamed_incremental_pulls_since_different_watermarks(big):
    """Always incremental, Power Query without pull ids: A (since W0) and C (since W1) at one
    offset; A still gets every change since W0, C every change since W1."""
    db, token, app, clock = big
    company_setting(db, 1, "sync_mode", 1)
    Client(app, token, POWER_QUERY, limit=1000).pull()
    users = sorted({u for u, _ in active_keys(db)})
    rename(db, clock, users[-1], "X")
    rename(db, clock, users[-2], "Y")
    a = Client(app, token, POWER_QUERY, limit=2)
    a.step()
    Client(app, token, POWER_QUERY, limit=1000).pull()
    rename(db, clock, users[-3], "Z")
    c = Client(app, token, POWER_QUERY, limit=2)
    c.step()
    for client in (a, c):
        while not client.done:
            client.step()
    changed = {k for k in active_keys(db) if k[0] in users[-3:]}
    assert {k for k in changed if k[0] != users[-3]} <= set(a.keys) and changed <= set(c.keys)


def test_a_retried_page_leaves_another_clients_pull_where_it_is(big):
    """Unnamed consumers with different page sizes: B retries a page at an offset A's pull also
    passed; A's pull goes on with next pages (free), and A's table is whole."""
    db, token, app, clock = big
    company_setting(db, 1, "rate_limit", 8)
    a, b = Client(app, token, POWER_QUERY, limit=50), Client(app, token, POWER_QUERY, limit=20)
    a.step(), b.step()
    for _ in range(4):
        b.step()
    a.step(), a.step()
    b.step()
    b.request(100)  # B lost the answer to offset 100 and asks again: a repeat
    before = active_keys(db)
    db.execute("UPDATE {t:user_enrolments} SET status = 1, timemodified = ? WHERE userid = ?",
               (clock["now"], min(before)[0]))
    sync_task.execute(task_env(db, clock["now"] + 1))
    while not a.done:
        a.step()
        assert last_log(db)["page"] == "next"
    assert before & active_keys(db) <= set(a.keys)


@pytest.mark.parametrize("damaged", ["not json", "[]", '{"open": 5}', '{"open": [{"id": 1}]}', '{"pull": "x"}',
                                     '{"open": [{"id": 1, "touched": null, "started": null, "next_offset": 50}]}',
                                     '{"usage": 5, "pulls": "x", "last_pull": 3}'])
def test_damaged_state_data_is_a_state_without_pulls(big, damaged):
    """A page of a pull whose state was damaged is stateless (counted); the token's next start
    works; the control center shows the token."""
    db, token, app, _ = big
    client = Client(app, token, POWER_QUERY)
    client.step()
    db.execute("UPDATE {t:local_alx_api_sync_status} SET state_data = ? WHERE kind = 'api'", (damaged,))
    admin = admin_app(db, NOW + 60)
    assert sign_in(admin).status_int == 303
    assert "aaaaaaaa…" in admin.get(PREFIX + "/companies/1").text and "aaaaaaaa…" in admin.get(PREFIX + "/tokens").text
    rows, _ = client.request(50)
    assert len(rows) == 50 and (last_log(db)["page"], last_log(db)["counted"]) == ("stateless", 1)
    client.offset, client.keys = 0, []
    assert len(client.pull()) == 300


def test_a_first_release_state_continues(big):
    """The open pull as the first release stored it (state_data.pull) is continued by any client."""
    db, token, app, clock = big
    key = sorted(active_keys(db))[49]
    old = {"pull": {"id": 17, "mode": "full", "since": 0, "until": 1, "deletions": False, "started": clock["now"],
                    "next_offset": 50, "after": list(key), "prev_offset": 0, "prev_after": [0, 0], "rows": 50,
                    "pages": 1, "had_error": False, "fallback_error": None}, "pulls": 17}
    Client(app, token, limit=1000).pull()  # creates the token's state row
    db.execute("UPDATE {t:local_alx_api_sync_status} SET state_data = ? WHERE kind = 'api'", (json.dumps(old),))
    client = Client(app, token, POWER_QUERY)
    client.offset = 50
    while not client.done:
        client.step()
    assert client.keys == sorted(active_keys(db))[50:] and last_log(db)["pull_id"] == 17
