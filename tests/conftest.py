"""Test fixtures: real databases over real connections.

`db` runs a test on SQLite, PostgreSQL and MariaDB. Each test gets its own table prefix in the
shared test database (so nothing leaks between tests) and its tables are dropped afterwards.
With CI=true an unreachable server fails the run; elsewhere the test is skipped, saying why."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest

from moodle_core import engines
from moodle_core.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures" / "iomad-4.4.5"
SERVER_URLS = {
    "postgresql": os.environ.get("ALX_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/alx_test"),
    "mariadb": os.environ.get("ALX_TEST_MARIADB_URL", "mariadb://root@127.0.0.1:3306/alx_test"),
}
IN_CI = os.environ.get("CI", "").lower() == "true"
_counter = itertools.count(1)
_status: dict[str, str | None] = {}


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true and a test backend is unreachable: {reason}", pytrace=False)
    pytest.skip(reason)


def _ensure_database(kind: str) -> str | None:
    """Create the shared test database if needed; returns a reason when the server is unreachable."""
    if kind in _status:
        return _status[kind]
    url = SERVER_URLS[kind]
    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + ("/postgres" if kind == "postgresql" else "/mysql")
    try:
        admin = engines.connect(admin_url, "")
        if kind == "postgresql":
            if not admin.scalar("SELECT 1 FROM pg_database WHERE datname = ?", (name,)):
                admin.db.execute_sql(f'CREATE DATABASE "{name}"')
        else:
            admin.db.execute_sql(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
        admin.db.close()
        _status[kind] = None
    except ConfigError as exc:
        _status[kind] = f"{kind} server unreachable: {exc}"
    return _status[kind]


def drop_prefixed(engine: engines.Engine) -> None:
    for table in sorted(engine.tables()):
        if table.startswith(engine.prefix):
            engine.db.execute_sql(f"DROP TABLE IF EXISTS {engine.quote(table)}")


def make_engine(kind: str, tmp_path: Path) -> engines.Engine:
    prefix = f"t{os.getpid() % 100000}_{next(_counter)}_"
    if kind == "sqlite":
        return engines.connect(f"sqlite:///{tmp_path / 'moodle.sqlite3'}", "mdl_", create=True)
    reason = _ensure_database(kind)
    if reason:
        unavailable(reason)
    return engines.connect(SERVER_URLS[kind], prefix)


def engine_url(engine: engines.Engine) -> str:
    return engine.url


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def db(request, tmp_path):
    """An empty database on each engine, with a table prefix of its own."""
    engine = make_engine(request.param, tmp_path)
    yield engine
    engine.db.close()
    if engine.kind != "sqlite":
        cleanup = engines.connect(engine.url, engine.prefix)
        drop_prefixed(cleanup)
        cleanup.db.close()


@pytest.fixture
def sqlite_db(tmp_path):
    engine = make_engine("sqlite", tmp_path)
    yield engine
    engine.db.close()


@pytest.fixture(scope="session")
def refsite_url():
    """The real IOMAD 4.4.5 reference site (PostgreSQL only), loaded once per test run from site.sql.

    Tests that change it must work on a copy (`refsite` below)."""
    reason = _ensure_database("postgresql")
    if reason:
        unavailable(reason)
    base = SERVER_URLS["postgresql"].rsplit("/", 1)[0]
    name = f"alx_refsite_{os.getpid()}"
    admin = engines.connect(base + "/postgres", "")
    admin.db.execute_sql(f'DROP DATABASE IF EXISTS "{name}"')
    admin.db.execute_sql(f'CREATE DATABASE "{name}"')
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", f"{base}/{name}", "-f", str(FIXTURES / "site.sql")],
                   check=True, stdout=subprocess.DEVNULL)
    yield f"{base}/{name}"
    admin.db.execute_sql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
    admin.db.execute_sql(f'DROP DATABASE IF EXISTS "{name}"')
    admin.db.close()


@pytest.fixture
def refsite(refsite_url):
    """A private copy of the reference site (a PostgreSQL template copy: fast)."""
    base = refsite_url.rsplit("/", 1)[0]
    name = f"alx_refcopy_{os.getpid()}_{next(_counter)}"
    admin = engines.connect(base + "/postgres", "")
    admin.db.execute_sql(f'CREATE DATABASE "{name}" TEMPLATE "{refsite_url.rsplit("/", 1)[1]}"')
    engine = engines.connect(f"{base}/{name}", "mdl_")
    yield engine
    engine.db.close()
    admin.db.execute_sql(f'DROP DATABASE IF EXISTS "{name}"')
    admin.db.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "case_matrix_on_sqlite: the whole case matrix runs on SQLite; PostgreSQL "
                                       "and MariaDB run the first case only (the logic is engine-independent)")


def pytest_collection_modifyitems(config, items):
    """Thin out engine-independent case matrices on the server engines (see the marker)."""
    seen: set[tuple[str, str]] = set()
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        engine = callspec.params.get("db") if callspec else None
        if item.get_closest_marker("case_matrix_on_sqlite") and engine in ("postgresql", "mariadb"):
            key = (item.nodeid.split("[")[0], engine)
            if key in seen:
                drop.append(item)
                continue
            seen.add(key)
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
