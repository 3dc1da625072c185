"""Issue 14 (11): alert de-duplication under concurrency, on every engine with real connections:
raisers of one subject in separate connections make one open alert; simultaneous rate-limit
rejections raise the day's alert exactly once."""

import json
import threading

from local_alx_report_api import settings as plugin_settings
from local_alx_report_api.classes import alerts
from moodle_core import engines
from tests.sites import NOW, api_token, company_setting, new_site, worked_examples
from tests.webapp import make_app, progress


def run_together(n: int, work) -> None:
    barrier = threading.Barrier(n)
    errors = []

    def one(i):
        try:
            barrier.wait()
            work(i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_concurrent_raisers_of_one_subject_make_one_alert(db):
    new_site(db)
    settings = plugin_settings.load(None, {})
    connections = [engines.connect(db.url, db.prefix) for _ in range(4)]
    try:
        for trial in range(15):
            run_together(4, lambda i, t=trial: alerts.raise_alert(
                connections[i], settings, NOW, alert_type="security", severity="high", subject=f"ip:10.0.0.{t}",
                message="m", data={}))
        rows = db.rows("SELECT subject, COUNT(*), SUM(occurrences) FROM {t:local_alx_api_alerts} WHERE resolved = 0 "
                       "GROUP BY subject")
        assert len(rows) == 15 and all((n, occ) == (1, 4) for _, n, occ in rows), rows
    finally:
        for c in connections:
            c.db.close()


def test_simultaneous_rejections_raise_the_days_alert_once(db):
    """Six users at their limit of 1, each sending four requests at once: six alerts, one each."""
    b = new_site(db)
    worked_examples(b)
    tokens = [api_token(b, 5, f"{n:x}" * 32, f"api{n}") for n in range(6)]
    company_setting(db, 5, "rate_limit", 1)
    db.db.close()
    apps = [make_app(engines.connect(db.url, db.prefix), NOW) for _ in range(4)]
    for token in tokens:
        progress(apps[0], token, limit=1)  # the day's one admitted request
    bodies = []
    run_together(24, lambda i: bodies.append(json.loads(progress(apps[i % 4], tokens[i // 4], limit=1).body)))
    assert [b["errorcode"] for b in bodies] == ["ratelimitexceeded"] * 24
    subjects = db.rows("SELECT subject, occurrences FROM {t:local_alx_api_alerts} WHERE "
                       "alert_type = 'rate_limit_exceeded' ORDER BY subject")
    assert len(subjects) == 6 and all(n == 1 for _, n in subjects), subjects
