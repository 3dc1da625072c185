"""Monitoring page (admin-ui.md 3.7): the five charts and their tables, checked against log rows
written by real REST calls at fixed clock times; hourly and daily buckets in the site time zone;
today's numbers per company; company sync state; the gate."""

from __future__ import annotations

import bisect
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from local_alx_report_api.classes import company_state, metrics
from local_alx_report_api.controlcenter.svg import Series, line_chart, nice_scale, stacked_bar_chart
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.admin import PREFIX, admin_app, sign_in
from tests.sites import NOW, acme_and_globex, api_token, company_setting, new_site
from tests.tasks import task_env
from tests.webapp import progress

HOUR = 3600
SYNCED = NOW - 6 * HOUR  # 09:00 UTC: the reporting rows are written then
ACME1, ACME2, GLOBEX = "1" * 32, "2" * 32, "3" * 32


@pytest.fixture
def site(db):
    b = acme_and_globex(db)
    api_token(b, 5, ACME1, "api1")
    api_token(b, 5, ACME2, "api2")
    api_token(b, 6, GLOBEX, "api3")
    company_setting(db, 5, "sync_mode", 2)  # Always full: identical pages come from the cache
    company_setting(db, 6, "rate_limit", 1)
    sync_task.execute(task_env(db, SYNCED))
    return b


def calls(db, clock, timezone="UTC"):
    """REST calls at fixed times; returns the app, its clock set back to NOW afterwards."""
    app = admin_app(db, lambda: clock[0], site__timezone=timezone)
    for at, token, params in ((NOW - 2 * 24 * HOUR, ACME1, {"limit": 2}),  # two days ago
                              (NOW - 5 * HOUR + 60, ACME1, {"limit": 3}),  # 10:01 table (miss)
                              (NOW - 5 * HOUR + 120, ACME2, {"limit": 3}),  # 10:02 the same page: cache hit
                              (NOW - 3 * HOUR, "f" * 32, {}),  # 12:00 invalid token (no company)
                              (NOW - 3 * HOUR + 60, GLOBEX, {"limit": 10}),  # 12:01 Globex: its one request
                              (NOW - 30 * 60, GLOBEX, {"limit": 10})):  # 14:30 rate-limited
        clock[0] = at
        progress(app, token, **params)
    clock[0] = NOW
    return app


def log_rows(db):
    return db.rows("SELECT timeaccessed, errorcode, response_time_ms, cache_status, record_count, companyid, "
                   "data_source FROM {t:local_alx_api_logs} WHERE endpoint NOT LIKE 'admin:%' ORDER BY id")


def table(page, selector):
    return [[td.get_text(" ", strip=True) for td in tr.select("td")] for tr in page.html.select(f"{selector} tbody tr")]


def p95(values):
    ordered = sorted(values)
    return ordered[len(ordered) * 95 // 100] if ordered else None


def fmt(value):
    """How the page writes a number (the `num` filter)."""
    if value is None:
        return "—"
    value = float(value)
    return f"{int(value):,}" if value.is_integer() else f"{value:,.2f}".rstrip("0").rstrip(".")


def number(text):
    return None if text == "—" else float(text.replace(",", ""))


def approx(value):
    """A mean may round either way at the second decimal depending on the backend's arithmetic."""
    return None if value is None else pytest.approx(value, abs=0.006)


def expected_buckets(rows, bounds):
    """The chart numbers computed here, in Python, from the stored log rows."""
    out = [{"ok": 0, "err": 0, "rl": 0, "ms": [], "hit": 0, "look": 0, "rec": 0} for _ in bounds[:-1]]
    for at, code, ms, cache, records, _, _ in rows:
        if not bounds[0] <= at < bounds[-1]:
            continue
        b = out[bisect.bisect_right(bounds, at) - 1]
        b["ok" if code is None else "rl" if code == "ratelimitexceeded" else "err"] += 1
        if ms is not None:
            b["ms"].append(float(ms))
        b["hit"] += cache == "hit"
        b["look"] += cache in ("hit", "miss")
        b["rec"] += records
    return out


def test_charts_match_the_log_rows_of_real_requests(db, site):
    clock = [NOW]
    app = calls(db, clock)
    sign_in(app)
    page = app.get(PREFIX + "/monitoring")
    bounds = metrics.period_bounds(NOW, "UTC", "24h")
    assert len(bounds) == 25 and bounds[0] == NOW - 23 * HOUR and bounds[-1] == NOW + 1
    expected = expected_buckets(log_rows(db), bounds)
    requests = table(page, "#table-requests")
    assert [r[0] for r in requests][:2] == ["2024-11-24 16:00:00", "2024-11-24 17:00:00"]
    assert requests[-1][0] == "2024-11-25 15:00:00"
    assert [r[1:] for r in requests] == [[str(e["ok"]), str(e["err"]), str(e["rl"]), str(e["ok"] + e["err"] + e["rl"])]
                                         for e in expected]
    # by hand: 10:00 two successes; 12:00 one invalid token and Globex's request; 14:00 the rejection
    assert requests[18][1:] == ["2", "0", "0", "2"] and requests[20][1:] == ["1", "1", "0", "2"]
    assert requests[22][1:] == ["0", "0", "1", "1"] and sum(int(r[4]) for r in requests) == 5  # not 2 days ago
    response = table(page, "#table-response")
    assert [[number(v) for v in r[1:]] for r in response] == [
        [approx(sum(e["ms"]) / len(e["ms"])) if e["ms"] else None, approx(p95(e["ms"]))] for e in expected]
    cache = table(page, "#table-cache")
    assert [r[1] for r in cache] == [fmt(round(e["hit"] / e["look"] * 100, 2)) if e["look"] else "—"
                                     for e in expected]
    assert cache[18][1] == "50" and cache[20][1] == "0" and cache[22][1] == "—"
    elements = table(page, "#table-elements")
    assert [r[1] for r in elements] == [str(e["rec"]) for e in expected]
    assert elements[18][1] == "6" and elements[20][1] == "1"  # 3 + 3 elements; Globex's one row
    changes = table(page, "#table-changes")
    active = int(db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting}"))
    assert changes[17][1:] == [str(active), "0", str(active)]  # written by the sync at 09:00
    assert sum(int(r[3]) for r in changes) == active
    # the SVG carries the same numbers, accessible and escaped
    svg = page.html.select_one("#chart-requests svg")
    assert svg["role"] == "img" and svg.select_one("title").text == "Requests per hour, last 24 hours"
    assert "2024-11-25 10:00:00" not in svg.text and "10:00: Successful 2" in [t.text for t in svg.select("rect title")]
    assert page.html.select_one("#chart-response svg polyline") is None  # no two neighbouring hours with values
    assert len(page.html.select("#chart-response svg circle")) == 6  # 3 hours × (average, p95)


def test_a_deleted_row_counts_in_its_own_series(db, site):
    clock = [NOW]
    app = admin_app(db, lambda: clock[0])
    sign_in(app)
    db.execute("UPDATE {t:local_alx_api_reporting} SET is_deleted = 1, last_updated = ? WHERE id = "
               "(SELECT MIN(id) FROM (SELECT id FROM {t:local_alx_api_reporting}) r)", (NOW - HOUR + 5,))
    changes = table(app.get(PREFIX + "/monitoring"), "#table-changes")
    assert changes[22][1:] == ["0", "1", "1"]
    assert metrics.row_changes(db, metrics.period_bounds(NOW, "UTC", "24h"))[22] == (0, 1)


def test_seven_daily_buckets_follow_the_site_time_zone(db, site):
    # 2024-11-25 15:00 UTC is midnight in Tokyo: today there began exactly now
    clock = [NOW]
    app = calls(db, clock, timezone="Asia/Tokyo")
    clock[0] = NOW - 60
    progress(app, ACME1, limit=1)  # 23:59 in Tokyo, yesterday there
    clock[0] = NOW
    progress(app, ACME1, limit=1)  # 00:00 in Tokyo
    sign_in(app)
    page = app.get(PREFIX + "/monitoring", {"period": "7d"})
    requests = table(page, "#table-requests")
    assert [r[0] for r in requests] == ["2024-11-20", "2024-11-21", "2024-11-22", "2024-11-23", "2024-11-24",
                                        "2024-11-25", "2024-11-26"]
    bounds = metrics.period_bounds(NOW, "Asia/Tokyo", "7d")
    assert bounds[-2] == NOW and bounds[0] == NOW - 6 * 24 * HOUR
    expected = expected_buckets(log_rows(db), bounds)
    assert [int(r[4]) for r in requests] == [e["ok"] + e["err"] + e["rl"] for e in expected]
    # two days ago at 15:00 UTC = 11-24 00:00 Tokyo; the others on the 25th there, the last one on the 26th
    assert [int(r[4]) for r in requests] == [0, 0, 0, 0, 1, 6, 1]
    assert page.html.select_one("#chart-requests svg title").text == "Requests per day, last 7 days"
    assert page.html.select_one("#period option[selected]")["value"] == "7d"


def test_an_invalid_period_is_reported_and_the_default_used(db, site):
    app = admin_app(db, NOW)
    sign_in(app)
    page = app.get(PREFIX + "/monitoring", {"period": "<b>1y</b>"})
    assert page.status_int == 200
    assert page.html.select_one("#error-period").text.startswith("Choose 24h (the last 24 hours) or 7d")
    assert page.html.select_one("#period")["aria-invalid"] == "true"
    assert len(table(page, "#table-requests")) == 24 and "<b>1y" not in page.text


def test_period_bounds_keep_local_hours_and_days():
    # a half-hour zone: hours start at :30 UTC
    bounds = metrics.period_bounds(NOW, "Asia/Kolkata", "24h")  # 20:30 there
    assert bounds[-2] == NOW - 30 * 60 and datetime.fromtimestamp(bounds[0], ZoneInfo("Asia/Kolkata")).minute == 0
    # a daylight-saving day lasts 25 hours (London, 2024-10-27)
    now = int(datetime(2024, 10, 29, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp())
    days = metrics.period_bounds(now, "Europe/London", "7d")
    lengths = [(b - a) // HOUR for a, b in zip(days[:-2], days[1:-1], strict=True)]
    assert lengths == [24, 24, 24, 24, 25, 24]
    assert [datetime.fromtimestamp(d, ZoneInfo("Europe/London")).strftime("%m-%d %H:%M") for d in days[:-1]] == [
        "10-23 00:00", "10-24 00:00", "10-25 00:00", "10-26 00:00", "10-27 00:00", "10-28 00:00", "10-29 00:00"]


def test_percentile_and_averages_per_bucket(db):
    new_site(db)
    for ms in range(1, 101):  # 1..100 ms in one hour, and one row without a time
        db.insert("local_alx_api_logs", {"userid": 1, "endpoint": "local_alx_report_api_get_course_progress",
                                         "record_count": 1, "timeaccessed": NOW - HOUR + ms, "companyid": 5,
                                         "counted": 1, "response_bytes": 0, "response_time_ms": ms})
    db.insert("local_alx_api_logs", {"userid": 1, "endpoint": "local_alx_report_api_get_course_progress",
                                     "record_count": 0, "timeaccessed": NOW - HOUR, "companyid": 5, "counted": 1,
                                     "response_bytes": 0, "response_time_ms": None, "errorcode": "invalidparameter"})
    db.insert("local_alx_api_logs", {"userid": 2, "endpoint": "admin:login", "record_count": 0,
                                     "timeaccessed": NOW - HOUR, "companyid": 0, "counted": 0, "response_bytes": 0,
                                     "response_time_ms": 9999})  # never a request metric
    hour = metrics.bucket_metrics(db, metrics.period_bounds(NOW, "UTC", "24h"))[22]
    assert (hour.requests, hour.successes, hour.errors, hour.records) == (101, 100, 1, 100)
    assert (hour.avg_response_ms, hour.p95_response_ms, hour.max_response_ms) == (50.5, 96, 100)
    window = metrics.request_metrics(db, NOW, 60)  # the alert check's numbers agree
    assert (window.requests, window.avg_response_ms, window.p95_response_ms) == (101, 50.5, 96)
    assert metrics.request_metrics(db, NOW, 60, companyid=6).requests == 0


def test_companies_today_and_their_sync(db, site):
    clock = [NOW]
    app = calls(db, clock)
    company_state.failed(db, 6, NOW - 600, "Deadlock found when trying to get lock; try again")
    sign_in(app)
    page = app.get(PREFIX + "/monitoring")
    rows = {r[0]: r[1:] for r in table(page, "#companies")}
    errors = dict(db.rows("SELECT errorcode, error_message FROM {t:local_alx_api_logs} WHERE errorcode IS NOT NULL"))
    acme = db.rows("SELECT response_time_ms FROM {t:local_alx_api_logs} WHERE companyid = 5 AND timeaccessed >= ?",
                   (NOW - 15 * HOUR,))
    assert number(rows["Acme Learning Ltd acme"][2]) == approx(sum(float(r[0]) for r in acme) / 2)
    assert rows["Acme Learning Ltd acme"][:2] + rows["Acme Learning Ltd acme"][3:] == [
        "2", "100", "100.0%", "50.0%", "4 h ago", "Always full", "50.0% / 50.0% / 0.0%", "0"]
    globex = rows["Globex globex"]
    assert globex[:2] == ["2", "1"] and globex[3:8] == ["50.0%", "0.0%", "30 min ago", "Auto", "0.0% / 100.0% / 0.0%"]
    cut = errors["ratelimitexceeded"] if len(errors["ratelimitexceeded"]) <= 40 else errors["ratelimitexceeded"][:39] + "…"
    assert globex[8] == f"1 {cut}" and len(cut) <= 40
    unknown = rows["No company (unknown token or user)"]
    assert unknown[:2] == ["1", "—"] and unknown[-1].startswith("1 ") and unknown[6] == "—"
    syncs = {r[0]: r[1:] for r in table(page, "#syncs")}
    active5 = int(db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = 5"))
    assert syncs["Acme Learning Ltd acme"] == ["2024-11-25 09:00:00 (6 h ago)", "success", str(active5), "No", "0"]
    assert syncs["Globex globex"][1:] == ["failed Deadlock found when trying to get lock; try again", "1", "No", "1"]
    tasks = [r[0] for r in table(page, "main > div.scroll:last-of-type")]
    assert "sync_reporting_data_task" in tasks and "check_alerts_task" in tasks


def test_signed_out_and_former_admins_are_sent_to_sign_in(db, site):
    app = admin_app(db, NOW)
    resp = app.get(PREFIX + "/monitoring?period=7d", expect_errors=True)
    assert resp.status_int == 303 and "/login?next=" in resp.location
    sign_in(app)
    assert app.get(PREFIX + "/monitoring").status_int == 200
    db.execute("UPDATE {t:config} SET value = '' WHERE name = 'siteadmins'")
    resp = app.get(PREFIX + "/monitoring", expect_errors=True)
    assert resp.status_int == 303 and "/login" in resp.location


def test_svg_escapes_text_and_scales_axes():
    evil = '<script>alert("x")</script>'
    svg = stacked_bar_chart("k", evil, [evil, "b"], [Series(evil, [1, None], "#000")], x_label="x", y_label=evil)
    assert "<script>" not in svg and "&lt;script&gt;" in svg and svg.startswith("<svg")
    assert 'aria-labelledby="k-title k-desc"' in svg
    empty = line_chart("e", "Empty", ["a", "b"], [Series("s", [None, None], "#000")], x_label="x", y_label="y")
    assert "No data yet in this period" in empty and "<circle" not in empty and 'class="latest"' not in empty
    line = line_chart("l", "L", ["a", "b", "c"], [Series("s", [1, None, 3], "#000")], x_label="x", y_label="y")
    assert line.count("<circle") == 2 and "<polyline" not in line  # a gap breaks the line
    assert nice_scale(7, integer=True) == (8, 2) and nice_scale(0, integer=True) == (1, 1)
    assert nice_scale(2.5) == (3.0, 1.0) and nice_scale(130) == (150, 50) and nice_scale(50, fixed=100) == (100, 25)


def test_the_latest_value_is_written_beside_its_bar_or_point():
    """Issue 18: one bucket of data is a thin bar or a dot; its value is written beside it."""
    hours = [f"{h:02d}:00" for h in range(24)]
    bars = stacked_bar_chart("b", "B", hours, [Series("Inserted", [0] * 23 + [216], "#000"),
                                               Series("Deleted", [0] * 24, "#111")], x_label="x", y_label="y")
    assert bars.count('class="latest"') == 1 and ">total 216</text>" in bars
    one = stacked_bar_chart("o", "O", hours, [Series("Elements", [5, 7] + [0] * 22, "#000")], x_label="x",
                            y_label="y")
    assert ">7</text>" in one and ">5</text>" not in one  # the latest bucket with a value, not the first
    lines = line_chart("l", "L", hours, [Series("Average", [None] * 23 + [12.5], "#000"),
                                         Series("95th percentile", [None] * 23 + [14], "#111")],
                       x_label="x", y_label="y", unit="ms")
    assert ">Average: 12.5 ms</text>" in lines and ">95th percentile: 14 ms</text>" in lines
    ys = sorted(float(t.split(' y="')[1].split('"')[0]) for t in lines.split('<text class="latest"')[1:])
    assert ys[1] - ys[0] >= 15  # two close values: the labels do not cover each other
    rate = line_chart("r", "R", hours, [Series("Hit rate", [None] * 22 + [50, None], "#000")], x_label="x",
                      y_label="y", unit="%", y_max=100)
    assert ">50%</text>" in rate and "No data yet" not in rate
