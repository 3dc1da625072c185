"""The command line: settings, demo-site, install, populate, and bad input (one clear line,
a non-zero exit, nothing changed)."""

import pytest

from local_alx_report_api.cli import main
from moodle_core import engines


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A settings file and an SQLite URL in a scratch folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ALX_DATABASE_URL", raising=False)
    (tmp_path / "settings.ini").write_text("[database]\nurl = sqlite:///site.sqlite3\n")
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_settings_prints_values_and_sources(site, capsys, monkeypatch):
    monkeypatch.setenv("ALX_MAIL_SMTP_PASSWORD", "secret")
    code, out, _ = run(capsys, "settings")
    assert code == 0
    assert "url = sqlite:///site.sqlite3    ; settings.ini" in out
    assert "prefix = mdl_    ; default" in out
    assert "smtp_password = ********    ; env ALX_MAIL_SMTP_PASSWORD" in out


def test_demo_site_install_and_populate(site, capsys):
    code, out, _ = run(capsys, "demo-site", "--companies", "2", "--users", "30", "--seed", "3")
    assert code == 0 and "2 companies, 30 learners" in out
    assert out.count("Token for ") == 2
    code, out, _ = run(capsys, "install")
    assert code == 0 and out.startswith("Nothing to do: the plugin tables are up to date\nMoodle's web services:\n")
    assert "  Web services enabled: ok\n" in out and "  local_alx_report_api_get_course_progress linked: ok\n" in out
    code, out, _ = run(capsys, "populate", "--batch-size", "100")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].endswith("Populating 2 companies, batch size 100") and lines[0].startswith("[")
    assert "Finished: 2 companies" in lines[-1] and lines[-1].endswith(" 0 errors")
    code, out, _ = run(capsys, "populate", "--quiet", "--companyid", "1")
    assert code == 0 and len(out.strip().splitlines()) == 1 and " 0 inserted" in out


def _reporting_rows(path):
    engine = engines.connect(f"sqlite:///{path}")
    return engine.rows("SELECT id, change_seq FROM mdl_local_alx_api_reporting ORDER BY id")


@pytest.mark.parametrize("argv, message, code", [
    (["populate", "--companyid", "999"], "alx-report-api: --companyid: company 999 does not exist", 2),
    (["populate", "--batch-size", "50"],
     "alx-report-api populate: argument --batch-size: --batch-size must be between 100 and 5000, got 50", 2),
])
def test_bad_arguments_change_nothing(site, capsys, argv, message, code):
    run(capsys, "demo-site", "--companies", "1", "--users", "5")
    run(capsys, "populate")
    before = _reporting_rows(site / "site.sqlite3")
    result = run(capsys, *argv)
    assert (result[0], result[2].strip()) == (code, message)
    assert _reporting_rows(site / "site.sqlite3") == before


def test_settings_typo_stops_with_one_line(site, capsys):
    (site / "settings.ini").write_text("[database]\nurll = sqlite:///x.sqlite3\n")
    code, out, err = run(capsys, "populate")
    assert (code, out, err.strip()) == (1, "", "alx-report-api: Unknown setting [database] urll")


def test_missing_sqlite_file_is_reported_and_not_created(site, capsys):
    code, _, err = run(capsys, "populate")
    assert code == 1
    assert err.strip() == ("alx-report-api: Cannot open the database sqlite:///site.sqlite3: "
                           "file site.sqlite3 does not exist")
    assert not (site / "site.sqlite3").exists()


@pytest.mark.parametrize("url, start", [
    ("postgresql://postgres@127.0.0.1:1/nowhere", "alx-report-api: Cannot connect to the database postgresql://postgres@127.0.0.1:1/nowhere: "),
    ("mariadb://root@127.0.0.1:1/nowhere", "alx-report-api: Cannot connect to the database mariadb://root@127.0.0.1:1/nowhere: "),
    ("oracle://x@y/z", "alx-report-api: Unsupported database URL 'oracle://x@y/z'"),
])
def test_wrong_database_url_gives_one_line(site, capsys, monkeypatch, url, start):
    monkeypatch.setenv("ALX_DATABASE_URL", url)
    code, _, err = run(capsys, "populate")
    assert code == 1 and err.startswith(start) and len(err.strip().splitlines()) == 1


def test_missing_tables_are_named(site, capsys):
    engines.connect("sqlite:///site.sqlite3", create=True).db.execute_sql("CREATE TABLE x (id INTEGER)")
    code, _, err = run(capsys, "populate")
    assert code == 1 and err.strip().startswith("alx-report-api: Not a Moodle/IOMAD database: table mdl_user is missing")


def test_populate_before_install_says_what_to_do(site, capsys):
    from moodle_core.generator import generate
    generate(engines.connect("sqlite:///site.sqlite3", create=True), companies=1, users=3)
    code, _, err = run(capsys, "populate")
    assert code == 1 and err.strip() == ("alx-report-api: The plugin tables are not installed (table "
                                         "mdl_local_alx_api_reporting is missing): run alx-report-api install")


def test_demo_site_refuses_a_database_that_holds_a_site(site, capsys):
    run(capsys, "demo-site", "--companies", "1", "--users", "3")
    code, _, err = run(capsys, "demo-site")
    assert code == 1 and "already holds a Moodle site" in err


def test_task_list_run_and_cron(site, capsys):
    run(capsys, "demo-site", "--companies", "1", "--users", "10")
    code, out, _ = run(capsys, "task", "list")
    assert code == 0 and "sync_reporting_data_task     0 * * * *" in out and "never" in out
    code, out, _ = run(capsys, "scheduled-task", "--execute=\\local_alx_report_api\\task\\sync_reporting_data_task")
    assert code == 0 and "Scheduled task complete: sync_reporting_data_task" in out
    code, out, _ = run(capsys, "task", "run", "cleanup_task")
    assert code == 0 and "Cleanup: cache 0" in out
    code, out, _ = run(capsys, "scheduled-task", "--list")
    assert code == 0 and out.count(" success") == 2
    code, _, err = run(capsys, "task", "run", "no_such_task")
    assert (code, err.strip()) == (2, "alx-report-api: Unknown task no_such_task: see alx-report-api task list")
    code, out, _ = run(capsys, "cron")  # nothing due right now: a pass that runs nothing, and says so
    assert code == 0 and out.startswith("Cron pass: ") and " job" in out.splitlines()[-1]
    code, out, _ = run(capsys, "cron", "--quiet")
    assert code == 0 and "Cron pass" not in out


def test_schedule_overrides_come_from_settings(site, capsys):
    run(capsys, "demo-site", "--companies", "1", "--users", "3")
    (site / "settings.ini").write_text("[database]\nurl = sqlite:///site.sqlite3\n[scheduled_tasks]\n"
                                       "cleanup_task = disabled\nreconcile_task = */5 * * * *\n")
    code, out, _ = run(capsys, "task", "list")
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert " yes " in lines["cleanup_task"] and "*/5 * * * *" in lines["reconcile_task"]


def test_cron_keep_alive_stops_after_its_time_and_on_sigterm(site, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    run(capsys, "demo-site", "--companies", "1", "--users", "3")
    command = [sys.executable, "-m", "local_alx_report_api.cli", "cron"]
    env = {**os.environ, "ALX_REPORT_API_SETTINGS": str(site / "settings.ini")}
    started = time.monotonic()
    done = subprocess.run([*command, "--keep-alive=2"], cwd=site, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and 2 <= time.monotonic() - started < 30, done.stderr
    child = subprocess.Popen([*command, "--keep-alive"], cwd=site, env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(1.5)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == 0


def test_install_reports_the_web_services_state_every_time(site, capsys):
    """Issue 18: `install` always reports web services, REST, the service and its functions."""
    run(capsys, "demo-site", "--companies", "1", "--users", "3")
    db = engines.connect(f"sqlite:///{site / 'site.sqlite3'}", "mdl_")
    db.execute("UPDATE {t:config} SET value = '0' WHERE name = 'enablewebservices'")
    db.db.close()
    code, out, _ = run(capsys, "install")
    assert code == 0 and "  Web services enabled: error (Web services are disabled in Moodle" in out
    code, out, _ = run(capsys, "install", "--enable-webservices")
    assert code == 0 and "Enabled web services in Moodle" in out and "  Web services enabled: ok" in out
    assert "  REST protocol enabled: ok" in out and "  Service alx_report_api_custom enabled: ok" in out


def test_every_option_says_what_it_does_and_its_default(capsys):
    """Issue 18: every option and argument of every command has a description; --help shows the
    defaults."""
    import argparse

    from local_alx_report_api.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction):
                yield path, action

    undescribed = [f"{path}: {action.dest}" for path, action in walk(build_parser(), "alx-report-api")
                   if not action.help]
    assert undescribed == []
    out = run(capsys, "demo-site", "--help")[1]
    assert "learners, spread over them (default: 60)" in " ".join(out.split())
    assert "HOST:PORT to listen on (default: 127.0.0.1:8000)" in " ".join(run(capsys, "serve", "--help")[1].split())
    for command in ("", "cron", "populate"):  # no default to show, or the description says it
        assert "(default: None)" not in run(capsys, *command.split(), "--help")[1]
        assert "(default: False)" not in run(capsys, *command.split(), "--help")[1]


def test_a_closed_pipe_ends_the_command_quietly(site):
    """`alx-report-api settings | head -1`: no BrokenPipeError traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ALX_REPORT_API_SETTINGS": str(site / "settings.ini")}
    done = subprocess.run(f"{sys.executable} -m local_alx_report_api.cli settings | head -c 1 >/dev/null; "
                          "echo ${PIPESTATUS[0]} >&2", shell=True, executable="/bin/bash", cwd=site, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    proc = subprocess.Popen([sys.executable, "-m", "local_alx_report_api.cli", "settings"], cwd=site, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141) and "Traceback" not in err and "BrokenPipe" not in err, err


def test_the_installed_command_as_a_new_administrator_runs_it(site):
    """Issue 18, end to end through the installed `alx-report-api` in subprocesses: install
    reports Moodle's web services every time, cron says what a pass did (nothing due included)
    unless --quiet, every subcommand's --help describes its options, a database error is one line."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    command = str(Path(sys.executable).parent / "alx-report-api")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALX_")}

    def cli(*argv):
        done = subprocess.run([command, *argv], cwd=site, env=env, capture_output=True, text=True, timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    assert cli("demo-site", "--companies", "1", "--users", "3").returncode == 0
    for _ in range(2):  # the second run has nothing to create, and still reports
        done = cli("install")
        assert done.returncode == 0 and "  Web services enabled: ok" in done.stdout, done.stdout
        assert "  REST protocol enabled: ok" in done.stdout and "  Service alx_report_api_custom enabled: ok" in done.stdout
    first, second = cli("cron"), cli("cron")
    assert first.stdout.splitlines()[-1].startswith("Cron pass: ") and second.stdout.startswith("Cron pass: 0 tasks run")
    assert cli("cron", "--quiet").stdout == ""
    for sub in ("demo-site", "install", "populate", "cron", "serve", "task", "job", "alerts", "settings"):
        helptext = cli(sub, "--help")
        assert helptext.returncode == 0 and "usage: alx-report-api" in helptext.stdout, sub
    assert "learners, spread over them (default: 60)" in " ".join(cli("demo-site", "--help").stdout.split())
    (site / "settings.ini").write_text("[database]\nurl = sqlite:///missing.sqlite3\n")
    done = cli("task", "list")
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
