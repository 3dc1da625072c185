"""Issue 12, proof without Power BI: the requests docs/powerbi/AlxCourseProgress.pq makes (same
path, query, body, headers and user agent), through gunicorn, for two scheduled refreshes with
Moodle changes and a sync run between them, and two refreshes at once with one token. Every
refresh returns the complete, current table the live Moodle tables define, under a daily limit
of 5 requests although each refresh reads 50 pages."""

import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest

from local_alx_report_api.classes import installer
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from moodle_core import generator
from tests import oracle
from tests.servers import gunicorn
from tests.tasks import task_env
from tests.webapp import FUNCTION

CONNECTOR = Path(__file__).resolve().parents[2] / "docs" / "powerbi" / "AlxCourseProgress.pq"
POWER_QUERY = "Microsoft.Data.Mashup (https://go.microsoft.com/fwlink/?LinkID=304225)"


class PowerQueryError(Exception):
    pass


def refresh(site_url: str, token: str, page_size: int) -> list[dict]:
    """AlxCourseProgress(siteUrl, token, [PageSize = page_size]) as Power Query runs it:
    Web.Contents(siteUrl, [RelativePath, Query, Content, Headers]) once per page; Content makes
    it a POST; one pull id per invocation; pages until a short one."""
    pull_id = str(uuid.uuid4())
    query = urlencode({"wsfunction": FUNCTION, "moodlewsrestformat": "json"})
    rows, offset = [], 0
    while True:
        body = urlencode({"limit": str(page_size), "offset": str(offset), "mode": "full"}).encode()
        request = urllib.request.Request(
            f"{site_url}webservice/rest/server.php?{query}", data=body, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
                     "Authorization": f"Bearer {token}", "X-ALX-Pull-Id": pull_id, "User-Agent": POWER_QUERY})
        with urllib.request.urlopen(request, timeout=60) as response:
            page = json.loads(response.read())
        if isinstance(page, dict) and "errorcode" in page:
            raise PowerQueryError(f"AlxReportApi.{page['errorcode']}: {page['message']}")
        rows += page
        offset += len(page)
        if len(page) < page_size:
            return rows


def test_the_client_here_makes_the_connectors_requests():
    """The request parts above are the ones the .pq file builds."""
    text = "".join(CONNECTOR.read_text().split())  # white space aside
    for part in ('RelativePath = "webservice/rest/server.php"', '"local_alx_report_api_get_course_progress"',
                 'moodlewsrestformat = "json"', "Uri.BuildQueryString", "limit", "offset", "mode",
                 '"application/x-www-form-urlencoded"', '"Bearer "', '"X-ALX-Pull-Id"', "Text.NewGuid()",
                 '"full"', "Web.Contents(siteUrl,"):
        assert "".join(part.split()) in text, part


@pytest.fixture
def site(db, tmp_path):
    made = generator.generate(db, companies=2, users=240, courses=8, enrolments_per_user=3, seed=12)
    now = int(time.time())
    installer.install(db, now)
    sync_task.execute(task_env(db, now))
    token, _, companyid = made.tokens[0]
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (?, 'rate_limit', 5, 0, 0)", (companyid,))
    with gunicorn(db, tmp_path, workers=2) as site_url:
        yield db, site_url, token, companyid


def expected(db, companyid):
    return {key: (v[0], v[1], v[2], v[3], v[4], v[5], v[6] / 100, v[7])
            for key, v in oracle.expected_rows(db, companyid, int(time.time())).items()}


def table(rows):
    got = {(r["userid"], r["courseid"]): (r["firstname"], r["lastname"], r["email"], r["coursename"],
                                          r["timecompleted_unix"], r["timestarted_unix"], r["percentage"], r["status"])
           for r in rows}
    assert len(got) == len(rows), "a key came twice"
    return got


def change_moodle(db, companyid):
    """An unenrolment, a suspended learner, a renamed learner; then the sync task runs."""
    now = int(time.time())
    learners = [int(u) for (u,) in db.rows(
        "SELECT DISTINCT r.userid FROM {t:local_alx_api_reporting} r WHERE r.companyid = ? AND r.is_deleted = 0 "
        "ORDER BY r.userid", (companyid,))]
    db.execute("UPDATE {t:user_enrolments} SET status = 1, timemodified = ? WHERE userid = ?", (now, learners[0]))
    db.execute("UPDATE {t:user} SET suspended = 1, timemodified = ? WHERE id = ?", (now, learners[len(learners) // 2]))
    db.execute("UPDATE {t:user} SET lastname = 'Renamed', timemodified = ? WHERE id = ?", (now, learners[-1]))
    sync_task.execute(task_env(db, now + 1))
    return learners


def test_two_scheduled_refreshes_return_the_complete_current_table(site):
    db, site_url, token, companyid = site
    first = table(refresh(site_url, token, 6))
    assert first == expected(db, companyid) and len(first) >= 300  # 50 pages and more
    learners = change_moodle(db, companyid)
    second = table(refresh(site_url, token, 6))  # within the sync window: complete again, not a delta
    assert second == expected(db, companyid) and second != first
    assert not any(k[0] in (learners[0], learners[len(learners) // 2]) for k in second)
    assert {v[1] for k, v in second.items() if k[0] == learners[-1]} == {"Renamed"}
    # Desktop and the service refresh at the same time with the same token
    results, errors = [], []

    def run():
        try:
            results.append(table(refresh(site_url, token, 7)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [expected(db, companyid)] * 2
    counted = db.scalar("SELECT SUM(counted) FROM {t:local_alx_api_logs} WHERE companyid = ?", (companyid,))
    requests = db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_logs} WHERE companyid = ?", (companyid,))
    print(f"rows {len(first)} then {len(second)}; {requests} requests, {counted} counted")
    assert counted == 4 and requests > 150  # one unit of the limit of 5 per refresh
    with pytest.raises(PowerQueryError, match="AlxReportApi.ratelimitexceeded: Daily rate limit exceeded"):
        refresh(site_url, token, 6), refresh(site_url, token, 6)
