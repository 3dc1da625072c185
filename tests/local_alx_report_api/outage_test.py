"""Issue 14 (2, 7): a PostgreSQL outage under load, with `serve` (gunicorn) and
`cron --keep-alive` running. The server is the test's own cluster, stopped and started by the
test. Every answer stays Moodle-shaped (no HTTP 500), connection errors are retried and then
answered `dbconnectionfailed`, both processes recover without a restart, and the `database`
alert is stored once the database is back."""

import json
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urlencode

import pytest

from local_alx_report_api.classes import installer
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from moodle_core import engines, generator
from tests.conftest import IN_CI
from tests.faults import PostgresServer
from tests.servers import gunicorn, service_env
from tests.tasks import task_env
from tests.webapp import FUNCTION


@pytest.fixture
def server():
    try:
        pg = PostgresServer()
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        if IN_CI:
            pytest.fail(f"CI=true and a private PostgreSQL cluster cannot be started: {exc}")
        pytest.skip(f"a private PostgreSQL cluster cannot be started: {exc}")
    yield pg
    pg.remove()


class Load:
    """Requests in a loop until stopped: (time, HTTP status, what came back)."""

    def __init__(self, base: str, token: str):
        self.url, self.token, self.results, self.running = base + "webservice/rest/server.php", token, [], True
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        n = 0
        while self.running:
            params = {"wstoken": self.token, "moodlewsrestformat": "json"}
            params.update({"wsfunction": FUNCTION, "limit": 50} if n % 2 else
                          {"wsfunction": "core_webservice_get_site_info"})
            body = urlencode(params).encode()
            try:
                with urllib.request.urlopen(urllib.request.Request(self.url, data=body), timeout=60) as response:
                    status, raw = response.status, response.read()
            except urllib.error.HTTPError as exc:
                status, raw = exc.code, exc.read()
            try:
                answer = json.loads(raw)
                kind = answer.get("errorcode", "ok") if isinstance(answer, dict) else "ok"
            except ValueError:
                kind = "not json"
            self.results.append((time.monotonic(), status, kind))
            n += 1
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.thread.join(90)


def test_serve_and_cron_ride_out_a_database_outage(server, tmp_path):
    engine = engines.connect(server.url, "mdl_")
    site = generator.generate(engine, companies=2, users=40, seed=4)
    now = int(time.time())
    installer.install(engine, now)
    sync_task.execute(task_env(engine, now))
    settings = {"ALX_DATABASE_RETRY_BASE_DELAY": "0.2", "ALX_CRON_JOB_POLL_SECONDS": "1"}
    cron_log = open(tmp_path / "cron.log", "w+")
    cron = subprocess.Popen([sys.executable, "-m", "local_alx_report_api.cli", "cron", "--keep-alive"],
                            env={**service_env(engine, tmp_path), **settings, "PATH": "/usr/bin:/bin"},
                            stdout=cron_log, stderr=subprocess.STDOUT)
    try:
        with gunicorn(engine, tmp_path, workers=2, **settings) as base:
            load = Load(base, site.tokens[0][0])
            time.sleep(2)
            down = time.monotonic()
            server.stop()
            time.sleep(6)
            server.start()
            up = time.monotonic()
            deadline = up + 30
            while time.monotonic() < deadline and not any(t > up and k == "ok" for t, _, k in load.results):
                time.sleep(0.1)
            time.sleep(4)  # the cron runner's next job poll finds the database again
            load.stop()
        assert cron.poll() is None, "the cron runner died"
    finally:
        cron.terminate()
        cron.wait(20)
    results = load.results
    kinds = {}
    for _, _status, kind in results:
        kinds[kind] = kinds.get(kind, 0) + 1
    recovered = min(t for t, _, k in results if t > up and k == "ok") - up
    print(f"answers by kind: {kinds}; outage {up - down:.1f} s; first success {recovered:.1f} s after the restart")
    assert {status for _, status, _ in results} == {200}
    assert set(kinds) <= {"ok", "dbconnectionfailed", "dmlreadexception"} and kinds.get("dbconnectionfailed")
    assert kinds.get("ok", 0) > 10 and recovered < 15
    cron_log.seek(0)
    lines = cron_log.read().splitlines()
    assert sum("database unreachable" in line for line in lines) == 1, lines
    assert sum("database reachable again" in line for line in lines) == 1, lines
    assert not any("Traceback" in line for line in lines), lines
    engine.reconnect()
    alert = engine.execute("SELECT severity, message, occurrences FROM {t:local_alx_api_alerts} WHERE "
                           "alert_type = 'database' AND subject = 'db_connection'").fetchone()
    assert alert is not None and alert[0] == "critical" and alert[1].startswith("Database connection problem: ")
