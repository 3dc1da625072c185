"""Issue 13 with clients nobody here wrote and Power BI's requests: python-odata (an OData v4
client library) reads $metadata and the whole entity set through gunicorn and gets exactly the
rows of a full REST pull; the filters of a Power BI incremental-refresh policy split the table
into partitions that add up to it; a client following nextLinks while the sync task writes gets
every row once, in a state it had."""

from __future__ import annotations

import json
import random
import urllib.request
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from odata import ODataService

from local_alx_report_api.task import sync_reporting_data_task as sync_task
from tests.local_alx_report_api.odata.feed_test import follow
from tests.servers import gunicorn
from tests.sites import NOW, generated_site
from tests.tasks import task_env
from tests.webapp import FUNCTION, make_app

FEED = "local/alx_report_api/odata/"
DAY = 86400


def rest_pull(base: str, token: str) -> list[dict]:
    rows, offset = [], 0
    while True:
        body = urlencode({"wstoken": token, "wsfunction": FUNCTION, "moodlewsrestformat": "json", "limit": 40,
                          "offset": offset, "mode": "full"}).encode()
        with urllib.request.urlopen(base + "webservice/rest/server.php", body, timeout=60) as response:
            page = json.loads(response.read())
        assert isinstance(page, list), page
        rows += page
        offset += len(page)
        if len(page) < 40:
            return rows


def test_an_odata_client_library_reads_the_whole_set_through_gunicorn(db, tmp_path):
    demo = generated_site(db, NOW, companies=2, users=150, seed=5, timezone="America/New_York")
    sync_task.execute(task_env(db, NOW))
    token = demo.tokens[0][0]
    with gunicorn(db, tmp_path, 2, ALX_LOCAL_ALX_REPORT_API_MAX_RECORDS="40") as base:
        session = requests.Session()
        session.auth = ("powerbi", token)  # HTTP Basic, the token as password
        service = ODataService(base + FEED, session=session, reflect_entities=True, quiet_progress=True)
        entity = service.entities["CourseProgress"]
        got = list(service.query(entity))
        rest = rest_pull(base, token)
        assert len(got) == len(rest) > 100  # more than two pages of 40
        for row, want in zip(got, rest, strict=True):
            assert (row.userid, row.courseid, row.firstname, row.lastname, row.email, row.coursename, row.status,
                    row.timecompleted_unix, row.timestarted_unix) == (
                want["userid"], want["courseid"], want["firstname"], want["lastname"], want["email"],
                want["coursename"], want["status"], want["timecompleted_unix"], want["timestarted_unix"])
            assert Decimal(str(row.percentage)) == Decimal(str(want["percentage"]))
            for name in ("timecompleted", "timestarted"):
                moment = getattr(row, name)
                assert (0 if moment is None else int(moment.timestamp())) == want[f"{name}_unix"]
                if moment is not None:
                    assert moment.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))  # the site's zone
        # the library's own filter, ordering and $count
        query = service.query(entity).filter(entity.status == "completed").order_by(entity.userid.desc())
        completed = list(query)
        assert [(r.userid, r.courseid) for r in completed] == sorted(
            [(r["userid"], r["courseid"]) for r in rest if r["status"] == "completed"], reverse=True)
        assert query.count() == len(completed)


def _partitions(app, token, starts: list[datetime], offset: str) -> list[list[dict]]:
    """The requests Power BI's OData connector makes for an incremental-refresh policy on
    `created`: each partition's `created ge RangeStart and created lt RangeEnd`, folded into
    $filter with the offset of DateTimeZone.From (Z in the service, the desktop's own offset
    otherwise), the `+` percent-encoded as Power Query sends it."""
    result = []
    for start, end in zip(starts, starts[1:], strict=False):
        text = (f"created ge {start:%Y-%m-%dT%H:%M:%S}{offset} and created lt {end:%Y-%m-%dT%H:%M:%S}{offset}")
        url = f"/{FEED}CourseProgress?$filter=" + urllib.request.quote(text, safe="'")
        result.append(follow(app, app.get(url, params={"wstoken": token},
                                          headers={"Prefer": "odata.maxpagesize=25"}))[0])
    return result


def test_power_bi_incremental_refresh_partitions_add_up_to_the_table(db):
    """Rows enter the table over three months (enrolments added between sync runs); monthly
    partitions on `created` hold every row once, in both offset forms; a later change moves the
    largest `lastupdated` of its own partition only (detect data changes)."""
    demo = generated_site(db, NOW, companies=1, users=90, seed=8)
    token = demo.tokens[0][0]
    held = db.rows("SELECT * FROM {t:user_enrolments} ORDER BY id")
    columns = [c for c in db.columns("user_enrolments")]
    db.execute("DELETE FROM {t:user_enrolments} WHERE id > ?", (held[len(held) // 3][0],))
    times = [NOW, NOW + 40 * DAY, NOW + 75 * DAY]
    sync_task.execute(task_env(db, times[0]))
    for n, when in enumerate(times[1:], start=1):
        part = [r for r in held[len(held) // 3 + 1:] if (r[0] % 2) == n % 2]
        marks = ", ".join("?" * len(columns))
        db.executemany(f"INSERT INTO {{t:user_enrolments}} ({', '.join(columns)}) VALUES ({marks})",
                       [tuple(when if c == "timemodified" else v for c, v in zip(columns, r, strict=True)) for r in part])
        sync_task.execute(task_env(db, when))
    app = make_app(db, times[-1])
    everything = app.get(f"/{FEED}CourseProgress", params={"wstoken": token, "$count": "true"}).json["@odata.count"]
    months = [datetime(2024, m, 1) for m in range(9, 13)] + [datetime(2025, m, 1) for m in range(1, 6)]
    for offset in ("Z", "+01:00", "-05:00"):
        partitions = _partitions(app, token, months, offset)
        keys = [(r["userid"], r["courseid"]) for p in partitions for r in p]
        assert len(keys) == len(set(keys)) == everything > 100
        assert sum(1 for p in partitions if p) >= 3  # the rows came in three months
    # detect data changes: one user with one row is renamed; only its partition's largest lastupdated moves
    before = [max((r["lastupdated"] for r in p), default=None) for p in _partitions(app, token, months, "Z")]
    user = db.rows("SELECT userid FROM {t:local_alx_api_reporting} GROUP BY userid HAVING COUNT(*) = 1 "
                   "AND MIN(created_at) = ? ORDER BY userid", (times[1],))[0][0]
    later = times[-1] + DAY
    db.execute("UPDATE {t:user} SET firstname = 'Renamed', timemodified = ? WHERE id = ?", (later, user))
    sync_task.execute(task_env(db, later))
    after = [max((r["lastupdated"] for r in p), default=None) for p in _partitions(make_app(db, later), token, months, "Z")]
    moved = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(moved) == 1 and datetime.fromisoformat(after[moved[0]]).timestamp() == later


@pytest.mark.parametrize("seed", [1, 2])
def test_a_client_following_next_links_while_sync_writes_gets_every_row_once(db, seed):
    """Between every two pages Moodle changes (activities completed, a user renamed, an
    enrolment ended, a new one) and the sync task runs; each row of the pull is a state the
    table had, no key comes twice, and every key present all along is there."""
    demo = generated_site(db, NOW, companies=1, users=80, seed=seed)
    token = demo.tokens[0][0]
    sync_task.execute(task_env(db, NOW))
    rnd = random.Random(seed)
    clock = {"now": NOW}
    app = make_app(db, lambda: clock["now"])

    def snapshot() -> dict:
        rows, response = [], app.get(f"/{FEED}CourseProgress", params={"wstoken": token})
        rows += response.json["value"]
        assert "@odata.nextLink" not in response.json
        return {(r["userid"], r["courseid"]): r for r in rows}

    states = [snapshot()]
    first = app.get(f"/{FEED}CourseProgress", params={"wstoken": token}, headers={"Prefer": "odata.maxpagesize=6"})
    pulled, response = [], first
    cms = db.rows("SELECT id, course FROM {t:course_modules} WHERE completion > 0")
    enrolments = db.rows("SELECT id, userid FROM {t:user_enrolments} ORDER BY id")
    while True:
        pulled += response.json["value"]
        link = response.json.get("@odata.nextLink")
        if not link:
            break
        clock["now"] += 120
        now = clock["now"]
        for cm, _ in rnd.sample(cms, 3):
            user = rnd.choice(enrolments)[1]
            db.execute("DELETE FROM {t:course_modules_completion} WHERE coursemoduleid = ? AND userid = ?", (cm, user))
            db.execute("INSERT INTO {t:course_modules_completion} (coursemoduleid, userid, completionstate, "
                       "timemodified) VALUES (?, ?, 1, ?)", (cm, user, now))
        db.execute("UPDATE {t:user} SET firstname = ?, timemodified = ? WHERE id = ?",
                   (f"Renamed{now}", now, rnd.choice(enrolments)[1]))
        gone = rnd.choice(enrolments)
        db.execute("UPDATE {t:user_enrolments} SET timeend = ?, timemodified = ? WHERE id = ?", (now - 1, now, gone[0]))
        sync_task.execute(task_env(db, now))
        states.append(snapshot())
        parts = urlsplit(link)
        response = app.get(f"{parts.path}?{parts.query}")
    keys = [(r["userid"], r["courseid"]) for r in pulled]
    assert len(keys) == len(set(keys)) and len(states) > 10
    for row, key in zip(pulled, keys, strict=True):
        assert any(state.get(key) == row for state in states), row
    always = set.intersection(*(set(s) for s in states))
    assert always <= set(keys) and len(always) > 50
    changed = {k for k in always if len({json.dumps(s[k], sort_keys=True) for s in states}) > 1}
    assert changed  # the writes reached rows of the pull
