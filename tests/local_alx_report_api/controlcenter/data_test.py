"""The Data page (admin-ui.md 3.5): populate and reconcile queued as jobs, run by the cron runner,
followed live on the job page; a refresh never queues again."""

from __future__ import annotations

import pytest

from local_alx_report_api.classes import jobs
from tests.admin import PREFIX, admin_app, sign_in, submit
from tests.sites import NOW, acme_and_globex, api_token
from tests.tasks import task_env
from tests.webapp import progress


@pytest.fixture
def site(db):
    b = acme_and_globex(db, shared=False)
    api_token(b, 5)
    return b


@pytest.fixture
def app(db, site):
    app = admin_app(db, NOW)
    sign_in(app)
    return app


def rows(db, companyid=5):
    return db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = ? AND is_deleted = 0",
                     (companyid,))


def test_populate_from_the_form_runs_in_cron_and_the_page_follows(db, app):
    page = app.get(PREFIX + "/data")
    assert "The batch size is the number of rows written per step, not a limit: every row is processed." in page.text
    form = page.forms["populate-form"]
    form["companyids"] = ["5"]
    form["batch_size"] = "100"
    resp = form.submit()
    assert resp.status_int == 303
    jobid = int(resp.location.rsplit("/", 1)[1])
    page = resp.follow()
    assert f"Populate job {jobid} queued." in page.text
    assert "Waiting for the cron runner to start this job." in page.text
    assert 'http-equiv="refresh"' in page.text and "data-poll" in page.text
    assert app.get(f"{PREFIX}/jobs/{jobid}.json").json["status"] == "queued"
    # reloading the job page never starts or queues it again
    app.get(f"{PREFIX}/jobs/{jobid}")
    assert len(jobs.recent(db)) == 1 and rows(db) == 0
    assert jobs.run_queued(task_env(db, NOW + 60)) == [(jobid, "success")]
    state = app.get(f"{PREFIX}/jobs/{jobid}.json").json
    assert state["status"] == "success" and state["percent"] == 100.0 and state["inserted"] == rows(db) > 0
    page = app.get(f"{PREFIX}/jobs/{jobid}")
    assert "Per company" in page.text and "data-poll" not in page.text and "acme (5)" in page.text
    assert "Waiting for the cron runner" not in page.text
    listing = app.get(PREFIX + "/data")
    assert "success" in listing.text and "admin" in listing.text
    # the populated rows are what the API now serves from the table
    assert len(progress(admin_app(db, NOW + 120), "a" * 32).json) == rows(db)


def test_a_second_populate_for_the_same_company_is_refused(db, app):
    submit(app, "/data/populate", companyids="5", batch_size="1000")
    resp = submit(app, "/data/populate", companyids="all", batch_size="1000")
    assert resp.status_int == 200 and "A job for this company is already queued or running." in resp.text
    assert len(jobs.recent(db)) == 1


@pytest.mark.parametrize("fields,field,message", [
    ({"batch_size": "1000"}, "populate_companyids", "Choose at least one company, or All companies."),
    ({"companyids": "999", "batch_size": "1000"}, "populate_companyids", "Choose companies from the list."),
    ({"companyids": "x", "batch_size": "1000"}, "populate_companyids", "Choose companies from the list."),
    ({"companyids": "5", "batch_size": "99"}, "batch_size", "Enter a whole number from 100 to 5000."),
    ({"companyids": "5", "batch_size": "5001"}, "batch_size", "Enter a whole number from 100 to 5000."),
    ({"companyids": "5", "batch_size": "1e3"}, "batch_size", "Enter a whole number from 100 to 5000."),
])
def test_invalid_populate_input_queues_nothing(db, app, fields, field, message):
    resp = submit(app, "/data/populate", **fields)
    assert resp.status_int == 200
    assert f'id="error-{field}">{message}' in resp.text
    assert jobs.recent(db) == []


def test_reconcile_now_and_cancel(db, app):
    resp = submit(app, "/data/reconcile", companyids=["5", "6"])
    jobid = int(resp.location.rsplit("/", 1)[1])
    assert jobs.get(db, jobid)["type"] == "reconcile" and jobs.get(db, jobid)["companyids"] == [5, 6]
    resp = submit(app, f"/jobs/{jobid}/cancel", back="/data")
    assert resp.status_int == 303 and resp.location.endswith(PREFIX + "/data")
    assert "Job cancelled." in resp.follow().text
    assert jobs.get(db, jobid)["status"] == "cancelled"
    assert jobs.run_queued(task_env(db, NOW + 60)) == []
    assert "already finished (cancelled)" in submit(app, f"/jobs/{jobid}/cancel").follow().text


def test_csrf_unknown_ids_and_signed_out(db, site, app):
    resp = app.post(PREFIX + "/data/populate", {"companyids": "5"}, expect_errors=True)
    assert resp.status_int == 403 and jobs.recent(db) == []
    assert app.get(PREFIX + "/jobs/999", expect_errors=True).status_int == 404
    assert app.get(PREFIX + "/jobs/abc", expect_errors=True).status_int == 404
    assert app.get(PREFIX + "/jobs/999.json", expect_errors=True).status_int == 404
    assert submit(app, "/jobs/999/cancel").status_int == 404
    anonymous = admin_app(db, NOW)
    assert anonymous.get(PREFIX + "/data", expect_errors=True).status_int == 303
    assert anonymous.get(PREFIX + "/jobs/1.json", expect_errors=True).status_int == 401
    assert anonymous.post(PREFIX + "/data/populate", {"companyids": "5"}, expect_errors=True).status_int == 403
    assert jobs.recent(db) == []
