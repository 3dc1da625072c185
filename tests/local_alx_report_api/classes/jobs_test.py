"""Jobs (tasks.md 11): queuing and its conflict rule under concurrency, cancel (queued and
running), populate, sync and reconcile jobs against the live truth, progress (tasks.md 10.3),
busy companies, a stopping runner and a runner that died."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from local_alx_report_api.classes import company_state, installer, jobs
from local_alx_report_api.classes.populate import populate
from local_alx_report_api.task import cleanup_task
from local_alx_report_api.task import sync_reporting_data_task as sync_task
from moodle_core import engines, generator
from moodle_core.moodle import Moodle
from tests.oracle import expected_rows, stored
from tests.sites import NOW, full_company, new_site, worked_examples
from tests.tasks import task_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def other(db):
    """A second connection to the same database (another web worker or runner)."""
    return engines.connect(db.url, db.prefix)


def rows(db, companyid=1):
    return db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = ?", (companyid,))


def job_count(db):
    return db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_sync_status} WHERE kind = 'job'")


@pytest.fixture
def three(db):
    """Three small companies (1, 2, 3) of a generated site."""
    generator.generate(db, companies=3, users=60, courses=6, enrolments_per_user=3, seed=11)
    installer.install(db, NOW)
    return db


@pytest.fixture
def big(db):
    """Company 1 with 60 learners in 5 courses: 300 pairs, three batches of 100."""
    full_company(new_site(db), users=60, courses=5)
    return db


# -- queuing --------------------------------------------------------------------------------------
def test_queue_writes_a_job_row_and_refuses_bad_input(three):
    db = three
    for kwargs, message in (
            ({"job_type": "rebuild", "companyids": [1]}, "Unknown job type 'rebuild'"),
            ({"job_type": "populate", "companyids": []}, "select at least one company"),
            ({"job_type": "populate", "companyids": [0]}, "expected positive integer company ids"),
            ({"job_type": "populate", "companyids": "1"}, "expected a list of company ids"),
            ({"job_type": "populate", "companyids": [99]}, "Company 99 does not exist"),
            ({"job_type": "populate", "companyids": [1], "batch_size": 99}, "between 100 and 5000"),
            ({"job_type": "sync", "companyids": [1], "userid": -1}, "userid")):
        with pytest.raises(ValueError, match=message):
            jobs.queue(db, NOW, **{"userid": 2, **kwargs})
    assert job_count(db) == 0
    jobid = jobs.queue(db, NOW, job_type="populate", companyids=[2, 1, 2], userid=2, batch_size=500)
    row = db.execute("SELECT companyid, sync_mode, last_sync_status, last_sync_timestamp, userid, length(token_hash), "
                     "created_at FROM {t:local_alx_api_sync_status} WHERE id = ?", (jobid,)).fetchone()
    assert tuple(row) == (0, "populate", "queued", 0, 2, 64, NOW)
    one = jobs.queue(db, NOW, job_type="sync", companyids=[3], userid=2)
    assert db.scalar("SELECT companyid FROM {t:local_alx_api_sync_status} WHERE id = ?", (one,)) == 3
    job = jobs.get(db, jobid)
    assert {k: job[k] for k in ("id", "type", "companyids", "batch_size", "status", "userid", "queued", "started",
                                "finished", "summary", "per_company")} == {
        "id": jobid, "type": "populate", "companyids": [1, 2], "batch_size": 500, "status": "queued", "userid": 2,
        "queued": NOW, "started": None, "finished": None, "summary": None, "per_company": []}
    assert job["progress"]["status"] == "queued" and job["progress"]["companies_total"] == 2
    assert job["progress"]["percent"] == 0 and job["progress"]["eta_seconds"] is None
    assert [j["id"] for j in jobs.recent(db)] == [one, jobid] and jobs.get(db, 12345) is None


def test_one_populate_or_reconcile_job_per_company(three):
    db = three
    first = jobs.queue(db, NOW, job_type="populate", companyids=[1], userid=2)
    for job_type, companyids in (("populate", [1]), ("reconcile", [1, 2]), ("populate", None), ("reconcile", None)):
        with pytest.raises(jobs.JobConflict, match=r"^A job for this company is already queued or running\.$"):
            jobs.queue(db, NOW, job_type=job_type, companyids=companyids, userid=2)
    assert job_count(db) == 1
    jobs.queue(db, NOW, job_type="reconcile", companyids=[2, 3], userid=2)  # other companies: fine
    jobs.queue(db, NOW, job_type="sync", companyids=[1], userid=2)  # sync jobs are not limited
    jobs.queue(db, NOW, job_type="sync", companyids=None, userid=2)
    assert jobs.cancel(db, first, NOW + 1)
    all_companies = jobs.queue(db, NOW, job_type="populate", companyids=[1], userid=2)
    assert jobs.cancel(db, all_companies, NOW + 1)
    with pytest.raises(jobs.JobConflict):  # companies 2 and 3 still have their reconcile
        jobs.queue(db, NOW, job_type="populate", companyids=None, userid=2)


def test_two_workers_queuing_at_once_queue_exactly_one(three):
    db = three
    workers = [other(db), other(db)]
    for round_ in range(4):
        barrier, results = threading.Barrier(2), []

        def work(engine, barrier=barrier, results=results):
            barrier.wait()
            try:
                results.append(jobs.queue(engine, NOW, job_type="populate", companyids=[1], userid=2))
            except jobs.JobConflict:
                results.append("conflict")

        threads = [threading.Thread(target=work, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results, key=str).count("conflict") == 1, results
        assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_sync_status} WHERE kind = 'job' AND "
                         "last_sync_status = 'queued'") == 1
        jobs.cancel(db, next(r for r in results if r != "conflict"), NOW + round_)
    for w in workers:
        w.db.close()


# -- cancel ---------------------------------------------------------------------------------------
def test_a_cancelled_queued_job_never_runs(big):
    db = big
    jobid = jobs.queue(db, NOW, job_type="populate", companyids=[1], userid=2)
    assert jobs.cancel(db, jobid, NOW + 5)
    assert jobs.run_queued(task_env(db, NOW + 10)) == []
    job = jobs.get(db, jobid)
    assert (job["status"], job["finished"], job["started"], rows(db)) == ("cancelled", NOW + 5, None, 0)
    assert job["progress"]["status"] == "cancelled"
    assert not jobs.cancel(db, jobid, NOW + 6)  # finished jobs stay as they are
    assert not jobs.cancel(db, 999, NOW + 6)


@pytest.mark.parametrize("job_type", ["populate", "reconcile", "sync"])
def test_cancelling_a_running_job_stops_it_after_the_current_batch(big, job_type):
    db = big
    admin = other(db)
    jobid = jobs.queue(db, NOW, job_type=job_type, companyids=[1], userid=2, batch_size=100)
    lines = []

    def say(text):
        lines.append(text)
        if "Company 1 (big): 100/300" in text:  # after the first committed batch, from another connection
            assert jobs.get(admin, jobid)["status"] == "running"
            assert jobs.cancel(admin, jobid, NOW + 1)

    env = task_env(db, NOW)
    env.say = say
    assert jobs.run_queued(env) == [(jobid, "cancelled")]
    job = jobs.get(db, jobid)
    assert rows(db) == 100  # committed work stays
    assert job["progress"]["checked"] == 100 and job["progress"]["current"]["processed"] == 100
    assert job["progress"]["companies_done"] == 0 and job["progress"]["percent"] == pytest.approx(33.3)
    assert job["finished"] == NOW and job["error"] is None and job["cancel_requested"]
    assert job["per_company"][0]["stopped"] is True and job["per_company"][0]["inserted"] == 100
    assert any("Cancel requested" in e["message"] for e in job["progress"]["log"])
    admin.db.close()


# -- what the jobs do -----------------------------------------------------------------------------
def test_a_populate_job_equals_a_direct_populate(three):
    db = three
    jobid = jobs.queue(db, NOW, job_type="populate", companyids=None, userid=2, batch_size=100)
    lines = []
    assert jobs.run_queued(task_env(db, NOW + 10, lines)) == [(jobid, "success")]
    job = jobs.get(db, jobid)
    expected = {c.id: expected_rows(db, c.id, NOW + 10) for c in Moodle(db).companies()}
    for companyid, want in expected.items():
        assert stored(db, companyid) == want
    total = sum(len(w) for w in expected.values())
    p = job["progress"]
    assert (p["companies_done"], p["companies_total"], p["percent"], p["errors"]) == (3, 3, 100.0, [])
    assert p["inserted"] == p["checked"] == total and job["changed"] == total
    assert [c["companyid"] for c in job["per_company"]] == [1, 2, 3]
    assert [c["inserted"] for c in job["per_company"]] == [len(expected[c]) for c in (1, 2, 3)]
    assert job["summary"].startswith(f"Finished 3 of 3 companies: {total} pairs checked, {total} inserted")
    assert (job["started"], job["finished"]) == (NOW + 10, NOW + 10)
    assert p["log"][0]["message"] == "Populating 3 companies, batch size 100"
    assert any(line.startswith(f"Job {jobid} (populate): Company 2 (companyb):") for line in lines)
    # a direct populate of the same site finds nothing left to do
    direct = populate(db, Moodle(db).companies(), batch_size=100, report_roles=["student"], now=lambda: NOW + 10,
                      lock_wait=1)
    assert direct.totals.checked == total and direct.totals.changed == 0


def test_progress_percent_never_decreases(three):
    db = three
    watcher = other(db)
    jobid = jobs.queue(db, NOW, job_type="populate", companyids=[1, 2, 3], userid=2, batch_size=100)
    seen = []
    env = task_env(db, NOW)
    env.say = lambda text: seen.append(jobs.get(watcher, jobid)["progress"])
    jobs.run_queued(env)
    seen.append(jobs.get(watcher, jobid)["progress"])
    percents = [p["percent"] for p in seen]
    assert percents == sorted(percents) and percents[-1] == 100.0 and len(set(percents)) > 3
    done = [p["companies_done"] for p in seen]
    assert done == sorted(done)
    assert all(p["eta_seconds"] is None or p["eta_seconds"] >= 0 for p in seen)
    watcher.db.close()


def test_a_sync_job_runs_the_companys_sync_without_the_time_limit(db):
    b = new_site(db)
    ids = worked_examples(b)
    first = jobs.queue(db, NOW, job_type="sync", companyids=[5], userid=2)
    assert jobs.run_queued(task_env(db, NOW)) == [(first, "success")]  # the company's first (full) sync
    assert stored(db, 5) == expected_rows(db, 5, NOW)
    assert company_state.load(db, 5, NOW)["last_run"]["inserted"] == 6
    # a change, then "Sync now"
    b.enrol(ids["manual13"], 101, timecreated=NOW + 100)
    b.assign(5, 13, 101, NOW + 100)
    b.flush()
    db.execute("DELETE FROM {t:user_enrolments} WHERE userid = 103")
    jobid = jobs.queue(db, NOW + 150, job_type="sync", companyids=[5], userid=2)
    assert jobs.run_queued(task_env(db, NOW + 200, local_alx_report_api__max_sync_time=30)) == [(jobid, "success")]
    assert stored(db, 5) == expected_rows(db, 5, NOW + 200)
    job = jobs.get(db, jobid)
    assert (job["progress"]["inserted"], job["progress"]["deleted"], job["progress"]["percent"]) == (1, 1, 100.0)
    assert job["per_company"][0]["inserted"] == 1 and job["per_company"][0]["pairs"] == 2
    assert company_state.load(db, 5, NOW)["last_run"]["finished"] >= NOW + 200  # recorded like the task's run
    assert db.scalar("SELECT total_syncs FROM {t:local_alx_api_sync_status} WHERE kind = 'cron' AND companyid = 5") == 2
    assert sync_task.execute(task_env(db, NOW + 300))["inserted"] == 0  # nothing left for the hourly task


def test_a_reconcile_job_heals_drift_and_records_it(db):
    b = new_site(db)
    worked_examples(b)
    sync_task.execute(task_env(db, NOW))
    db.execute("DELETE FROM {t:course_modules_completion} WHERE userid = 101 AND coursemoduleid = 202")
    db.execute("UPDATE {t:modules} SET visible = 0 WHERE id = 1")
    assert stored(db, 5) != expected_rows(db, 5, NOW + 30)
    jobid = jobs.queue(db, NOW + 20, job_type="reconcile", companyids=[5], userid=2)
    assert jobs.run_queued(task_env(db, NOW + 30)) == [(jobid, "success")]
    assert stored(db, 5) == expected_rows(db, 5, NOW + 30)
    job = jobs.get(db, jobid)
    drift = company_state.load(db, 5, NOW)["last_reconcile"]["drift"]
    assert sum(drift.values()) == job["per_company"][0]["drift"] == job["progress"]["updated"] > 0
    assert job["progress"]["checked"] == 6 and job["progress"]["current"] is None


# -- busy companies, a stopping runner, a dead runner --------------------------------------------
@pytest.mark.parametrize("job_type", ["populate", "sync", "reconcile"])
def test_a_busy_company_is_recorded_and_the_job_goes_on(three, job_type):
    db = three
    jobid = jobs.queue(db, NOW, job_type=job_type, companyids=[1, 2], userid=2)
    began = time.monotonic()
    with db.lock("company_1"):  # held by another connection
        assert jobs.run_queued(task_env(db, NOW), lock_wait=0.5) == [(jobid, "failed")]
    assert 0.5 <= time.monotonic() - began < 30
    job = jobs.get(db, jobid)
    assert job["progress"]["errors"] == [{"companyid": 1, "message": "company busy"}]
    assert job["error"] == "company 1: company busy"
    assert stored(db, 1) == {} and stored(db, 2) == expected_rows(db, 2, NOW)
    assert [(c["companyid"], c["error"]) for c in job["per_company"]] == [(1, "company busy"), (2, None)]
    assert job["progress"]["companies_done"] == 2 and job["progress"]["percent"] == 100.0


def test_the_company_lock_wait_comes_from_max_sync_time(sqlite_db):
    assert jobs.company_lock_wait(task_env(sqlite_db, NOW, local_alx_report_api__max_sync_time=30).plugin) == 90


def test_a_stopping_runner_finishes_the_batch_and_starts_nothing_more(big):
    db = big
    first = jobs.queue(db, NOW, job_type="populate", companyids=[1], userid=2, batch_size=100)
    second = jobs.queue(db, NOW, job_type="sync", companyids=[1], userid=2)
    stopping = []
    env = task_env(db, NOW, should_stop=lambda: bool(stopping))
    env.say = lambda text: stopping.append(True) if "100/300" in text else None  # SIGTERM arrives
    assert jobs.run_queued(env, should_stop=env.should_stop) == [(first, "failed")]
    job = jobs.get(db, first)
    assert rows(db) == 100 and job["error"] == jobs.SHUTDOWN and job["summary"].startswith("Stopped after 0 of 1")
    assert jobs.get(db, second)["status"] == "queued"
    # a pass past its max_runtime starts no job
    assert jobs.run_queued(task_env(db, NOW), deadline=time.monotonic() - 1) == []
    assert jobs.get(db, second)["status"] == "queued"


def _cli_env(db, tmp_path):
    env = {**os.environ, "ALX_DATABASE_URL": db.url, "ALX_DATABASE_PREFIX": db.prefix,
           "ALX_REPORT_API_SETTINGS": str(tmp_path / "none.ini"), "PYTHONPATH": ROOT}
    return env


def _wait_for(predicate, seconds=30.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_a_job_whose_runner_died_is_recorded_as_failed(big, tmp_path):
    db = big
    jobid = jobs.queue(db, NOW, job_type="populate", companyids=[1], userid=2)
    with db.lock("company_1"):  # the job waits for the company, then its runner is killed
        child = subprocess.Popen([sys.executable, "-m", "local_alx_report_api.cli", "job", "run"], cwd=tmp_path,
                                 env=_cli_env(db, tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_for(lambda: jobs.get(db, jobid)["status"] == "running")
            assert jobs.get(db, jobid)["runner"]["pid"] == child.pid  # its lock is held: alive
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
    heard = db.scalar("SELECT updated_at FROM {t:local_alx_api_sync_status} WHERE id = ?", (jobid,))
    job = jobs.get(db, jobid)  # its job lock is free now
    assert (job["status"], job["error"], job["finished"]) == ("failed", jobs.DIED, heard)
    assert job["progress"]["status"] == "failed" and job["progress"]["log"][-1]["message"] == jobs.DIED
    assert jobs.run_queued(task_env(db, NOW)) == [] and rows(db) == 0  # never started again by itself
    jobs.queue(db, NOW, job_type="populate", companyids=[1], userid=2)  # and no longer blocks a new one


def test_a_running_job_of_a_dead_runner_is_reaped_by_the_next_runner(big):
    db = big
    jobid = jobs.queue(db, NOW, job_type="sync", companyids=[1], userid=2)
    db.execute("UPDATE {t:local_alx_api_sync_status} SET last_sync_status = 'running', updated_at = ? WHERE id = ?",
               (NOW + 7, jobid))
    with db.lock(f"job_{jobid}"):  # a live runner holds the job: nothing changes
        assert jobs.run_queued(task_env(db, NOW + 60)) == []
        assert [j["status"] for j in jobs.recent(db)] == ["running"]
    assert jobs.run_queued(task_env(db, NOW + 60)) == []
    row = db.execute("SELECT last_sync_status, last_sync_timestamp FROM {t:local_alx_api_sync_status} WHERE id = ?",
                     (jobid,)).fetchone()
    assert tuple(row) == ("failed", NOW + 7)


def test_cleanup_deletes_finished_jobs_after_30_days_only(big):
    db = big
    day = 86400
    done = jobs.queue(db, NOW, job_type="sync", companyids=[1], userid=2)
    assert jobs.run_queued(task_env(db, NOW)) == [(done, "success")]
    cancelled = jobs.queue(db, NOW, job_type="populate", companyids=[1], userid=2)
    jobs.cancel(db, cancelled, NOW + day)
    waiting = jobs.queue(db, NOW, job_type="reconcile", companyids=[1], userid=2)
    assert cleanup_task.execute(task_env(db, NOW + 30 * day))["jobs"] == 0
    assert cleanup_task.execute(task_env(db, NOW + 30 * day + 1))["jobs"] == 1
    assert [j["id"] for j in jobs.recent(db)] == [waiting, cancelled]
    assert cleanup_task.execute(task_env(db, NOW + 400 * day))["jobs"] == 1
    assert [j["id"] for j in jobs.recent(db)] == [waiting]  # never a queued or running job
