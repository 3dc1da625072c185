"""`pip install .` into a fresh venv gives a working `alx-report-api` (install.json ships with it)."""

import subprocess
import sys

from tests.conftest import ROOT


def test_fresh_venv_install_gives_a_working_command(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)],
                         capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    site = tmp_path / "site"
    site.mkdir()
    (site / "settings.ini").write_text("[database]\nurl = sqlite:///moodle.sqlite3\n")
    command = str(venv / "bin" / "alx-report-api")

    def run(*args):
        return subprocess.run([command, *args], cwd=site, capture_output=True, text=True)

    demo = run("demo-site", "--companies", "2", "--users", "20")
    assert demo.returncode == 0, demo.stderr
    assert "Token for companya_api (company 1)" in demo.stdout
    populated = run("populate", "--quiet")
    assert populated.returncode == 0 and "Finished: 2 companies" in populated.stdout, populated.stderr
    shipped = list((venv / "lib").glob("python3*/site-packages/local_alx_report_api/install.json"))
    assert shipped, "install.json is inside the installed package"
    assert run("settings").stdout.count("; settings.ini") == 1
