"""README's run command gives a working site: the printed request, the probes, /metrics, the
control center, and a cron runner that executes queued jobs (issues 6 and 7)."""

from __future__ import annotations

import json
import urllib.request

from tests.browser.conftest import shot, sign_in

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
    """admin-ui.md 3.1: the cards refresh every 30 s from stats.json (badge included)."""
    sign_in(page, demo)
    page.wait_for_url("**/local/alx_report_api/")
    page.evaluate("""() => {
        document.querySelector('[data-key=total_records]').textContent = 'stale';
        document.querySelector('[data-badge-key]').textContent = 'stale';
    }""")
    page.wait_for_function("document.querySelector('[data-key=total_records]').textContent !== 'stale'",
                           timeout=45_000)
    badge = page.locator("[data-badge-key] .badge")
    assert badge.inner_text() in ("✅ healthy", "⚠️ warning", "❌ unhealthy")
    assert page.locator("[data-key=total_records]").inner_text().replace(",", "").isdigit()
