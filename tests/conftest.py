"""Test fixtures: real databases over real connections.

`db` runs a test on SQLite, PostgreSQL and MariaDB. Each run works in a database of its own on each
server (`alx_test_<pid>`, dropped at the end) and each test in a table prefix of its own; afterwards
its tables are dropped, or emptied and reused by a later test when they are exactly what `new_site`
makes (SchemaPool).
With CI=true an unreachable server fails the run; elsewhere the test is skipped, saying why."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest

from moodle_core import engines
from moodle_core.config import ConfigError
from moodle_core.moodle_schema import moodle_tables
from moodle_core.xmldb import create_tables

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


SESSION_URLS: dict[str, str] = {}  # this run's own database on each server (see _ensure_database)


def _admin_url(kind: str) -> str:
    return SERVER_URLS[kind].rsplit("/", 1)[0] + ("/postgres" if kind == "postgresql" else "/mysql")


def _ensure_database(kind: str) -> str | None:
    """Create this run's own database on the server, `<name>_<pid>` beside the configured one
    (`alx_test`), and drop those of runs that are gone: runs at the same time never meet, and
    the catalog rows of every table a run made and dropped go with its database (PostgreSQL
    without autovacuum otherwise slows down run after run). Returns a reason when the server is
    unreachable."""
    if kind in _status:
        return _status[kind]
    name = SERVER_URLS[kind].rsplit("/", 1)[1]
    mine = f"{name}_{os.getpid()}"
    try:
        admin = engines.connect(_admin_url(kind), "")
        listed = ("SELECT datname FROM pg_database" if kind == "postgresql" else
                  "SELECT schema_name FROM information_schema.schemata")
        for (other,) in admin.rows(listed):
            pid = other[len(name) + 1:]
            if other.startswith(name + "_") and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                _drop_database(admin, kind, other)
        _drop_database(admin, kind, mine)
        if kind == "postgresql":
            admin.db.execute_sql(f'CREATE DATABASE "{mine}"')
        else:
            admin.db.execute_sql(f"CREATE DATABASE `{mine}` CHARACTER SET utf8mb4")
        admin.db.close()
        SESSION_URLS[kind] = SERVER_URLS[kind].rsplit("/", 1)[0] + "/" + mine
        _status[kind] = None
    except ConfigError as exc:
        _status[kind] = f"{kind} server unreachable: {exc}"
    return _status[kind]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_database(admin: engines.Engine, kind: str, name: str) -> None:
    if kind == "postgresql":
        admin.db.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:  # a connection a test left open could hold a table's metadata lock: wait 10 s at most
        admin.db.execute_sql("SET SESSION lock_wait_timeout = 10")
        admin.db.execute_sql(f"DROP DATABASE IF EXISTS `{name}`")


def drop_prefixed(engine: engines.Engine) -> None:
    for table in sorted(engine.tables()):
        if table.startswith(engine.prefix):
            engine.db.execute_sql(f"DROP TABLE IF EXISTS {engine.quote(table)}")


class SchemaPool:
    """Emptied standard schemas (Moodle's tables and the plugin's, exactly as `new_site` makes
    them) kept between tests on PostgreSQL and MariaDB: creating the 31 tables costs about 0.5 s
    and 1.1 s there, emptying them 0.03 s and 0.15 s (issue 19). A schema goes back to the pool
    only when its tables, columns and indexes are the standard ones; one a test altered is dropped
    as before. Ids start at 1 again (sequences restarted, TRUNCATE)."""

    def __init__(self):
        self.free: dict[str, list[str]] = {"postgresql": [], "mariadb": []}
        self.standard: dict[str, tuple] = {}

    @staticmethod
    def shape(engine: engines.Engine) -> tuple:
        """The prefix's tables, columns and indexes, with the prefix taken out of every name."""
        like = engine.prefix.replace("_", "\\_") + "%"
        if engine.kind == "postgresql":
            rows = engine.rows("SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision, "
                               "numeric_scale, is_nullable, column_default FROM information_schema.columns WHERE "
                               "table_schema = current_schema() AND table_name LIKE ? ORDER BY 1, 2", (like,))
            rows += engine.rows("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                                "AND tablename LIKE ? ORDER BY 1", (like,))
        else:
            rows = engine.rows("SELECT table_name, column_name, column_type, is_nullable, column_default FROM "
                               "information_schema.columns WHERE table_schema = DATABASE() AND table_name LIKE ? "
                               "ORDER BY 1, 2", (like,))
            rows += engine.rows("SELECT table_name, index_name, seq_in_index, column_name, non_unique FROM "
                                "information_schema.statistics WHERE table_schema = DATABASE() AND table_name LIKE ? "
                                "ORDER BY 1, 2, 3", (like,))
        return tuple(tuple(str(v).replace(engine.prefix, "P_") for v in row) for row in rows)

    @staticmethod
    def in_use(engine: engines.Engine) -> bool:
        """Another session still runs a statement on the prefix (a test left a thread or process
        behind): such a schema is dropped, so that leftover fails instead of writing into the
        next test's data."""
        like = "%" + engine.prefix.replace("_", "\\_") + "%"
        if engine.kind == "postgresql":
            sql = ("SELECT COUNT(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND "
                   "datname = current_database() AND state <> 'idle' AND query LIKE ?")
        else:
            sql = "SELECT COUNT(*) FROM information_schema.processlist WHERE id <> CONNECTION_ID() AND info LIKE ?"
        return int(engine.scalar(sql, (like,))) > 0

    def take(self, engine: engines.Engine) -> bool:
        """Point a fresh engine (no tables yet) at a pooled schema; False when there is none."""
        free = self.free.get(engine.kind)
        if not free or any(t.startswith(engine.prefix) for t in engine.tables()):
            return False
        engine.prefix = free.pop()
        return True

    def made(self, engine: engines.Engine) -> None:
        """`new_site` made a standard schema from nothing: remember its shape."""
        if engine.kind in self.free and engine.kind not in self.standard:
            self.standard[engine.kind] = self.shape(engine)

    def release(self, engine: engines.Engine) -> None:
        """After a test: empty a standard schema into the pool, drop anything else."""
        if engine.kind not in self.free or not any(t.startswith(engine.prefix) for t in engine.tables()):
            return
        if (self.standard.get(engine.kind) != self.shape(engine) or len(self.free[engine.kind]) >= 8
                or self.in_use(engine)):
            drop_prefixed(engine)
            return
        tables = sorted(t for t in engine.tables() if t.startswith(engine.prefix))
        filled = [t for (t,) in engine.rows(" UNION ALL ".join(  # one round trip: which tables hold rows
            f"SELECT '{t}' FROM (SELECT 1 AS x) one WHERE EXISTS (SELECT 1 FROM {engine.quote(t)})" for t in tables))]
        if engine.kind == "postgresql":
            with engine.db.atomic():
                for table in filled:
                    engine.db.execute_sql(f"DELETE FROM {engine.quote(table)}")
                for (sequence,) in engine.rows("SELECT sequencename FROM pg_sequences WHERE schemaname = "
                                               "current_schema() AND sequencename LIKE ? AND last_value IS NOT NULL",
                                               (engine.prefix.replace("_", "\\_") + "%",)):
                    engine.db.execute_sql(f"ALTER SEQUENCE {engine.quote(sequence)} RESTART")
        else:
            for table in filled:  # TRUNCATE also sets AUTO_INCREMENT back to 1
                engine.db.execute_sql(f"TRUNCATE TABLE {engine.quote(table)}")
        self.free[engine.kind].append(engine.prefix)

SCHEMAS = SchemaPool()


def make_engine(kind: str, tmp_path: Path) -> engines.Engine:
    prefix = f"t{os.getpid() % 100000}_{next(_counter)}_"
    if kind == "sqlite":
        return engines.connect(f"sqlite:///{tmp_path / 'moodle.sqlite3'}", "mdl_", create=True)
    reason = _ensure_database(kind)
    if reason:
        unavailable(reason)
    return engines.connect(SESSION_URLS[kind], prefix)


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
        SCHEMAS.release(cleanup)
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
    # Moodle's installer makes user_private_key on every site, empty; the dump leaves it out
    # (site info reads and writes it, decision 101)
    site = engines.connect(f"{base}/{name}", "mdl_")
    create_tables(site, [t for t in moodle_tables() if t.name == "user_private_key"])
    site.db.close()
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


def pytest_sessionfinish(session, exitstatus):
    for kind in SESSION_URLS:  # this run's databases, with every table left in them
        try:
            admin = engines.connect(_admin_url(kind), "")
            _drop_database(admin, kind, SESSION_URLS[kind].rsplit("/", 1)[1])
            admin.db.close()
        except Exception as exc:  # the next run drops it (its process is gone by then)
            print(f"\n{kind}: this run's database was left for the next run to drop: {exc}")


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
