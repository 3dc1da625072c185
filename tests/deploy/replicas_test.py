"""Issue 17, read replicas: a PostgreSQL primary and a streaming standby of the test's own
(initdb, then pg_basebackup -R into a second cluster on a free port), with the standby's replay
paused and resumed to make it lag on demand, and stopped and started to take it away.

Checked: the replica client of issue 5 merges incremental pulls whose pages are served while the
standby lags (replay paused between pages, Moodle changed and synced meanwhile) and ends equal
to a fresh full pull and to the live truth; every page served equals the primary's rows at that
moment (0 stale); the standby served most pages. A sync run and a populate with a healthy
standby read none of Moodle's tables on the primary. A standby down or lagging beyond
replica_max_lag: pages come from the primary, the health check and an alert say so, and both
recover by themselves. A URL that is not a standby of the site is refused in one line."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_alx_report_api.classes import alert_checks, company_settings, company_state, health, populate, replica_reads
from moodle_core import engines, replicas
from moodle_core.config import ConfigError
from moodle_core.moodle import Moodle
from tests.conftest import unavailable
from tests.faults import PostgresServer
from tests.local_alx_report_api.classes.replica_test import CHANGES, KEYS, Site, merge, run_rounds, truth
from tests.servers import gunicorn, service_env
from tests.tasks import task_env
from tests.webapp import FUNCTION, make_app, progress

MOODLE_TABLES = re.compile(r'"mdl_(user|course|course_modules|course_modules_completion|course_completions|'
                           r'user_enrolments|enrol|role_assignments|context|company_users|company_course)"')


@pytest.fixture(scope="module")
def servers():
    if not shutil.which("runuser") or not shutil.which("pg_basebackup", path="/usr/lib/postgresql/15/bin"):
        unavailable("PostgreSQL server binaries (initdb, pg_basebackup) are not installed")
    primary = PostgresServer()
    standby = PostgresServer(standby_of=primary)
    yield primary, standby
    standby.remove()
    primary.remove()


@pytest.fixture(scope="module")
def site(servers):
    primary, standby = servers
    db = replicas.attach(engines.connect(primary.url, "mdl_"), [standby.url], max_lag=5)
    db.replicas.check_every = 0  # checked before every read: the test moves the standby at will
    db.replicas.task_wait = 0.3
    site = Site(db, companies=2, users=30)
    site.app = make_app(db, lambda: site.now, local_alx_report_api__rate_limit=0)  # many pulls in one test day
    return site


def served_from(db, since_id: int) -> tuple[int, int]:
    """(pages served by the replica, pages served by the primary) of the log rows after an id."""
    rows = db.rows("SELECT additional_data FROM {t:local_alx_api_logs} WHERE id > ? AND data_source = 'table'",
                   (since_id,))
    replica = sum(1 for (extra,) in rows if extra and json.loads(extra).get("replica"))
    return replica, len(rows) - replica


def last_log(db) -> int:
    return int(db.scalar("SELECT COALESCE(MAX(id), 0) FROM {t:local_alx_api_logs}"))


def primary_rows(db, company: int) -> dict:
    """The company's rows as the primary holds them, in the shape of a served element."""
    out = {}
    for u, c, fn, ln, em, cn, tc, ts, pct, status, gone in db.rows(
            "SELECT userid, courseid, firstname, lastname, email, coursename, timecompleted, timestarted, percentage, "
            "status, is_deleted FROM {t:local_alx_api_reporting} WHERE companyid = ?", (company,)):
        pct = float(pct)
        out[(u, c)] = (fn, ln, em, cn, int(tc), int(ts), int(pct) if pct.is_integer() else pct,
                       "deleted" if gone else status)
    return out


def test_pulls_through_a_lagging_replica_lose_nothing_and_serve_nothing_stale(servers, site):
    primary, standby = servers
    db = site.db
    first = last_log(db)

    def pages(token, sizes, between=lambda: None):
        """site.pages, with each page held against the primary's rows at that moment."""
        rows = []
        for page in site.each_page(token, sizes, between):
            now = primary_rows(db, 1)
            for row in page:
                assert now[(row["userid"], row["courseid"])] == tuple(row[k] for k in KEYS), "stale row served"
            rows += page
        return rows

    def step(site, given):
        action, changes = given or ("resume", [])
        for change in changes:
            site.change(*change)
        if action in ("pause", "sync_paused"):
            standby.pause_replay()
        if action == "sync_paused":  # a change of the pulled company's rows the replica lacks
            member = db.scalar("SELECT MIN(userid) FROM {t:local_alx_api_reporting} WHERE companyid = 1 "
                               "AND is_deleted = 0")
            site.change("rename_user", site.users.index(member), 0)
        if action.startswith("sync"):
            site.tick(5)
            site.sync()
        if action == "resume":
            standby.resume_replay()

    def resumed():  # the quiet sync on a replica that has caught up
        standby.resume_replay()
        standby.caught_up_with(primary)

    @settings(max_examples=15, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(st.lists(st.fixed_dictionaries({
        "changes": st.lists(CHANGES, max_size=5),
        "between": st.lists(st.tuples(st.sampled_from(["pause", "resume", "sync_paused", "sync"]),
                                      st.lists(CHANGES, max_size=3)), max_size=4),
        "sizes": st.lists(st.integers(1, 12), min_size=1, max_size=5)}), min_size=2, max_size=3))
    def check(rounds):
        run_rounds(site, rounds, step=step, pages=pages, before_quiet=resumed)

    try:
        check()
    finally:
        standby.resume_replay()
    on_replica, on_primary = served_from(db, first)
    print(f"pages from the replica {on_replica}, from the primary {on_primary}")
    assert on_replica > 3 * on_primary > 0  # the replica served most; behind, it left pages to the primary


def test_a_page_the_replica_has_not_caught_up_with_comes_from_the_primary(servers, site):
    """Replay paused mid-pull, a change synced on the primary: the next page is the primary's
    (the replica lacks the company's new counter), the one after resuming the replica's again."""
    primary, standby = servers
    db = site.db
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (1, 'enable_cache', 0, 0, 0)")  # every page read from a table, none cached
    standby.caught_up_with(primary)
    token = site.new_token()
    client: dict = {}
    merge(client, _first_page(site, token))
    sources = []
    before = last_log(db)
    offset = 2
    standby.pause_replay()
    try:
        member = db.scalar("SELECT MIN(userid) FROM {t:local_alx_api_reporting} WHERE companyid = 1 AND is_deleted = 0")
        site.change("rename_user", site.users.index(member), 0)  # a change of company 1's rows
        site.sync()
        for _ in range(2):
            page = json.loads(progress(site.app, token, limit=2, offset=offset).body)
            offset += len(page)
            merge(client, page)
            assert all(primary_rows(db, 1)[(r["userid"], r["courseid"])] == tuple(r[k] for k in KEYS) for r in page)
            sources.append(served_from(db, before))
            before = last_log(db)
    finally:
        standby.resume_replay()
    standby.caught_up_with(primary)
    page = json.loads(progress(site.app, token, limit=2, offset=offset).body)
    merge(client, page)
    sources.append(served_from(db, before))
    assert sources == [(0, 1), (0, 1), (1, 0)]
    while len(page) == 2:
        offset += 2
        page = json.loads(progress(site.app, token, limit=2, offset=offset).body)
        merge(client, page)
    site.sync()
    merge(client, site.pages(token, [100]))
    assert client == truth(site)


def _first_page(site, token):
    page = json.loads(progress(site.app, token, limit=2, offset=0).body)
    assert len(page) == 2
    return page


def test_sync_and_populate_read_moodle_on_the_replica(servers, site):
    primary, standby = servers
    db = site.db
    standby.caught_up_with(primary)
    for change in [("complete", 3, 1), ("rename_user", 5, 0), ("enrol", 7, 2), ("rename_course", 0, 3)]:
        site.change(*change)
    replica = db.replicas.all[0].engine
    with db.recording() as on_primary, replica.recording() as on_standby:
        site.sync()
    assert any(MOODLE_TABLES.search(sql) for sql, _ in on_standby)
    assert not [sql for sql, _ in on_primary if MOODLE_TABLES.search(sql)], "the sync read Moodle on the primary"
    assert truth(site) == primary_rows_active(db, 1)
    db.execute("DELETE FROM {t:local_alx_api_reporting} WHERE companyid = 2")
    standby.caught_up_with(primary)
    with db.recording() as on_primary:
        populate.populate(db, Moodle(db).companies(), batch_size=100, report_roles=["student"],
                          now=lambda: site.now, lock_wait=0)
    assert not [sql for sql, _ in on_primary if MOODLE_TABLES.search(sql) and "INSERT" not in sql]
    assert truth(site, 2) == primary_rows_active(db, 2)
    standby.pause_replay()  # a replica behind the primary: the run reads the primary instead
    try:
        site.change("rename_user", 9, 0)
        with replica.recording() as on_standby:
            site.sync()
        assert not [sql for sql, _ in on_standby if MOODLE_TABLES.search(sql)]
        assert truth(site) == primary_rows_active(db, 1)
    finally:
        standby.resume_replay()


def primary_rows_active(db, company):
    return {k: v for k, v in primary_rows(db, company).items() if v[-1] != "deleted"}


def test_a_replica_down_or_lagging_is_left_reported_and_taken_back(servers, site):
    primary, standby = servers
    db = site.db
    token = site.new_token()
    clock = [site.now]
    env = task_env(db, lambda: clock[0])

    limits = iter(range(400, 500))

    def page_source():  # a limit of its own each time: a cached page would not say
        before = last_log(db)
        assert isinstance(json.loads(progress(site.app, token, limit=next(limits), offset=0).body), list)
        replica, primary = served_from(db, before)
        assert replica + primary == 1
        return "replica" if replica else "primary"

    def replica_alert():
        return db.rows("SELECT message FROM {t:local_alx_api_alerts} WHERE subject LIKE 'replica:%' AND resolved = 0")

    standby.caught_up_with(primary)
    assert page_source() == "replica"
    standby.stop()
    try:
        assert page_source() == "primary"
        check = health.replicas(db)
        assert check.status == health.WARNING and "down" in check.detail, check
        alert_checks.check_all(env)
        assert len(replica_alert()) == 1 and "is down" in replica_alert()[0][0]
    finally:
        standby.start()
    standby.caught_up_with(primary)
    assert page_source() == "replica"
    alert_checks.check_all(env)
    assert replica_alert() == []

    standby.pause_replay()  # lagging beyond replica_max_lag (5 s) while the primary writes
    try:
        site.change("rename_user", 11, 0)
        site.sync()
        time.sleep(5.5)
        clock[0] += 2 * 3600  # past alert_cooldown after the first alert's resolution
        check = health.replicas(db)
        assert check.status == health.WARNING and "lagging" in check.detail, check
        assert page_source() == "primary"
        alert_checks.check_all(env)
        assert "lagging" in replica_alert()[0][0]
    finally:
        standby.resume_replay()
    standby.caught_up_with(primary)
    assert health.replicas(db).status == health.OK
    assert page_source() == "replica"
    alert_checks.check_all(env)
    assert replica_alert() == []


def test_wrong_replica_urls_are_refused_in_one_line_and_a_promoted_standby_only_reported(servers, tmp_path):
    primary, standby = servers
    primary.psql("CREATE DATABASE other", database="postgres")
    other = primary.url.rsplit("/", 1)[0] + "/other"
    with pytest.raises(ConfigError, match="not a copy of the primary's database"):
        replicas.attach(engines.connect(primary.url, "mdl_"), [other])
    env = {"PATH": "/usr/bin:/bin", "ALX_DATABASE_URL": primary.url}
    done = subprocess.run([sys.executable, "-m", "local_alx_report_api.cli", "task", "list"], capture_output=True,
                          text=True, env={**env, "ALX_DATABASE_REPLICA_URLS": other}, cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "replica_urls" in done.stderr, done.stderr
    glued = "postgresql://alx:first@127.0.0.1:1/moodlepostgresql://alx:second@127.0.0.1:2/moodle"
    for wrong in (glued, glued.replace("moodlepostgresql", "moodle postgresql")):  # a comma forgotten
        with pytest.raises(ConfigError, match="is not one URL") as refused:
            replicas.attach(engines.connect(primary.url, "mdl_"), [wrong])
        assert "first" not in str(refused.value) and "second" not in str(refused.value)
    with pytest.raises(ConfigError, match="PostgreSQL standbys"):
        replicas.attach(engines.connect("sqlite:///:memory:", "mdl_"), [primary.url])
    with pytest.raises(ConfigError, match="query parameters are only read in PostgreSQL URLs"):
        engines.connect("mariadb://root@127.0.0.1:3306/test?ssl=1", "mdl_", check=False)

    # the primary itself, or a standby promoted by a failover: not refused (a worker or a cron
    # runner starting after a failover must not die of it), reported, its reads on the primary
    second = PostgresServer(standby_of=primary)
    try:
        second.caught_up_with(primary)
        second.promote()
        for url in (primary.url, second.url):
            engine = replicas.attach(engines.connect(primary.url, "mdl_"), [url])
            assert engine.replicas.usable() == []
            check = health.replicas(engine)
            assert check.status == health.WARNING and "not a standby (promoted, or the primary itself)" in check.detail
            engine.close()
        done = subprocess.run([sys.executable, "-m", "local_alx_report_api.cli", "task", "list"], capture_output=True,
                              text=True, env={**env, "ALX_DATABASE_REPLICA_URLS": second.url}, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    finally:
        second.remove()


def test_replica_sessions_are_bounded_and_urls_carry_libpq_parameters(servers):
    primary, standby = servers
    engine = replicas.attach(engines.connect(primary.url + "?application_name=alx-primary", "mdl_"),
                             [standby.url + "?application_name=alx-replica"], statement_timeout_ms=30000)
    replica = engine.replicas.all[0].engine
    assert engine.scalar("SHOW application_name") == "alx-primary"
    assert replica.scalar("SHOW application_name") == "alx-replica"
    assert replica.scalar("SHOW statement_timeout") == "30s"  # the web app's: a read stuck behind replay ends
    assert engine.scalar("SHOW statement_timeout") == "0"  # the primary's own are the site's
    engine.close()
    own = replicas.attach(engines.connect(primary.url, "mdl_"), [standby.url + "?options=-c%20statement_timeout%3D5s"],
                          statement_timeout_ms=30000)
    assert own.replicas.all[0].engine.scalar("SHOW statement_timeout") == "5s"  # the URL's own wins
    own.close()
    task = replicas.attach(engines.connect(primary.url, "mdl_"), [standby.url])  # a command's: no timeout
    assert task.replicas.all[0].engine.scalar("SHOW statement_timeout") == "0"
    task.close()
    for query, says in (("dbname=other", "dbname belong in the URL itself"), ("isolation_level=x", "invalid connection"),
                        ("password=x", "password belong in the URL itself")):
        with pytest.raises(ConfigError, match=says) as refused:
            engines.connect(f"{primary.url}?{query}", "mdl_", check=False)
        assert "password=x" not in str(refused.value)


def test_a_read_the_replica_cannot_finish_goes_to_the_primary_and_leaves_the_replica(servers):
    """A statement timeout on the replica (as behind a lock that replay holds): the read is
    answered by the primary and the replica is left until its next check; its connection, which
    did not break, is not taken for a restart."""
    primary, standby = servers
    standby.caught_up_with(primary)
    engine = replicas.attach(engines.connect(primary.url, "mdl_"), [standby.url], statement_timeout_ms=200)
    engine.replicas.check_every = 30
    value, on_replica = replica_reads.on_replica(engine, lambda server: server.scalar("SELECT 1 FROM pg_sleep(1)"))
    assert (value, on_replica) == (1, False)
    replica = engine.replicas.all[0]
    assert replica.status == "down" and "statement timeout" in replica.error
    assert engine.replicas.usable() == []
    engine.close()



def test_serve_and_the_sync_task_through_the_command_line_use_the_replica(servers, site, tmp_path):
    """`serve` (gunicorn, 2 workers) and `task run` with replica_urls from the environment: pages read
    on the standby, the sync task's changes right."""
    primary, standby = servers
    db = site.db
    standby.caught_up_with(primary)
    env = {"ALX_DATABASE_REPLICA_URLS": standby.url, "ALX_LOCAL_ALX_REPORT_API_RATE_LIMIT": "0"}
    site.tick(60)
    course = db.scalar("SELECT MIN(courseid) FROM {t:local_alx_api_reporting} WHERE is_deleted = 0")
    site.change("rename_course", 0, site.courses.index(course))
    done = subprocess.run([sys.executable, "-m", "local_alx_report_api.cli", "task", "run", "sync_reporting_data_task"],
                          env={**os.environ, **service_env(db, tmp_path), **env}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    names = {n for (n,) in db.rows("SELECT DISTINCT coursename FROM {t:local_alx_api_reporting} WHERE courseid = ? "
                                    "AND is_deleted = 0",
                                    (course,))}
    assert names == {f"C{site.now}"}, names  # the task ran on the real clock: the renamed course's rows
    company = db.scalar("SELECT companyid FROM {t:local_alx_api_reporting} WHERE is_deleted = 0 GROUP BY companyid "
                        "ORDER BY COUNT(*) DESC, companyid LIMIT 1")
    token = site.new_token(company)
    standby.caught_up_with(primary)
    before = last_log(db)
    with gunicorn(db, tmp_path, workers=2, **env) as base:
        for offset in (0, 0, 0, 0):
            body = urlencode({"wstoken": token, "wsfunction": FUNCTION, "moodlewsrestformat": "json", "limit": 3,
                              "offset": offset, "mode": "full"}).encode()
            rows = json.loads(urllib.request.urlopen(base + "webservice/rest/server.php", body, timeout=30).read())
            assert isinstance(rows, list) and len(rows) == 3, rows
            db.execute("DELETE FROM {t:local_alx_api_cache}")  # each page read from the table again
            standby.caught_up_with(primary)
        request = urllib.request.Request(base + "local/alx_report_api/odata/CourseProgress?$top=4&$count=true",
                                         headers={"Authorization": f"Bearer {token}"})
        document = json.loads(urllib.request.urlopen(request, timeout=30).read())
        assert len(document["value"]) == 4 and document["@odata.count"] == len(primary_rows_active(db, company))
    assert served_from(db, before) == (5, 0)


def test_a_cleared_and_refilled_company_is_never_served_from_the_replicas_older_copy(servers, site):
    """The control center's Clear data, then a populate, while the standby has not replayed either:
    the company's counter never goes back, so the standby's copy (rows from before the clear) cannot
    pass for current, and the pages are the primary's."""
    primary, standby = servers
    db = site.db
    standby.caught_up_with(primary)
    company = db.scalar("SELECT companyid FROM {t:local_alx_api_reporting} WHERE is_deleted = 0 GROUP BY companyid "
                        "ORDER BY COUNT(*) DESC, companyid LIMIT 1")
    member = db.scalar("SELECT MIN(userid) FROM {t:local_alx_api_reporting} WHERE companyid = ? AND is_deleted = 0",
                       (company,))
    seq = company_state.current(db, company)
    standby.pause_replay()
    try:
        site.tick(60)
        site.change("rename_user", site.users.index(member), 0)  # the refilled rows differ from the standby's
        company_settings.clear_company_data(db, company)
        assert company_state.current(db, company) == seq
        populate.populate(db, [c for c in Moodle(db).companies() if c.id == company], batch_size=100,
                          report_roles=["student"], now=lambda: site.now, lock_wait=0)
        before = last_log(db)
        page = json.loads(progress(site.app, site.new_token(company), limit=1000, offset=0).body)
        assert served_from(db, before) == (0, 1)
        served = {(r["userid"], r["courseid"]): tuple(r[k] for k in KEYS) for r in page}
        assert served == primary_rows_active(db, company) == truth(site, company)
        assert all(row[1] == f"L{site.now}" for key, row in served.items() if key[0] == member)
    finally:
        standby.resume_replay()


def test_a_task_waits_once_for_a_replica_that_is_behind(servers):
    """Replay paused and the primary written: a task's first read waits task_wait for the standby,
    then reads the primary; later reads before the standby's next check do not wait again (a
    populate of thousands of companies would wait at each)."""
    primary, standby = servers
    standby.caught_up_with(primary)
    engine = replicas.attach(engines.connect(primary.url, "mdl_"), [standby.url])
    engine.replicas.task_wait, engine.replicas.check_every = 0.5, 30
    replica = engine.replicas.all[0]
    standby.pause_replay()
    try:
        engine.execute("UPDATE {t:config} SET value = value WHERE name = 'siteidentifier' OR id = 1")
        assert replica_reads.live(engine, task=True) is engine
        assert replica.behind_until > time.monotonic() and replica.status == "ok"  # health: still within max lag
        started = time.monotonic()
        assert [replica_reads.live(engine, task=True) for _ in range(5)] == [engine] * 5
        assert time.monotonic() - started < 0.5  # five reads, no wait
    finally:
        standby.resume_replay()
    standby.caught_up_with(primary)
    replica.behind_until = float("-inf")  # as at its next check
    assert replica_reads.live(engine, task=True) is replica.engine
    engine.close()
