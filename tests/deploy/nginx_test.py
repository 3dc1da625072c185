"""Issue 14 (5): the production setup of deploy/. Debian's nginx runs deploy/nginx.conf (only its
`listen 80;` and `server 127.0.0.1:8000;` lines pointed at free ports) in front of
`alx-report-api serve` with two sync workers. Clients that send their headers slowly (slowloris)
keep gunicorn's workers busy when they reach it directly, but not behind nginx; nginx also refuses
bodies over 16 MiB and serves /metrics to loopback only."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import pytest

from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.conftest import ROOT, unavailable
from tests.servers import free_port, gunicorn
from tests.sites import generated_site
from tests.tasks import task_env

NGINX = "/usr/sbin/nginx"
ENDPOINT = "webservice/rest/server.php"
DRIBBLE_SECONDS = 2  # a slow client sends one more header line this often, never the blank line
HEADER_TIMEOUT = 10  # deploy/nginx.conf client_header_timeout


@pytest.fixture
def site(db, tmp_path):
    """gunicorn with two sync workers on a generated site; yields its base URL and a token."""
    if not os.access(NGINX, os.X_OK):
        unavailable(f"Debian's nginx ({NGINX}) is not installed: apt-get install nginx (bin/run-tests does)")
    generated = generated_site(db, int(time.time()), companies=1, users=10, seed=5)
    sync_task.execute(task_env(db, int(time.time())))  # the OData feed reads the filled table
    with gunicorn(db, tmp_path, workers=2, ALX_WEBSERVICE_TRUSTED_PROXIES="127.0.0.1") as base:
        yield base, generated.tokens[0][0]


@contextmanager
def nginx(tmp_path: Path, upstream: str) -> Iterator[str]:
    """A private nginx in the foreground with deploy/nginx.conf in front of `upstream` (HOST:PORT);
    yields its base URL. Logs and temporary files stay in tmp_path/nginx."""
    root = tmp_path / "nginx"
    root.mkdir()
    production = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "listen 80;" in production and "server 127.0.0.1:8000;" in production
    port = free_port()
    (root / "site.conf").write_text(production.replace("listen 80;", f"listen 127.0.0.1:{port};")
                                    .replace("server 127.0.0.1:8000;", f"server {upstream};"))
    temp_paths = "\n".join(f"    {kind}_temp_path {root / kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (root / "nginx.conf").write_text(f"""{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
error_log {root / "error.log"} info;
events {{ worker_connections 512; }}
http {{
    default_type application/octet-stream;
    access_log {root / "access.log"};
{temp_paths}
    include {root / "site.conf"};
}}
""")
    output = open(root / "nginx.out", "w+")
    proc = subprocess.Popen([NGINX, "-p", f"{root}/", "-e", str(root / "error.log"), "-c", str(root / "nginx.conf"),
                             "-g", f"daemon off; pid {root / 'nginx.pid'};"],
                            stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output.seek(0)
                    pytest.fail(f"nginx did not start: {output.read()}{(root / 'error.log').read_text()}")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        output.close()


@contextmanager
def slow_clients(base: str, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that send a request line, then one header line every DRIBBLE_SECONDS,
    never ending the headers, until the block ends; then they are closed."""
    port = int(base.rstrip("/").rsplit(":", 1)[1])
    socks = []
    stop = threading.Event()

    def dribble():
        n = 0
        while not stop.wait(DRIBBLE_SECONDS):
            n += 1
            for s in socks:
                try:
                    s.sendall(f"X-Slow-{n}: {'a' * 20}\r\n".encode())
                except OSError:
                    pass  # closed by the server: it stays closed

    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
            s.sendall(f"POST /{ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n".encode())
        thread = threading.Thread(target=dribble, daemon=True)
        thread.start()
        time.sleep(0.5)  # the server has accepted them
        yield socks
        stop.set()
        thread.join(timeout=10)
    finally:
        stop.set()
        for s in socks:
            s.close()


def closed_by_server(s: socket.socket) -> bool:
    s.settimeout(0)
    try:
        return s.recv(4096, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True  # reset
    finally:
        s.settimeout(5)


def probe(base: str, token: str, timeout: float) -> bool:
    """One site-info request: True when it answers 200 with the token user's username in time."""
    body = urlencode({"wstoken": token, "wsfunction": "core_webservice_get_site_info",
                      "moodlewsrestformat": "json"}).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(base + ENDPOINT, data=body), timeout=timeout) as answer:
            return answer.status == 200 and "username" in json.loads(answer.read())
    except (OSError, ValueError):
        return False


def status(url: str, source: str = "127.0.0.1") -> int:
    host, port = url.split("/")[2].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", "/" + url.split("/", 3)[3])
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_behind_nginx_slow_header_clients_do_not_starve_others(site, tmp_path):
    direct, token = site
    started = time.monotonic()

    # directly: two slow clients hold both sync workers, so probes (3 s each, at once) time out
    with slow_clients(direct, 2), ThreadPoolExecutor(6) as pool:
        direct_ok = sum(pool.map(lambda _: probe(direct, token, 3), range(6)))
    assert probe(direct, token, 10)  # the workers are free again once the slow clients are gone

    with nginx(tmp_path, direct.split("/")[2]) as proxied:
        with slow_clients(proxied, 20) as socks:
            opened = time.monotonic()
            proxied_ok = 0
            for _ in range(20):  # spread over about 4 s: two more header lines from every slow client
                t = time.monotonic()
                proxied_ok += probe(proxied, token, 5)
                assert time.monotonic() - t < 5
                time.sleep(0.2)
            still_waiting = sum(not closed_by_server(s) for s in socks)
            # client_header_timeout: nginx drops them once their headers took longer than 10 s
            while time.monotonic() < opened + HEADER_TIMEOUT + 5 and not all(map(closed_by_server, socks)):
                time.sleep(0.25)
            dropped = sum(map(closed_by_server, socks))
            dropped_after = time.monotonic() - opened
        print(f"\nslow-header clients: probes answered directly by gunicorn (2 sync workers, 2 slow clients): "
              f"{direct_ok}/6; through nginx (20 slow clients): {proxied_ok}/20; slow clients still open after "
              f"the probes {still_waiting}/20, dropped by nginx within {dropped_after:.1f} s: {dropped}/20")
        assert proxied_ok == 20
        assert still_waiting == 20  # the probes really ran while all of them were waiting
        assert dropped == 20

        # a body over the service's 8 MiB gets its Moodle answer (the body is not read); nginx
        # refuses only bodies over 16 MiB before they reach gunicorn
        host, port = proxied.split("/")[2].split(":")
        for size, expected in ((9, 200), (17, 413)):
            conn = http.client.HTTPConnection(host, int(port), timeout=20)
            try:
                try:
                    conn.request("POST", "/" + ENDPOINT + "?moodlewsrestformat=json", body=b"a" * (size * 1024 * 1024),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
                except (BrokenPipeError, ConnectionResetError):
                    pass  # nginx may answer before the whole body is sent
                answer = conn.getresponse()
                body = answer.read()
                assert answer.status == expected, (size, answer.status)
                if expected == 200:
                    assert json.loads(body)["errorcode"] == "invalidtoken"
            finally:
                conn.close()

        # the routes: probes and the service through, /metrics to loopback only, nothing else
        assert status(proxied + "healthz") == 200 and status(proxied + "readyz") == 200
        cc = "local/alx_report_api/login"
        assert status(proxied + cc) == status(direct + cc) != 404
        assert status(proxied + "metrics") == 200
        assert status(proxied + "metrics", source="127.0.0.2") == 403
        assert status(proxied + "config.php") == 404

        # the OData feed's links point back through nginx (X-Forwarded-Host, with its port)
        feed = proxied + "local/alx_report_api/odata/CourseProgress"
        request = urllib.request.Request(f"{feed}?wstoken={token}", headers={"Prefer": "odata.maxpagesize=2"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            link = json.loads(answer.read())["@odata.nextLink"]
        assert link.startswith(feed + "?")
        with urllib.request.urlopen(link, timeout=10) as answer:
            assert len(json.loads(answer.read())["value"]) == 2
    print(f"whole test {time.monotonic() - started:.1f} s")
