"""The control center on a laptop (issue 18), in a real browser against the demo site: every table's
columns and every action of every page can be reached at 1366×768 and 1024×768; the health badge
agrees with the open alerts; a token whose only pull is still open says so wherever its last pull
is shown; a chart with one bucket of data writes its latest value."""

from __future__ import annotations

import json
import re

import pytest

from tests.browser.conftest import shot, sign_in

SIZES = [(1366, 768), (1024, 768)]
CC = "/local/alx_report_api"

# Problems that keep a table's column or action out of reach at the current window size. A header
# cell or control outside the window (or cut off by a box that hides overflow) must sit in its
# table's own scroll box, with a visible hint that the box scrolls, and come into full view when
# scrolled to; the page itself never scrolls sideways, and the content column takes the window.
REACH = """() => {
  const vw = document.documentElement.clientWidth, problems = [];
  if (document.documentElement.scrollWidth > vw + 1)
    problems.push(`the page scrolls sideways (${document.documentElement.scrollWidth} px in ${vw} px)`);
  const main = document.querySelector('main').getBoundingClientRect();
  if (main.left > 1 || main.right < vw - 1)
    problems.push(`the content column is ${Math.round(main.width)} px of a ${vw} px window`);
  const clipped = (el, r) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (getComputedStyle(a).overflowX === 'visible') continue;
      const box = a.getBoundingClientRect(), left = box.left + a.clientLeft;
      if (r.left < left - 0.5 || r.right > left + a.clientWidth + 0.5) return true;
    }
    return false;
  };
  const inView = (el) => {
    const r = el.getBoundingClientRect();
    return r.left >= -0.5 && r.right <= vw + 0.5 && !clipped(el, r);
  };
  const cue = (box) => {
    const hint = box.previousElementSibling;
    return !!hint && hint.classList.contains('scroll-hint') && !hint.hidden && hint.getBoundingClientRect().width > 0;
  };
  document.querySelectorAll('details').forEach((d) => { d.open = true; });  // chart tables too
  document.querySelectorAll('table').forEach((table, t) => {
    const name = `table ${table.id || table.className || t + 1}`;
    const items = table.querySelectorAll('th, a, button, input:not([type=hidden]), select, textarea');
    items.forEach((el) => {
      if (!el.getClientRects().length) return;  // not rendered (a button shown only with a script)
      if (inView(el)) return;
      const what = `${name}: ${el.tagName.toLowerCase()} "${(el.textContent || el.name || '').trim().slice(0, 30)}"`;
      const box = el.closest('.scroll');
      if (!box || box.scrollWidth <= box.clientWidth) problems.push(`${what} is out of sight and nothing scrolls to it`);
      else if (!cue(box)) problems.push(`${what} is hidden in a scroll box that shows no hint`);
      el.scrollIntoView({block: 'nearest', inline: 'nearest'});
      if (!inView(el)) problems.push(`${what} stays out of sight when scrolled to`);
      if (box) box.scrollLeft = 0;
    });
  });
  return problems;
}"""


def check_sizes(page, name: str) -> list[str]:
    """The problems of the loaded page at both sizes, with a screenshot of each."""
    problems = []
    for width, height in SIZES:
        page.set_viewport_size({"width": width, "height": height})
        page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        problems += [f"{name} at {width}×{height}: {p}" for p in page.evaluate(REACH)]
        page.evaluate("() => window.scrollTo(0, 0)")
        shot(page, f"laptop-{name}-{width}")
    return problems


@pytest.fixture(scope="module")
def scene(demo, browser):
    """What the pages show besides the demo's own data: a token whose first pull is open (one page
    of many fetched), two sign-in lockouts (two open high alerts) and a reconcile job."""
    context = browser.new_context()
    page = context.new_page()
    for intruder in ("laptop-intruder-1", "laptop-intruder-2"):
        for _ in range(5):  # the fifth failure raises the alert
            sign_in(page, demo, intruder, "wrong")
            page.get_by_text("Invalid login, please try again").wait_for()
    sign_in(page, demo)
    username, companyid, _ = demo.managers[0]
    page.goto(demo.url(CC + "/tokens"))
    page.fill("#username", username)
    page.fill("#name", "Laptop check: first pull open")
    page.click("#create-token button[type=submit]")
    token = page.locator("#new-token").inner_text().strip()
    assert len(json.loads(demo.api(token, limit=1))) == 1  # the first page of a full pull: still open
    page.goto(demo.url(CC + "/tokens"))
    tokenid = int(page.locator("tr", has_text="Laptop check: first pull open").get_attribute("id").split("-")[1])
    page.goto(demo.url(CC + "/data"))
    page.select_option("#reconcile_companyids", ["all"])
    page.click("#reconcile-form button[type=submit]")
    page.wait_for_url("**/jobs/*")
    jobid = int(page.url.rsplit("/", 1)[1])
    context.close()
    return {"token": token, "tokenid": tokenid, "companyid": companyid, "jobid": jobid}


def test_every_table_column_and_action_is_reachable_at_laptop_sizes(demo, page, browser, scene):
    sign_in(page, demo)
    page.wait_for_url("**" + CC + "/")
    problems = check_sizes(page, "overview")
    # a new token, shown once (token_created.html)
    page.goto(demo.url(CC + "/tokens"))
    page.fill("#username", demo.managers[-1][0])
    page.fill("#name", "Laptop check: shown once")
    page.click("#create-token button[type=submit]")
    page.wait_for_selector("#new-token")
    problems += check_sizes(page, "token-created")
    page.goto(demo.url(CC + "/alerts"))
    alert = page.locator("tr", has_text="admin_login:laptop-intruder-1").locator("a").first.get_attribute("href")
    page.goto(demo.url(CC + "/logs"))
    log = page.locator("table.logs a[href*='id=']").first.get_attribute("href")
    cid = scene["companyid"]
    pages = {"companies": "/companies", "company": f"/companies/{cid}", "company-clear": f"/companies/{cid}/clear-data",
             "tokens": "/tokens", "token-revoke": f"/tokens/{scene['tokenid']}/revoke", "data": "/data",
             "job": f"/jobs/{scene['jobid']}", "cache": "/cache", "cache-purge-all": "/cache/purge-all",
             "monitoring": "/monitoring", "monitoring-7d": "/monitoring?period=7d", "alerts": "/alerts",
             "alert": alert, "logs": "/logs", "log": log, "configuration": "/configuration"}
    for name, path in pages.items():
        page.goto(demo.url(path if path.startswith(CC) else CC + path))
        assert page.locator("h1").count() == 1 and "Something went wrong" not in page.content(), name
        problems += check_sizes(page, name)
    # the 404 page and the sign-in form (a context of their own: a 404 is a console error)
    other = browser.new_context()
    extra = other.new_page()
    sign_in(extra, demo)
    extra.goto(demo.url(CC + "/companies/987654"))
    assert "error-page" in extra.content()
    problems += check_sizes(extra, "not-found")
    extra.click("text=Sign out")
    extra.wait_for_url("**/login")
    problems += check_sizes(extra, "login")
    other.close()
    assert problems == [], "\n".join(problems)


def test_the_health_badge_agrees_with_the_open_alerts(demo, page, scene):
    sign_in(page, demo)
    page.wait_for_url("**" + CC + "/")
    stats = json.loads(page.evaluate("() => fetch('stats.json').then((r) => r.text())"))
    high, critical = stats["open_alerts"]["high"], stats["open_alerts"]["critical"]
    assert high >= 2, stats  # the two lockouts of the scene
    card = page.locator(".card", has=page.locator("h2", has_text="System health"))
    badge = card.locator(".badge").inner_text()
    shot(page, "overview-open-alerts")
    assert badge == "❌ unhealthy" if critical else badge in ("⚠️ warning", "❌ unhealthy"), card.inner_text()
    words = f"{critical} critical and {high} high alerts open" if critical else f"{high} high alerts open"
    assert words in card.inner_text()
    assert f"{stats['health']['score']}/100" in card.inner_text()  # the checks' score, as monitoring.md defines it
    assert card.locator("a").get_attribute("href").endswith(CC + "/alerts")


def test_a_token_whose_first_pull_is_open_says_so_wherever_its_last_pull_is_shown(demo, page, scene):
    sign_in(page, demo)
    page.goto(demo.url(CC + "/tokens"))
    row = page.locator(f"#token-{scene['tokenid']}")
    last_pull = row.locator("td").nth(10).inner_text()
    shot(page, "tokens-open-pull")
    assert " ".join(last_pull.split()) == "in progress (none completed yet)", last_pull
    page.goto(demo.url(f"{CC}/companies/{scene['companyid']}"))
    state = page.locator("#client-states tr", has_text=scene["token"][:8])
    cells = [" ".join(t.split()) for t in state.locator("td").all_inner_texts()]
    assert cells[2] == "in progress (none completed yet)", cells
    assert "rows so far" in cells[4]  # the open pull itself


@pytest.mark.parametrize("period", ["24h", "7d"])
def test_charts_write_their_latest_value_or_say_there_is_none_yet(demo, page, scene, period):
    """The demo's requests all fall in the current hour (and day): one bucket of data."""
    sign_in(page, demo)
    page.goto(demo.url(f"{CC}/monitoring?period={period}"))
    shot(page, f"monitoring-{period}-latest")
    labelled = 0
    for figure in page.locator("figure.chart").all():
        key = figure.get_attribute("id").removeprefix("chart-")
        latest = figure.locator("svg text.latest").all_text_contents()
        rows = page.locator(f"#table-{key} tbody tr").all()
        nothing = ("—",) if figure.locator("svg circle").count() else ("—", "0")  # a line's 0 is a value
        last_cells = []
        for row in reversed(rows):  # the latest bucket with a value
            cells = [c.strip() for c in row.locator("td").all_text_contents()[1:]]  # in a closed <details>
            if any(c not in nothing for c in cells):
                last_cells = cells
                break
        if not last_cells:
            assert latest == [] and "No data yet in this period" in figure.text_content(), key
            continue
        labelled += 1
        numbers = [re.sub(r"[^0-9.]", "", t.split(":")[-1]) for t in latest]
        assert latest and all(n in [c.replace(",", "") for c in last_cells] for n in numbers), (key, latest, last_cells)
    assert labelled >= 2  # requests and elements delivered, at least
