"""README's run command gives a working site: the printed request, the probes, /metrics, the
control center, and a cron runner that executes queued jobs (issues 6 and 7)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request

from tests.browser.conftest import ROOT, shot, sign_in

PAGES = ["", "companies", "tokens", "data", "cache", "monitoring", "alerts", "logs", "configuration"]


def get(demo, path: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(demo.url(path), timeout=30) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read().decode()


def test_printed_request_and_probes_answer(demo):
    elements = json.loads(demo.api(limit=2))
    assert isinstance(elements, list) and len(elements) == 2 and "userid" in elements[0]
    assert get(demo, "/healthz") == (200, "text/plain", "OK")
    status, kind, body = get(demo, "/readyz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    status, kind, body = get(demo, "/metrics")
    assert status == 200 and "alx_report_api_requests_total" in body and "alx_report_api_health_score" in body


def test_the_printed_command_line_reaches_the_demo_site(demo):
    """Issue 18: the command line the demo prints, run from the repository as printed, opens the
    demo's database (here a temporary folder, so the line carries the database)."""
    folder, line = re.search(r"Command line, from (\S+):\n\n  (.+)\n", demo.printed).groups()
    assert folder == str(ROOT) and line.endswith(".venv/bin/alx-report-api task list")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALX_")}
    done = subprocess.run(["bash", "-c", line], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sync = next(row for row in done.stdout.splitlines() if row.startswith("sync_reporting_data_task"))
    assert "never" not in sync and sync.endswith("success")  # the run bin/run-demo made


def test_the_default_demo_folder_is_the_database_settings_ini_names():
    """Issue 18: `bin/run-demo` without --dir builds demo/moodle.sqlite3, which ./settings.ini names,
    so every command of README run from the repository works on the demo; bad options: one line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALX_")}
    helptext = subprocess.run([str(ROOT / "bin" / "run-demo"), "--help"], capture_output=True, text=True, check=True)
    assert "--dir DIR         folder of the demo site, rebuilt on every start (default: demo," in helptext.stdout
    assert "--bind HOST:PORT  address of the web service and control center (default: 127.0.0.1:8000)" \
        in helptext.stdout
    done = subprocess.run([str(ROOT / ".venv" / "bin" / "alx-report-api"), "settings"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=True)
    assert "url = sqlite:///demo/moodle.sqlite3    ; settings.ini" in done.stdout
    for argv, message in ((["--bind", "8000"], "run-demo: --bind must be HOST:PORT, got '8000'\n"),
                          (["--port", "1"], "run-demo: unknown option '--port' (bin/run-demo --help)\n"),
                          (["--users", "many"], "run-demo: --companies, --users and --courses take a positive number, "
                                                "got 'many'\n")):
        done = subprocess.run([str(ROOT / "bin" / "run-demo"), *argv], capture_output=True, text=True)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", message)


def test_sign_in_and_every_page_loads_without_console_errors(demo, page):
    sign_in(page, demo)
    page.wait_for_url("**/local/alx_report_api/")
    assert page.locator("h1").inner_text() == "Overview"
    for name in PAGES:
        page.goto(demo.url(f"/local/alx_report_api/{name}"))
        assert page.locator("h1").count() == 1, name
        assert "Something went wrong" not in page.content(), name
        shot(page, name or "overview")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(demo.url("/local/alx_report_api/"))
    shot(page, "overview-phone")
    page.click("text=Sign out")
    page.wait_for_url("**/login")


def test_populate_job_runs_and_the_page_follows_it_live(demo, page):
    sign_in(page, demo)
    page.goto(demo.url("/local/alx_report_api/data"))
    page.select_option("#populate_companyids", ["all"])
    page.fill("#batch_size", "100")
    page.click("#populate-form button[type=submit]")
    page.wait_for_url("**/jobs/*")
    shot(page, "job-running")
    # the cron runner of the demo (keep-alive, polling every second) runs it; the page updates itself
    page.wait_for_selector("#per-company", timeout=120_000)
    assert page.locator("#job [data-key=status]").inner_text() == "success"
    assert page.locator("[data-key=percent]").inner_text() == "100"
    shot(page, "job-finished")


def test_overview_cards_refresh_from_stats_json(demo, page):
    """admin-ui.md 3.1: the cards refresh every 30 s from stats.json (badge included); the page's
    clock is Playwright's, moved on 31 s instead of waited for."""
    page.clock.install()
    sign_in(page, demo)
    page.wait_for_url("**/local/alx_report_api/")
    page.evaluate("""() => {
        document.querySelector('[data-key=total_records]').textContent = 'stale';
        document.querySelector('[data-badge-key]').textContent = 'stale';
    }""")
    page.clock.run_for(31_000)
    page.wait_for_function("document.querySelector('[data-key=total_records]').textContent !== 'stale'",
                           timeout=15_000)
    badge = page.locator("[data-badge-key] .badge")
    assert badge.inner_text() in ("✅ healthy", "⚠️ warning", "❌ unhealthy")
    assert page.locator("[data-key=total_records]").inner_text().replace(",", "").isdigit()
