"""Jobs through the command line: a cron pass runs queued jobs after its tasks (tasks.md 3.2
step 5), `cron --keep-alive` picks up a job queued while it runs (every `job_poll_seconds`),
and `job list`, `job run`, `job cancel`."""

import os
import signal
import subprocess
import sys
import time

import pytest

from local_alx_report_api.classes import jobs
from local_alx_report_api.cli import main
from moodle_core import engines
from tests.oracle import expected_rows, stored


@pytest.fixture
def site(tmp_path, monkeypatch, capsys):
    """A demo site in SQLite with its settings file, and a connection to it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALX_DATABASE_URL", raising=False)
    (tmp_path / "settings.ini").write_text("[database]\nurl = sqlite:///site.sqlite3\n")
    assert main(["demo-site", "--companies", "2", "--users", "20", "--seed", "5"]) == 0
    capsys.readouterr()
    engine = engines.connect(f"sqlite:///{tmp_path / 'site.sqlite3'}", "mdl_")
    yield tmp_path, engine
    engine.db.close()


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_cron_pass_runs_the_queued_jobs(site, capsys):
    path, db = site
    jobid = jobs.queue(db, int(time.time()), job_type="populate", companyids=[2], userid=2, batch_size=100)
    code, out, _ = run(capsys, "cron")
    assert code == 0
    assert jobs.get(db, jobid)["status"] == "success"
    assert stored(db, 2) == expected_rows(db, 2, int(time.time())) and stored(db, 1) == {}
    assert f"Job {jobid} (populate): Execute job {jobid}: populate of company 2" in out
    assert f"Job {jobid} (populate): Job {jobid} success: Finished 1 of 1 company" in out
    code, out, _ = run(capsys, "job", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["id", "type", "companies", "status"]
    assert lines[1].split()[:4] == [str(jobid), "populate", "2", "success"] and "100.0%" in lines[1]


def test_job_run_and_cancel(site, capsys):
    path, db = site
    assert run(capsys, "job", "run")[:2] == (0, "No queued jobs\n")
    queued = jobs.queue(db, int(time.time()), job_type="reconcile", companyids=None, userid=2)
    code, out, _ = run(capsys, "job", "cancel", str(queued))
    assert (code, out) == (0, f"Job {queued} cancelled\n")
    code, _, err = run(capsys, "job", "cancel", str(queued))
    assert (code, err) == (1, f"alx-report-api: Job {queued} is not queued or running\n")
    assert run(capsys, "job", "cancel", "x")[0] == 2
    jobid = jobs.queue(db, int(time.time()), job_type="sync", companyids=[1], userid=2)
    code, out, _ = run(capsys, "job", "run")
    assert code == 0 and f"Job {jobid} success" in out
    assert stored(db, 1) == expected_rows(db, 1, int(time.time()))


def test_keep_alive_picks_up_a_job_queued_while_it_runs(site):
    path, db = site
    env = {**os.environ, "ALX_REPORT_API_SETTINGS": str(path / "settings.ini"), "ALX_CRON_JOB_POLL_SECONDS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "local_alx_report_api.cli", "cron", "--keep-alive=120"], cwd=path,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # the first pass has run and found no job
        assert child.poll() is None
        jobid = jobs.queue(db, int(time.time()), job_type="populate", companyids=[1], userid=2)
        queued = time.monotonic()
        while time.monotonic() - queued < 30 and jobs.get(db, jobid)["status"] != "success":
            time.sleep(0.1)
        assert jobs.get(db, jobid)["status"] == "success"
        assert time.monotonic() - queued < 15  # picked up by a poll (passes are a minute apart)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert f"Execute job {jobid}: populate of company 1" in out
    assert stored(db, 1) == expected_rows(db, 1, int(time.time()))
