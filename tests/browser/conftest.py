"""Browser tests: the demo site of README's run command (bin/run-demo: gunicorn + cron runner on a
small SQLite site) driven by headless Chromium (Debian's package) through Playwright.

Every page visited is checked for console errors; screenshots go to tests/screenshots/ (git-ignored)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    def __init__(self, base: str, token: str, password: str, folder: Path, managers: list[tuple[str, int, str]],
                 printed: str):
        self.base, self.token, self.password, self.folder, self.printed = base, token, password, folder, printed
        self.managers = managers  # (username, company id, token) of the demo's company managers

    def url(self, path: str) -> str:
        return self.base + path

    def api(self, token: str | None = None, **params) -> bytes:
        """The request README prints (POST, form-encoded)."""
        data = {"wstoken": token or self.token, "wsfunction": "local_alx_report_api_get_course_progress",
                "moodlewsrestformat": "json", **params}
        body = "&".join(f"{k}={v}" for k, v in data.items()).encode()
        with urllib.request.urlopen(self.url("/webservice/rest/server.php"), body, timeout=30) as resp:
            return resp.read()


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """bin/run-demo, exactly as README runs it, on a free port in a temporary folder."""
    folder = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {**os.environ, "ALX_CRON_JOB_POLL_SECONDS": "1"}
    log = open(folder / "run-demo.log", "w")
    proc = subprocess.Popen([str(ROOT / "bin" / "run-demo"), "--dir", str(folder), "--bind", f"127.0.0.1:{port}",
                             "--companies", "3", "--users", "60", "--courses", "6"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (folder / "run-demo.log").read_text()
            try:
                urllib.request.urlopen(base + "/readyz", timeout=2).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the demo did not become ready:\n" + (folder / "run-demo.log").read_text())
        text = (folder / "run-demo.log").read_text()
        token = re.search(r"-d wstoken=(\w+)", text).group(1)
        password = re.search(r"sign in as admin / (\S+)\)", text).group(1)
        managers = [(u, int(c), t) for u, c, t in re.findall(r"Token for (\S+) \(company (\d+)\): (\w+)", text)]
        yield Demo(base, token, password, folder, managers, text)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        log.close()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        unavailable("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser context; fails the test on any console error or page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], errors


def shot(page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page, demo, username: str = "admin", password: str | None = None) -> None:
    page.goto(demo.url("/local/alx_report_api/login"))
    page.fill("#username", username)
    page.fill("#password", demo.password if password is None else password)
    with page.expect_navigation():  # the answer page has loaded before anyone reads it
        page.click("button[type=submit]")
