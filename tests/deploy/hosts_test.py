"""Issue 17, several hosts on one database: two `serve` and two `cron --keep-alive` processes, each
pair with its own host name (its own UTS namespace, as two machines have), against one PostgreSQL
or MariaDB database, for a bounded time under load. The sync task is due every minute: each due
time is run by one host; queued jobs run once each; the daily rate limit stays exact across
hosts; one host's runner is killed and the other goes on; and at the end every company's table is
what the live Moodle tables define."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest

from local_alx_report_api.classes import jobs
from local_alx_report_api.db.tasks import NAMESPACE
from moodle_core.taskmanager import TaskDef
from tests.conftest import unavailable
from tests.oracle import expected_rows, stored
from tests.servers import free_port, service_env
from tests.sites import company_setting, generated_site
from tests.webapp import FUNCTION

SYNC = TaskDef(NAMESPACE + "sync_reporting_data_task", "", "* * * * *")
RUN_SECONDS = 200  # the runners' keep-alive: at least three minute boundaries
LIMIT = 25
LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d):\d\d\] (Execute scheduled task|Scheduled task complete|\.\.\. task "
                  r"failed)(: sync_reporting_data_task)?", re.M)


def sync_runs(output: str) -> list[str]:
    """The start minutes of the sync task's runs that ended (a run killed with its runner did not)."""
    runs, pending = [], None
    for minute, what, sync in LINE.findall(output):
        if what == "Execute scheduled task":
            pending = minute if sync else None
        elif pending is not None:
            runs.append(pending)
            pending = None
    return runs


def site_zone() -> str:
    """A zone where the day does not end during the test (the rate limit counts per local day)."""
    for zone in ("UTC", "Asia/Tokyo", "America/New_York"):
        local = datetime.now(ZoneInfo(zone))
        if 0 < local.hour < 23:
            return zone
    return "Asia/Kolkata"


def on_host(name: str, argv: list[str], env: dict, log) -> subprocess.Popen:
    """A command as it would run on another machine: its own host name (a UTS namespace)."""
    return subprocess.Popen(["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name, *argv], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "healthz", timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not start ({proc.returncode})")
            time.sleep(0.2)


@pytest.mark.parametrize("db", ["postgresql", "mariadb"], indirect=True)
def test_two_hosts_share_one_database(db, tmp_path):
    if os.geteuid() != 0:
        unavailable("a host name per process needs a UTS namespace: run as root (CI does)")
    started = int(time.time())
    zone = site_zone()
    demo = generated_site(db, started, companies=3, users=90, seed=9, timezone=zone)
    (limited, _, limited_company), (busy, _, busy_company) = demo.tokens[0], demo.tokens[1]
    company_setting(db, limited_company, "rate_limit", LIMIT)
    company_setting(db, busy_company, "rate_limit", 0)
    env = {**os.environ, **service_env(db, tmp_path), "ALX_SCHEDULED_TASKS_SYNC_REPORTING_DATA_TASK": "* * * * *",
           "ALX_CRON_JOB_POLL_SECONDS": "1", "ALX_LOCAL_ALX_REPORT_API_ALLOW_GET_METHOD": "true"}
    cli = [sys.executable, "-m", "local_alx_report_api.cli"]
    db.db.close()
    populated = subprocess.run([*cli, "populate", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert populated.returncode == 0, populated.stdout + populated.stderr

    procs, logs, bases = {}, {}, {}
    try:
        for host in ("host-a", "host-b"):
            port = free_port()
            logs[host] = {kind: open(tmp_path / f"{host}-{kind}.log", "w+") for kind in ("serve", "cron")}
            procs[(host, "serve")] = on_host(host, [*cli, "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                                             env, logs[host]["serve"])
            bases[host] = f"http://127.0.0.1:{port}/"
            procs[(host, "cron")] = on_host(host, [*cli, "cron", f"--keep-alive={RUN_SECONDS}"], env,
                                            logs[host]["cron"])
        for host in bases:
            wait_healthy(bases[host], procs[(host, "serve")])
        t0 = time.monotonic()

        statuses: list[int] = []
        failures: list[str] = []
        stop = threading.Event()

        def limited_feed(n):  # 60 first pages at once over both hosts (12 clients): LIMIT of them admitted
            for _ in range(5):
                host = ("host-a", "host-b")[n % 2]
                try:
                    with urllib.request.urlopen(f"{bases[host]}local/alx_report_api/odata/CourseProgress?"
                                                f"wstoken={limited}&$top=3", timeout=60) as answer:
                        statuses.append(answer.status)
                except urllib.error.HTTPError as exc:
                    statuses.append(exc.code)
                except OSError as exc:
                    failures.append(f"{host}: {exc}")

        def busy_pulls():  # full pulls through both hosts for the whole run
            n = 0
            while not stop.is_set():
                host = ("host-a", "host-b")[n % 2]
                n += 1
                body = urlencode({"wstoken": busy, "wsfunction": FUNCTION, "moodlewsrestformat": "json",
                                  "limit": 1000, "mode": "full"}).encode()
                try:
                    with urllib.request.urlopen(bases[host] + "webservice/rest/server.php", body, timeout=60) as r:
                        page = json.loads(r.read())
                    if not isinstance(page, list) or not page:
                        failures.append(f"{host}: {str(page)[:200]}")
                except OSError as exc:
                    failures.append(f"{host}: {exc}")
                time.sleep(0.2)

        threads = [threading.Thread(target=limited_feed, args=(n,)) for n in range(12)]
        threads.append(threading.Thread(target=busy_pulls))
        for t in threads:
            t.start()
        queued = [jobs.queue(db, int(time.time()), job_type="sync", companyids=[cid], userid=2)
                  for cid, _ in demo.companies]
        # Moodle changes now and then: learners renamed (their rows change)
        learners = [r[0] for r in db.rows("SELECT DISTINCT userid FROM {t:local_alx_api_reporting} ORDER BY userid")]
        last_change = 0
        for n in range(4):
            time.sleep(15)
            last_change = int(time.time())
            db.execute("UPDATE {t:user} SET firstname = ?, timemodified = ? WHERE id = ?",
                       (f"Renamed{n}", last_change, learners[n * 7]))
            if n == 2:  # one host's runner dies (SIGKILL: no cleanup; its locks go with its sessions)
                os.killpg(procs[("host-a", "cron")].pid, signal.SIGKILL)
                procs[("host-a", "cron")].wait(timeout=10)
                killed_at = time.time()
        # the other host's runner goes on: wait until it has run the sync task after the last change
        while time.monotonic() - t0 < RUN_SECONDS - 5:
            lastrun = db.scalar("SELECT last_sync_timestamp FROM {t:local_alx_api_sync_status} WHERE kind = 'task' "
                                "AND companyid = 0 AND token_hash = ?", (SYNC.hash,))
            if lastrun and int(lastrun) > last_change + 1:
                break
            time.sleep(2)
        stop.set()
        for t in threads:
            t.join(timeout=120)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            proc.wait(timeout=30)
    out = {(host, kind): (f.seek(0), f.read())[1] for host, files in logs.items() for kind, f in files.items()}
    for files in logs.values():
        for f in files.values():
            f.close()

    # each minute's sync ran on one host; both hosts ran it; the survivor after the kill
    runs = {host: sync_runs(out[(host, "cron")]) for host in logs}
    minutes = Counter(m for host in logs for m in runs[host])
    assert minutes and max(minutes.values()) == 1, minutes
    assert runs["host-b"], out
    killed_minute = datetime.fromtimestamp(killed_at, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")  # as cron prints
    assert any(m >= killed_minute for m in runs["host-b"]), (killed_minute, runs)
    everything = "".join(out.values())
    assert "Traceback" not in everything and "database unreachable" not in everything.lower(), out
    # every job once, each by one of the hosts
    for jobid in queued:
        job = jobs.get(db, jobid)
        assert job["status"] == "success" and job["runner"]["hostname"] in ("host-a", "host-b"), job
    # the limit across hosts: exactly LIMIT of 60 admitted
    assert len(statuses) == 60 and statuses.count(200) == LIMIT and statuses.count(429) == 60 - LIMIT
    assert not failures, failures[:5]
    # every company's table is what the live tables define, the last renames included
    now = int(time.time())
    for cid, _ in demo.companies:
        assert stored(db, cid) == expected_rows(db, cid, now)
