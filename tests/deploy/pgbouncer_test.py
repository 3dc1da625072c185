"""Issue 17, PgBouncer (Debian's) in transaction pooling mode in front of PostgreSQL, for `serve`
and `cron`: a server connection goes back to the pool after every transaction, so nothing may
rely on session state across transactions. The one thing that does, the named locks' sessions,
goes to `[database] lock_url` (PostgreSQL directly); this test shows why, and that with it
serve, cron, populate, the rate limit and the locks work through the pooler."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from local_alx_report_api.db.tasks import NAMESPACE
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from moodle_core import engines
from moodle_core.engines import LockBusy
from tests.conftest import SESSION_URLS, _ensure_database, unavailable
from tests.oracle import stored
from tests.servers import free_port, gunicorn, service_env
from tests.sites import company_setting, generated_site
from tests.tasks import task_env
from tests.webapp import FUNCTION, make_app, progress

PGBOUNCER = "/usr/sbin/pgbouncer"


@contextmanager
def pgbouncer(direct_url: str) -> Iterator[tuple[str, str]]:
    """A private PgBouncer in transaction mode in front of `direct_url`'s database; yields the URLs
    of two pools of it: one of 4 server connections and one of a single connection."""
    if not os.access(PGBOUNCER, os.X_OK):
        unavailable(f"Debian's pgbouncer ({PGBOUNCER}) is not installed: apt-get install pgbouncer (bin/run-tests does)")
    parts = urlsplit(direct_url)
    name = parts.path.lstrip("/")
    root = Path(tempfile.mkdtemp(prefix="alx-pgbouncer-"))  # readable by the postgres user it runs as under root
    port = free_port()
    (root / "users.txt").write_text(f'"{parts.username}" ""\n')
    (root / "pgbouncer.ini").write_text(f"""[databases]
{name} = host={parts.hostname} port={parts.port} dbname={name} pool_size=4
{name}_one = host={parts.hostname} port={parts.port} dbname={name} pool_size=1
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {root}/users.txt
pool_mode = transaction
max_client_conn = 200
logfile = {root}/pgbouncer.log
pidfile = {root}/pgbouncer.pid
ignore_startup_parameters = extra_float_digits
""")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        for child in root.iterdir():
            shutil.chown(child, "postgres")
        root.chmod(0o755)
    command = [PGBOUNCER, *(["-u", "postgres"] if os.geteuid() == 0 else []), str(root / "pgbouncer.ini")]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"{parts.scheme}://{parts.username}@127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                engines.connect(base + name, "").db.close()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (root / "pgbouncer.log").read_text() if (root / "pgbouncer.log").exists() else ""
                    pytest.fail(f"pgbouncer did not start: {log[-2000:]}")
                time.sleep(0.1)
        yield base + name, base + name + "_one"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def test_session_locks_need_lock_url_behind_transaction_pooling(tmp_path):
    """Without lock_url two holders share PgBouncer's one server connection, and PostgreSQL's
    session lock, taken twice by one session, is granted to both; and it outlives them both (the
    pooler keeps the server session). With lock_url the second is busy, and a lock ends with its
    holder."""
    reason = _ensure_database("postgresql")
    if reason:
        unavailable(reason)
    direct = SESSION_URLS["postgresql"]
    with pgbouncer(direct) as (_, one):
        a, b = engines.connect(one, "t_"), engines.connect(one, "t_")
        with a.lock("leaked"), b.lock("leaked"):
            pass  # both "held" it
        with pytest.raises(LockBusy):  # and the pool's server session holds it still
            with engines.connect(direct, "t_").lock("leaked"):
                pass
        a, b = engines.connect(one, "t_", lock_url=direct), engines.connect(one, "t_", lock_url=direct)
        with a.lock("cron_task"):
            with pytest.raises(LockBusy):
                with b.lock("cron_task"):
                    pass
            with b.lock_set() as locks:  # a lock set's session goes there too
                assert locks.take(["cron_task", "other"]) == {"other"}
        with b.lock("cron_task", timeout=5):  # the closed session's locks are freed by its backend, soon
            pass
        for engine in (a, b):
            engine.db.close()


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_serve_cron_and_populate_through_pgbouncer(db, tmp_path):
    now = int(time.time())
    demo = generated_site(db, now, companies=2, users=60, seed=4)
    token, _, companyid = demo.tokens[0]
    company_setting(db, companyid, "rate_limit", 5)
    direct = db.url
    with pgbouncer(direct) as (pooled, one):
        env = {**os.environ, **service_env(db, tmp_path), "ALX_DATABASE_URL": pooled, "ALX_DATABASE_LOCK_URL": direct}
        cli = [sys.executable, "-m", "local_alx_report_api.cli"]
        populated = subprocess.run([*cli, "populate", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
        assert populated.returncode == 0, populated.stdout + populated.stderr
        # the sync task under its lock, twice at once: one runs, the other finds the lock taken
        runs = [subprocess.Popen([*cli, "task", "run", "sync_reporting_data_task"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for _ in range(2)]
        outputs = [(run.wait(timeout=300), run.stdout.read()) for run in runs]
        for run in runs:
            run.stdout.close()
        skipped = [out for code, out in outputs if code != 0]
        assert len(skipped) <= 1 and all("running elsewhere" in out for out in skipped), outputs
        cron = subprocess.run([*cli, "cron"], env=env, capture_output=True, text=True, timeout=300)
        assert cron.returncode == 0, cron.stdout + cron.stderr
        filled = db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = ?", (companyid,))
        assert filled > 50

        pooled_engine = engines.connect(pooled, db.prefix, lock_url=direct)
        with gunicorn(pooled_engine, tmp_path, workers=3, threads=2, ALX_DATABASE_LOCK_URL=direct) as base:
            # the same rows as the app on a direct connection gives
            body = urlencode({"wstoken": token, "wsfunction": FUNCTION, "moodlewsrestformat": "json",
                              "limit": 1000, "mode": "full"}).encode()
            with urllib.request.urlopen(base + "webservice/rest/server.php", body, timeout=60) as answer:
                pooled_rows = json.loads(answer.read())
            direct_rows = progress(make_app(db, now, local_alx_report_api__rate_limit=0), demo.tokens[1][0],
                                   limit=1000, mode="full").json
            assert {(r["userid"], r["courseid"]) for r in pooled_rows} == set(stored(db, companyid))
            assert direct_rows and isinstance(direct_rows, list)
            # the rate limit stays exact with 12 requests at once on 6 worker threads: 4 more admitted
            statuses: list[int] = []

            def feed():
                try:
                    with urllib.request.urlopen(f"{base}local/alx_report_api/odata/CourseProgress?wstoken={token}"
                                                "&$top=5", timeout=60) as answer:
                        statuses.append(answer.status)
                except urllib.error.HTTPError as exc:
                    statuses.append(exc.code)

            threads = [threading.Thread(target=feed) for _ in range(12)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(statuses) == [200] * 4 + [429] * 8
        pooled_engine.db.close()
        # the commands keep their locks on lock_url: a task lock leaked on the pool's only server
        # session (taken through the pooler without lock_url) makes `task run` skip; had it taken its
        # lock through the pooler, that same session would have granted it again
        leaky = engines.connect(one, db.prefix)
        with leaky.lock(f"task_{NAMESPACE}sync_reporting_data_task"):
            pass
        skipped = subprocess.run([*cli, "task", "run", "sync_reporting_data_task"], capture_output=True, text=True,
                                 env={**env, "ALX_DATABASE_URL": one}, timeout=120)
        assert "running elsewhere" in skipped.stdout, skipped.stdout + skipped.stderr
        leaky.db.close()
    counted = db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_logs} WHERE counted = 1 AND companyid = ?", (companyid,))
    assert counted == 5
    sync_task.execute(task_env(db, now + 60))  # the state left through the pooler is sound for a direct run


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_a_wrong_lock_url_stops_the_command_with_one_line(db, tmp_path):
    generated_site(db, int(time.time()), companies=1, users=5, seed=2)
    cli = [sys.executable, "-m", "local_alx_report_api.cli", "task", "list"]
    base = {**os.environ, **service_env(db, tmp_path)}
    other = db.url.rsplit("/", 1)[0] + "/postgres"  # another database on the same server
    for lock_url, words in ((other, "does not reach the database url names"),
                            ("postgresql://postgres@127.0.0.1:1/x", "Cannot connect to [database] lock_url"),
                            ("mariadb://root@127.0.0.1:3306/x", "is for PostgreSQL")):
        result = subprocess.run(cli, env={**base, "ALX_DATABASE_LOCK_URL": lock_url}, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode != 0 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            lock_url, result.stderr)
