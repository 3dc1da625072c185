"""docs/admin-guide.md's database rights, proven: the SQL blocks the guide prints are parsed out of
it (so the guide and this test cannot drift apart) and run, with unique names, on a new Moodle site
on PostgreSQL and MariaDB whose tables belong to a Moodle user of their own. As the service's
restricted user, `install`, `populate`, every scheduled task, `cron`, `serve` with real requests
and the control center's token pages all succeed; writing Moodle tables the guide does not grant
fails; Moodle's user can still back the database up; and the PHP plugin's tables are adopted
(the reference IOMAD site on PostgreSQL, the original install.xml on MariaDB).

With CI=true an unreachable database server fails the test; elsewhere it is skipped, saying why."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import peewee
import pytest

from moodle_core import engines, generator
from moodle_core.xmldb import create_statements
from tests.admin import PREFIX, admin_app, sign_in
from tests.conftest import ROOT, SERVER_URLS, _ensure_database, unavailable
from tests.local_alx_report_api.classes.installer_test import original_tables
from tests.servers import gunicorn
from tests.sites import NOW
from tests.webapp import make_app, progress

GUIDE = ROOT / "docs" / "admin-guide.md"
PG_LOGIN = "-- PostgreSQL: the service's login (as a superuser, in Moodle's database)"
PG_GRANTS = "-- PostgreSQL: what the service may read and write (as a superuser, in Moodle's database)"
PG_ADOPT = ("-- PostgreSQL, moving over: hand the PHP plugin's six tables to the service (as a superuser, "
            "in Moodle's database)")
MARIA_LOGIN = "-- MariaDB: the service's login (as root)"
MARIA_GRANTS = "-- MariaDB: what the service may read and write (as root)"
PASSWORD = "change-me"  # the guide's password of the service's user
FUNCTION = "local_alx_report_api_get_course_progress"
ENDPOINT = "webservice/rest/server.php"
_counter = itertools.count(1)


# -- the guide ---------------------------------------------------------------------------------------
def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def sql_blocks(text: str) -> list[list[str]]:
    """Every ```sql block of the guide, as its lines (list indentation removed)."""
    blocks, current, indent = [], None, 0
    for line in text.splitlines():
        stripped = line.strip()
        if current is None and stripped == "```sql":
            current, indent = [], len(line) - len(line.lstrip())
        elif current is not None and stripped == "```":
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line[indent:])
    return blocks


def block(first_line: str) -> str:
    """The one SQL block of the guide that starts with this comment line."""
    found = [b for b in sql_blocks(guide_text()) if b and b[0] == first_line]
    assert len(found) == 1, f"docs/admin-guide.md has {len(found)} SQL blocks starting {first_line!r}"
    return "\n".join(found[0])


def statements(sql: str, names: dict[str, str]) -> list[str]:
    """The block's statements with the guide's names (database, Moodle's user, the service's user)
    replaced by this test's."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names), key=len, reverse=True)) + r")\b")
    body = pattern.sub(lambda m: names[m.group(1)], body)
    return [s.strip() for s in body.split(";") if s.strip()]


def sample_lines(command: str, nth: int) -> list[str]:
    """The lines of the guide's `nth` sample output of `$ command` (up to the next blank line),
    stripped, without the `…` that stands for lines left out."""
    lines = guide_text().splitlines()
    start = [i for i, line in enumerate(lines) if line.strip() == f"$ {command}"][nth]
    out = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        if line.strip() != "…":
            out.append(line.strip())
    assert out, f"no sample output of {command!r}"
    return out


def in_guide(message: str, names: dict[str, str]) -> bool:
    """Whether a message the test produced is printed in the guide, once this test's names are
    put back to the guide's (and a MariaDB client address to the guide's)."""
    back = {v: k for k, v in names.items()}
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, back), key=len, reverse=True)) + r")\b")
    message = pattern.sub(lambda m: back[m.group(1)], message)
    message = re.sub(r"'alx_report_api'@'[^']*'", "'alx_report_api'@'127.0.0.1'", message)
    return message in guide_text()


# -- the guide names every Moodle table the code reads ------------------------------------------------
def moodle_tables_in_code() -> set[str]:
    """Every Moodle or IOMAD table the service's code names (`{t:name}` in SQL, or a table given to
    Engine.insert), its own six left out."""
    found: set[str] = set()
    for package in ("moodle_core", "local_alx_report_api", "webservice"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "generator.py":  # writes demo sites, never runs against a real Moodle
                continue
            text = path.read_text(encoding="utf-8")
            found |= set(re.findall(r"\{t:([a-z_]+)\}", text))
            found |= set(re.findall(r"\.insert\(\s*\"([a-z_]+)\"", text))
    return {name for name in found if not name.startswith("local_alx_api_")} - {"name"}  # `{t:name}`: a docstring


def test_the_grants_name_every_moodle_table_the_code_uses():
    """A table the code starts to read must get its grant in the guide (and a grant nothing needs goes)."""
    code = moodle_tables_in_code()
    assert {"user", "external_tokens", "user_private_key"} <= code  # the scan works
    for first in (PG_GRANTS, MARIA_GRANTS):
        granted = {name for name in re.findall(r"\bmdl_([a-z_]+)", block(first))
                   if not name.startswith("local_alx_api_") and not name.endswith("_id_seq")}
        assert granted == code, (first, "not granted:", sorted(code - granted), "not used:", sorted(granted - code))


# -- servers, sites and users ----------------------------------------------------------------------
@dataclass
class Server:
    kind: str
    host: str
    port: int
    superuser: str  # postgres / root, as ALX_TEST_POSTGRES_URL / ALX_TEST_MARIADB_URL name them
    superpass: str
    names: dict[str, str]  # the guide's names → this test's

    @property
    def db(self) -> str:
        return self.names["moodle"]

    @property
    def owner(self) -> str:
        return self.names["moodleuser"]

    @property
    def role(self) -> str:
        return self.names["alx_report_api"]

    def url(self, user: str, password: str = "", database: str | None = None) -> str:
        scheme = "postgresql" if self.kind == "postgresql" else "mariadb"
        auth = f"{user}:{password}" if password else user
        return f"{scheme}://{auth}@{self.host}:{self.port}/{database or self.db}"

    def admin(self, database: str | None = None) -> engines.Engine:
        """The superuser: on PostgreSQL connected to `database` (default: the server's maintenance
        database), on MariaDB to `mysql`."""
        if self.kind == "postgresql":
            return engines.connect(self.url(self.superuser, self.superpass, database or "postgres"), "")
        return engines.connect(self.url(self.superuser, self.superpass, "mysql"), "")

    def owner_url(self) -> str:
        return self.url(self.owner, "moodle-pass")

    def service_url(self) -> str:
        return self.url(self.role, PASSWORD)


def server_for(kind: str) -> Server:
    reason = _ensure_database(kind)
    if reason:
        unavailable(reason)
    parts = urlsplit(SERVER_URLS[kind])
    tag = f"{os.getpid() % 100000}_{next(_counter)}"
    names = {"moodle": f"alxguide_{tag}", "moodleuser": f"alxguide_moodle_{tag}",
             "alx_report_api": f"alxguide_service_{tag}"}
    return Server(kind, parts.hostname or "127.0.0.1", parts.port or (5432 if kind == "postgresql" else 3306),
                  parts.username or ("postgres" if kind == "postgresql" else "root"), parts.password or "", names)


def raw(engine: engines.Engine, sql: str) -> None:
    """One statement as written (the drivers format parameters with %, even without any)."""
    engine.db.execute_sql(sql.replace("%", "%%"))


def create_moodle_database(srv: Server) -> None:
    """An empty database that belongs to Moodle's own user, as Moodle's installation guide sets it up."""
    admin = srv.admin()
    try:
        if srv.kind == "postgresql":
            admin.db.execute_sql(f'CREATE ROLE "{srv.owner}" LOGIN PASSWORD \'moodle-pass\'')
            admin.db.execute_sql(f'CREATE DATABASE "{srv.db}" OWNER "{srv.owner}"')
        else:
            admin.db.execute_sql(f"CREATE DATABASE `{srv.db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            raw(admin, f"CREATE USER '{srv.owner}'@'%' IDENTIFIED BY 'moodle-pass'")
            raw(admin, f"GRANT ALL PRIVILEGES ON `{srv.db}`.* TO '{srv.owner}'@'%'")
    finally:
        admin.db.close()


def drop_everything(srv: Server) -> None:
    admin = srv.admin()
    try:
        if srv.kind == "postgresql":
            admin.db.execute_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                                 (srv.db,))
            admin.db.execute_sql(f'DROP DATABASE IF EXISTS "{srv.db}"')
            for role in (srv.role, srv.owner):
                admin.db.execute_sql(f'DROP ROLE IF EXISTS "{role}"')
        else:
            admin.db.execute_sql(f"DROP DATABASE IF EXISTS `{srv.db}`")
            for user in (srv.role, srv.owner):
                raw(admin, f"DROP USER IF EXISTS '{user}'@'%'")
    finally:
        admin.db.close()


def apply_guide(srv: Server, *firsts: str) -> None:
    """Run the guide's blocks as the guide says: as the superuser, in Moodle's database."""
    admin = srv.admin(srv.db)
    try:
        for first in firsts:
            for statement in statements(block(first), srv.names):
                raw(admin, statement)
    finally:
        admin.db.close()


def grant_blocks(kind: str) -> tuple[str, str]:
    return (PG_LOGIN, PG_GRANTS) if kind == "postgresql" else (MARIA_LOGIN, MARIA_GRANTS)


@pytest.fixture(params=["postgresql", "mariadb"])
def srv(request):
    server = server_for(request.param)
    try:
        create_moodle_database(server)
        yield server
    finally:
        drop_everything(server)


# -- the command line and HTTP, as the service's user ---------------------------------------------------
def cli(srv: Server, tmp_path: Path, *argv: str, url: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALX_DATABASE_URL": url or srv.service_url(), "ALX_DATABASE_PREFIX": "mdl_",
           "ALX_REPORT_API_SETTINGS": str(tmp_path / "none.ini")}
    return subprocess.run([sys.executable, "-m", "local_alx_report_api.cli", *argv], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def post(base: str, **params) -> object:
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(base + ENDPOINT, data=data, timeout=30) as answer:
        return json.loads(answer.read())


def refused(engine: engines.Engine, sql: str, params=()) -> str:
    """The error text of a statement the restricted user must not run."""
    with pytest.raises(peewee.DatabaseError) as caught:
        with engine.db.atomic():
            engine.execute(sql, params)
    return str(caught.value)


def assert_refused(engine: engines.Engine, sql: str, params=()) -> None:
    text = refused(engine, sql, params)
    assert any(words in text for words in ("permission denied", "must be owner", "command denied")), text


def backup_as_moodle(srv: Server, tmp_path: Path) -> None:
    """Moodle's own user backs the whole database up, the service's tables included (guide section 7)."""
    tool = "pg_dump" if srv.kind == "postgresql" else ("mariadb-dump" if shutil.which("mariadb-dump") else "mysqldump")
    if shutil.which(tool) is None:
        unavailable(f"{tool} is not installed (bin/run-tests installs the database clients)")
    if srv.kind == "postgresql":
        argv = [tool, "-h", srv.host, "-p", str(srv.port), "-U", srv.owner, "-d", srv.db, "-Fc",
                "-f", str(tmp_path / "moodle.dump")]
        env = {**os.environ, "PGPASSWORD": "moodle-pass"}
    else:
        argv = [tool, "--single-transaction", "-h", srv.host, "-P", str(srv.port), "--protocol=tcp", "-u", srv.owner,
                "-pmoodle-pass", f"--result-file={tmp_path / 'moodle.sql'}", srv.db]
        env = dict(os.environ)
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    dump = tmp_path / ("moodle.dump" if srv.kind == "postgresql" else "moodle.sql")
    assert dump.stat().st_size > 0
    if srv.kind == "mariadb":
        assert "CREATE TABLE `mdl_local_alx_api_reporting`" in dump.read_text(encoding="utf-8", errors="replace")


# -- a new site ------------------------------------------------------------------------------------------
def moodle_without_the_plugin(srv: Server) -> list[tuple[str, int]]:
    """A generated IOMAD site written by Moodle's user, then without our function and service, as
    a Moodle site that never had the plugin; returns the managers' (token, user id) to recreate."""
    owner = engines.connect(srv.owner_url(), "mdl_")
    try:
        site = generator.generate(owner, companies=2, users=40, courses=6, seed=7)
        managers = [(token, int(owner.scalar("SELECT id FROM {t:user} WHERE username = ?", (username,))))
                    for token, username, _ in site.tokens]
        with owner.db.atomic():
            owner.execute("DELETE FROM {t:external_tokens}")
            owner.execute("DELETE FROM {t:external_services_functions}")
            owner.execute("DELETE FROM {t:external_services}")
            owner.execute("DELETE FROM {t:external_functions} WHERE name = ?", (FUNCTION,))
        return managers
    finally:
        owner.db.close()


def test_the_guides_grants_run_the_whole_service_and_nothing_more(srv, tmp_path):
    managers = moodle_without_the_plugin(srv)
    apply_guide(srv, *grant_blocks(srv.kind))

    # install as the service: function, service, links, the six tables
    out = ok(cli(srv, tmp_path, "install"))
    lines = {line.strip() for line in out.splitlines()}
    for line in sample_lines("alx-report-api install", 0):  # the guide's sample output is real
        assert line in lines, (line, out)
    for table in ("logs", "settings", "reporting", "sync_status", "cache", "alerts"):
        assert f"Created table mdl_local_alx_api_{table}" in lines

    # Moodle's administrator creates the tokens (in Moodle), one of them expired
    owner = engines.connect(srv.owner_url(), "mdl_")
    try:
        serviceid = owner.scalar("SELECT id FROM {t:external_services} WHERE shortname = 'alx_report_api_custom'")
        for token, userid in managers:
            owner.insert("external_tokens", {"token": token, "tokentype": 0, "userid": userid, "externalserviceid":
                                             serviceid, "contextid": 1, "creatorid": 2, "validuntil": 0,
                                             "timecreated": NOW})
        owner.insert("external_tokens", {"token": "e" * 32, "tokentype": 0, "userid": managers[0][1],
                                         "externalserviceid": serviceid, "contextid": 1, "creatorid": 2,
                                         "validuntil": 1000, "timecreated": 100})
    finally:
        owner.db.close()

    # populate, every task, a cron pass
    assert "Finished: 2 companies" in ok(cli(srv, tmp_path, "populate"))
    for task in ("sync_reporting_data_task", "check_alerts_task", "send_notifications_task", "cleanup_task",
                 "reconcile_task"):
        assert "Scheduled task complete" in ok(cli(srv, tmp_path, "task", "run", task)), task
    ok(cli(srv, tmp_path, "cron"))
    assert "sync_reporting_data_task" in ok(cli(srv, tmp_path, "task", "list"))

    # serve, and real requests
    service = engines.connect(srv.service_url(), "mdl_")
    token, userid = managers[0]
    with gunicorn(service, tmp_path, 2, ALX_LOCAL_ALX_REPORT_API_CONFIG_CACHE_SECONDS="0") as base:
        with urllib.request.urlopen(base + "readyz", timeout=10) as answer:
            assert json.loads(answer.read()) == {"status": "ok"}
        info = post(base, wstoken=token, wsfunction="core_webservice_get_site_info", moodlewsrestformat="json")
        assert info.get("userid") == userid and info["userprivateaccesskey"], info
        rows = post(base, wstoken=token, wsfunction=FUNCTION, moodlewsrestformat="json", limit=500)
        assert isinstance(rows, list) and rows, rows
        assert post(base, wstoken="e" * 32, wsfunction=FUNCTION, moodlewsrestformat="json")["errorcode"] == \
            "accessexception"  # expired: deleted
        assert post(base, wstoken="e" * 32, wsfunction=FUNCTION, moodlewsrestformat="json")["errorcode"] == \
            "invalidtoken"
        for other, _ in managers[1:]:
            assert isinstance(post(base, wstoken=other, wsfunction=FUNCTION, moodlewsrestformat="json"), list)

    # what the requests wrote in Moodle's tables, as Moodle's user sees it
    owner = engines.connect(srv.owner_url(), "mdl_")
    try:
        assert owner.scalar("SELECT lastaccess FROM {t:external_tokens} WHERE token = ?", (token,))
        assert owner.scalar("SELECT COUNT(*) FROM {t:external_tokens} WHERE token = ?", ("e" * 32,)) == 0
        assert owner.scalar("SELECT value FROM {t:user_private_key} WHERE userid = ? AND script = 'core_files'",
                            (userid,)) == info["userprivateaccesskey"]
        owner.execute("UPDATE {t:config} SET value = '0' WHERE name = 'enablewebservices'")
    finally:
        owner.db.close()

    # the control center as the service: sign in, create a token, revoke it
    service = engines.connect(srv.service_url(), "mdl_")
    try:
        app = admin_app(service, int(time.time()))
        assert sign_in(app).status_int == 303
        form = app.get(PREFIX + "/tokens").forms["create-token"]
        form["username"] = "companya_api"
        shown = form.submit().follow()
        created = shown.html.find(id="new-token").get_text(strip=True)
        assert re.fullmatch(r"[0-9a-f]{32}", created)
        tokenid = service.scalar("SELECT id FROM {t:external_tokens} WHERE token = ?", (created,))
        page = app.get(PREFIX + "/tokens").click(href=f"/tokens/{tokenid}/revoke")
        assert page.forms[1].submit().status_int == 303
        assert service.scalar("SELECT COUNT(*) FROM {t:external_tokens} WHERE token = ?", (created,)) == 0

        # ... and nothing the guide does not grant
        assert_refused(service, "UPDATE {t:user} SET firstname = 'x' WHERE id = 2")
        assert_refused(service, "UPDATE {t:external_tokens} SET token = 'x' WHERE id = ?", (tokenid,))
        assert_refused(service, "UPDATE {t:config} SET value = '1' WHERE name = 'enablewebservices'")
        assert_refused(service, "INSERT INTO {t:config} (name, value) VALUES ('x', 'y')")
        assert_refused(service, "DELETE FROM {t:course} WHERE id = 2")
        assert_refused(service, "UPDATE {t:company_users} SET suspended = 1")
        assert_refused(service, "DELETE FROM {t:user_private_key}")
        assert_refused(service, "ALTER TABLE {t:user} ADD COLUMN alx_x INTEGER")
    finally:
        service.db.close()

    # switching Moodle's web services on is Moodle's business: one clear line, as the guide prints it
    result = cli(srv, tmp_path, "install", "--enable-webservices")
    assert result.returncode == 1, result.stdout + result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("alx-report-api: database error: ") and "mdl_config" in message, result.stderr
    assert in_guide(message, srv.names), message

    backup_as_moodle(srv, tmp_path)


def test_adopting_the_php_plugins_tables_on_mariadb(tmp_path):
    """The original install.xml's tables, written by Moodle's user; the guide's MariaDB grants alone
    let the service adopt them (section 4 has no extra step for MariaDB)."""
    srv = server_for("mariadb")
    try:
        create_moodle_database(srv)
        moodle_without_the_plugin(srv)
        owner = engines.connect(srv.owner_url(), "mdl_")
        try:
            for table in original_tables():
                for statement in create_statements(owner, table):
                    owner.db.execute_sql(statement)
            owner.execute("INSERT INTO {t:local_alx_api_reporting} (userid, companyid, courseid, firstname, lastname, "
                          "email, coursename, timecompleted, timestarted, percentage, status, last_updated, is_deleted, "
                          "created_at, updated_at) VALUES (5, 1, 2, 'A', 'B', 'a@b.c', 'Course', 0, 0, 12.5, "
                          "'in_progress', 100, 0, 100, 100)")
        finally:
            owner.db.close()
        apply_guide(srv, MARIA_LOGIN, MARIA_GRANTS)
        out = ok(cli(srv, tmp_path, "install"))
        assert "Added column mdl_local_alx_api_reporting.change_seq" in out
        assert "Widened column mdl_local_alx_api_reporting.coursename to char(1333)" in out
        assert "Stamped 1 adopted reporting rows of company 1" in out
        assert "Created table" not in out
        assert "Finished: 2 companies" in ok(cli(srv, tmp_path, "populate"))
        backup_as_moodle(srv, tmp_path)
    finally:
        drop_everything(srv)


def uninstall_the_php_plugin(srv: Server) -> None:
    """What Moodle 4.4's uninstall_plugin() does to the database once the plugin's code is gone
    (guide section 4, step 8): core_external's delete_service_descriptions() for the component, its
    settings and scheduled tasks; no table is dropped (its install.xml cannot be read)."""
    owner = engines.connect(srv.owner_url(), "mdl_")
    try:
        with owner.db.atomic():
            services = "SELECT id FROM {t:external_services} WHERE component = 'local_alx_report_api'"
            owner.execute(f"DELETE FROM {{t:external_tokens}} WHERE externalserviceid IN ({services})")
            owner.execute(f"DELETE FROM {{t:external_services_users}} WHERE externalserviceid IN ({services})")
            owner.execute("DELETE FROM {t:external_services_functions} WHERE functionname IN "
                          "(SELECT name FROM {t:external_functions} WHERE component = 'local_alx_report_api')")
            owner.execute("DELETE FROM {t:external_services} WHERE component = 'local_alx_report_api'")
            owner.execute("DELETE FROM {t:external_functions} WHERE component = 'local_alx_report_api'")
            owner.execute("DELETE FROM {t:config_plugins} WHERE plugin = 'local_alx_report_api'")
    finally:
        owner.db.close()


def test_adopting_the_reference_sites_tables_on_postgresql(refsite_url, tmp_path):
    """The real IOMAD 4.4.5 site with the PHP plugin's tables, all owned by Moodle's user: the
    grants alone are not enough (and install says what to do), the guide's moving-over block is."""
    srv = server_for("postgresql")
    template = refsite_url.rsplit("/", 1)[1]
    admin = srv.admin()
    try:
        admin.db.execute_sql(f'CREATE ROLE "{srv.owner}" LOGIN PASSWORD \'moodle-pass\'')
        admin.db.execute_sql(f'CREATE DATABASE "{srv.db}" TEMPLATE "{template}" OWNER "{srv.owner}"')
        site = srv.admin(srv.db)
        try:  # as Moodle's installer leaves it: every table belongs to Moodle's user
            for (table,) in site.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"):
                site.db.execute_sql(f'ALTER TABLE "{table}" OWNER TO "{srv.owner}"')
        finally:
            site.db.close()
        uninstall_the_php_plugin(srv)
        apply_guide(srv, PG_LOGIN, PG_GRANTS)

        result = cli(srv, tmp_path, "install")
        assert result.returncode == 1
        assert in_guide(result.stderr.strip(), srv.names), result.stderr

        apply_guide(srv, PG_ADOPT)
        out = ok(cli(srv, tmp_path, "install"))
        lines = {line.strip() for line in out.splitlines()}
        for line in sample_lines("alx-report-api install", 1):
            assert line in lines, (line, out)
        assert not any(line.startswith("Created table") for line in lines)
        assert "Finished: 3 companies" in ok(cli(srv, tmp_path, "populate"))

        service = engines.connect(srv.service_url(), "mdl_")
        try:
            rows = json.loads(progress(make_app(service, NOW), "6b84b9954ee4488dbdd473f3a0c892fe", limit=5).body)
            assert isinstance(rows, list) and len(rows) == 5, rows  # acme's existing token, unchanged
            assert_refused(service, "UPDATE {t:user} SET firstname = 'x' WHERE id = 2")
        finally:
            service.db.close()
        backup_as_moodle(srv, tmp_path)
    finally:
        admin.db.close()
        drop_everything(srv)


# -- the troubleshooting table quotes the program -----------------------------------------------------
@pytest.mark.parametrize("settings, argv", [
    ("[databse]\nurl = x\n", ["settings"]),
    ("[site]\ntimezone = Europe/Londn\n", ["settings"]),
    ("[database]\nretry_attempts = 20\n", ["settings"]),
    ("[scheduled_tasks]\nsync_reporting_data_task = 61 * * * *\n", ["settings"]),
    ("[database]\nurl = mysql+pymysql://alx_report_api:change-me@127.0.0.1:3306/moodle\n", ["install"]),
    (None, ["install"]),  # a settings file that is not there: the defaults apply
])
def test_the_troubleshooting_table_quotes_the_program(tmp_path, settings, argv):
    path = tmp_path / "settings.ini"
    if settings is not None:
        path.write_text(settings, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALX_")}
    result = subprocess.run([sys.executable, "-m", "local_alx_report_api.cli", "--config", str(path), *argv],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == "", result.stdout + result.stderr
    message = result.stderr.strip()
    assert "\n" not in message and "change-me" not in message, message
    assert f"| `{message}` |" in guide_text(), message
