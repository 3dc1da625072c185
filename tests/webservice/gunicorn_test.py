"""What only a real server shows: gunicorn workers sharing one database admit exactly the
rate limit under concurrency (course-progress.md section 12)."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urlencode

import pytest

from local_alx_report_api.classes import installer
from moodle_core import generator
from tests.webapp import FUNCTION


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db, tmp_path):
    site = generator.generate(db, companies=1, users=10, seed=5)
    installer.install(db, int(time.time()))
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (1, 'rate_limit', 20, 0, 0)")
    db.db.close()
    port = free_port()
    env = {**os.environ, "ALX_DATABASE_URL": db.url, "ALX_DATABASE_PREFIX": db.prefix,
           "ALX_REPORT_API_SETTINGS": str(tmp_path / "none.ini")}
    proc = subprocess.Popen([sys.executable, "-m", "local_alx_report_api.cli", "serve", "--bind",
                             f"127.0.0.1:{port}", "--workers", "4"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/webservice/rest/server.php"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("gunicorn exited: " + proc.stdout.read())
            time.sleep(0.2)
    yield url, site.tokens[0][0]
    proc.terminate()
    proc.wait(timeout=20)


def test_four_workers_admit_exactly_the_limit_of_fifty_simultaneous_requests(server):
    url, token = server
    body = urlencode({"wstoken": token, "wsfunction": FUNCTION, "moodlewsrestformat": "json", "limit": 5}).encode()
    results, start = [], threading.Barrier(50)

    def call():
        start.wait()
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=60) as response:
            results.append((response.status, json.loads(response.read()), response.headers))

    threads = [threading.Thread(target=call) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 50 and {status for status, _, _ in results} == {200}
    admitted = [r for r in results if isinstance(r[1], list)]
    rejected = [r for r in results if isinstance(r[1], dict)]
    assert len(admitted) == 20
    assert {r[1]["errorcode"] for r in rejected} == {"ratelimitexceeded"}
    assert all(r[2]["X-RateLimit-Remaining"] == "0" and int(r[2]["Retry-After"]) >= 1 for r in rejected)
    assert sorted(int(r[2]["X-RateLimit-Remaining"]) for r in admitted) == list(range(20))


def test_probes_and_metrics_aggregate_all_workers(server):
    url, token = server
    base = url.rsplit("/webservice", 1)[0]
    body = urlencode({"wstoken": token, "wsfunction": FUNCTION, "moodlewsrestformat": "json", "limit": 1}).encode()
    for _ in range(12):  # spread over the four workers
        urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30).read()
    assert urllib.request.urlopen(base + "/healthz", timeout=10).read() == b"OK"
    assert json.loads(urllib.request.urlopen(base + "/readyz", timeout=10).read()) == {"status": "ok"}
    text = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
    counted = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith(f'alx_report_api_requests_total{{function="{FUNCTION}"'))
    assert counted == 12
