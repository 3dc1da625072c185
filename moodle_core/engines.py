"""Every difference between SQLite, PostgreSQL and MariaDB/MySQL lives here: URLs and
connections, XMLDB type mapping and DDL, introspection, write transactions, named locks and
which errors are transient."""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee
import psycopg2.extensions
import psycopg2.extras

from moodle_core.config import ConfigError, mask_urls
from moodle_core.moodle_schema import IOMAD5_NAMES

log = logging.getLogger("alx_report_api.db")
T = TypeVar("T")
RETRY_HOOKS: list[Callable[[], None]] = []  # called at each retry (the plugin counts them in its metrics)
DATABASE_ERRORS = (peewee.DatabaseError, peewee.InterfaceError)  # what the database, not our code, raised


def first_line(exc: BaseException) -> str:
    """An error's first line (a driver's messages run over several), or its class name."""
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__

SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql",
           "mariadb": "mariadb", "mysql": "mariadb"}
NEVER = 7952342400


# Milliseconds spent in database calls by the current request or task (None: not measuring)
DB_TIME: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("db_time", default=None)


@contextlib.contextmanager
def measure_db_time():
    """Accumulate the time of every statement run in this context; yields a one-item list (ms)."""
    total = [0.0]
    token = DB_TIME.set(total)
    try:
        yield total
    finally:
        DB_TIME.reset(token)


# The company the current request or task works for, named in slow-query lines
QUERY_COMPANY: contextvars.ContextVar[int | None] = contextvars.ContextVar("query_company", default=None)


def _query_kind(sql: str) -> str:
    """`select local_alx_api_reporting`: the statement and the first table it names."""
    match = re.search(r'(?:FROM|INTO|UPDATE)\s+[`"]?(\w+)', sql, re.IGNORECASE)
    return f"{sql.split(None, 1)[0].lower()} {match.group(1) if match else '?'}"


class LockBusy(Exception):
    """A named lock is held by someone else."""


def _hash_suffix(name: str, limit: int) -> str:
    """Cut an identifier to `limit` characters, ending in an 8-hex hash of the full name."""
    if len(name) <= limit:
        return name
    return name[: limit - 9] + "_" + hashlib.sha256(name.encode()).hexdigest()[:8]


class LockSet:
    """Named locks (the same names and the same exclusion as `Engine.lock`), many in one round
    trip when taken without waiting, on one dedicated connection (or, on SQLite, open files) for a
    whole run: a sync run takes and frees every company's lock without opening a connection each.
    Whatever it holds is released by `release`, by `close`, or when its connection or process
    dies."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.handle = engine._side_connection() if engine.kind != "sqlite" else {}
        self.held: set[str] = set()

    def take(self, names, timeout: float = 0.0) -> set[str]:
        """Try each lock once (waiting up to `timeout` s for each, one after the other, when
        given); returns the names now held (the others are busy)."""
        names = [n for n in dict.fromkeys(names) if n not in self.held]
        got = set()
        if timeout > 0:
            got = {n for n in names if self.engine._wait_lock(self.handle, n, timeout)}
            names = []
        self.held |= got
        for start in range(0, len(names), 200):
            part = names[start:start + 200]
            taken = {n for n, ok in zip(part, self.engine._try_locks(self.handle, part), strict=True) if ok}
            self.held |= taken  # at once: a later part that fails leaves these released by close()
            got |= taken
        return got

    def release(self, names) -> None:
        names = [n for n in dict.fromkeys(names) if n in self.held]
        for start in range(0, len(names), 200):
            self.engine._unlock(self.handle, names[start:start + 200])
        self.held -= set(names)

    def close(self) -> None:
        try:
            if self.engine.kind == "sqlite":
                self.release(list(self.held))
            else:
                self.handle.close()  # a closed session frees its locks
        finally:
            self.held.clear()


@dataclass(frozen=True)
class Column:
    """A column as the database reports it, normalised for comparisons."""

    name: str
    kind: str  # int, char, text, number
    length: int | None
    notnull: bool
    default: object


class Engine:
    """One database, reached through peewee, with the engine-specific SQL it needs."""

    kind = ""
    max_identifier = 63
    for_update = " FOR UPDATE"  # row lock of a SELECT inside a write transaction

    def __init__(self, db: peewee.Database, url: str, prefix: str):
        self.db = db
        self.url = url
        self.prefix = prefix
        self.aliases: dict[str, str] = {}  # logical → physical name (IOMAD 5.x renames), set by name_tables
        self.iomad: str | None = None  # "4", "5", or None: no IOMAD tables (yet)
        self._recorders: list[list[tuple[str, tuple]]] = []  # see recording()
        self.locks_db: peewee.Database | None = None  # connect(lock_url=): where named locks are held
        self.replicas = None  # moodle_core.replicas.attach: the Replicas that may take its lagging reads

    # -- SQL text -------------------------------------------------------------------------
    def quote(self, name: str) -> str:
        return f'"{name}"'

    def table(self, name: str) -> str:
        """The quoted physical name of a Moodle or plugin table."""
        return self.quote(self.prefix + self.aliases.get(name, name))

    def sql(self, text: str) -> str:
        """Queries are written with `?` placeholders and `{t:name}` for prefixed tables."""
        text = re.sub(r"\{t:(\w+)\}", lambda m: self.table(m.group(1)), text)
        return text if self.db.param == "?" else text.replace("%", "%%").replace("?", self.db.param)

    def execute(self, text: str, params=(), *, retry: bool = True):
        """One statement. Outside a transaction it is a unit of work of its own: a transient
        error (a lost connection, a busy file) is retried `retry_attempts` times in all (not
        with `retry=False`: a write that must not hold an answer back during an outage)."""
        sql, values = self.sql(text), tuple(params)
        if retry and self.retry_attempts > 1 and not self.db.in_transaction():
            return self.retrying(lambda: self._run(sql, values), self.retry_attempts, self.retry_base_delay,
                                 "a statement")
        return self._run(sql, values)

    slow_query_ms = 1000  # set from settings by the composition root
    retry_attempts, retry_base_delay = 1, 1.0  # likewise ([database] retry_attempts, retry_base_delay)

    @contextlib.contextmanager
    def recording(self):
        """Yields a list that receives every statement this engine runs in the block, as (SQL,
        parameters) in the driver's style: for statement-count tests and the benchmark's floors."""
        calls: list[tuple[str, tuple]] = []
        self._recorders.append(calls)
        try:
            yield calls
        finally:
            self._recorders.remove(calls)

    def _run(self, sql: str, params):
        """Every statement is timed: summed into the request's database time and, when slower
        than `slow_query_ms`, written to the process log (monitoring.md, Slow queries)."""
        for calls in self._recorders:
            calls.append((sql, tuple(params or ())))
        started = time.perf_counter()
        try:
            return self.db.execute_sql(sql, params)
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            total = DB_TIME.get()
            if total is not None:
                total[0] += elapsed
            if elapsed >= self.slow_query_ms:
                log.warning("slow query %s (company %s): %.1f ms: %s", _query_kind(sql), QUERY_COMPANY.get(),
                            elapsed, " ".join(sql.split()))

    def rows(self, text: str, params=()) -> list[tuple]:
        return list(self.execute(text, params).fetchall())

    def rows_in(self, text: str, values, params=(), chunk: int = 500) -> list[tuple]:
        """`rows` of a query with one `IN ({in})` list, run in chunks of `chunk` values (SQLite
        takes at most 32,766 parameters); `params` follow the list's values."""
        values, out = list(values), []
        for start in range(0, len(values), chunk):
            part = values[start:start + chunk]
            out += self.rows(text.replace("{in}", ", ".join("?" * len(part))), (*part, *params))
        return out

    def scalar(self, text: str, params=()):
        row = self.execute(text, params).fetchone()
        return row[0] if row else None

    def byte_length(self, expr: str) -> str:
        """SQL for the size in bytes of a text expression as stored (UTF-8)."""
        return f"OCTET_LENGTH({expr})"

    def executemany(self, text: str, seq) -> None:
        seq = list(seq)
        if seq:
            cursor = self.db.cursor()
            cursor.executemany(self.sql(text), seq)

    def insert(self, table: str, values: dict) -> int:
        """Insert one row; returns its id."""
        cols = list(values)
        text = (f"INSERT INTO {self.table(table)} ({', '.join(self.quote(c) for c in cols)}) "
                f"VALUES ({', '.join([self.db.param] * len(cols))})")
        if self.kind == "postgresql":
            return int(self._run(text + " RETURNING id", [values[c] for c in cols]).fetchone()[0])
        return int(self._run(text, [values[c] for c in cols]).lastrowid)

    def upsert(self, table: str, values: dict, key: tuple[str, ...], updates: dict[str, str]) -> None:
        """Insert one row, or where a row with the same unique `key` exists, set `updates`
        (column → SQL expression over `old.<column>`, the stored row, and `new.<column>`, the
        values given) in the same statement. An expression that reads a stored column must come before
        the update of that column (MariaDB assigns in order)."""
        cols = list(values)
        sets = ", ".join(f"{self.quote(c)} = {self._upsert_expression(expr)}" for c, expr in updates.items())
        self._run(f"INSERT INTO {self.table(table)}{self._upsert_alias} ({', '.join(self.quote(c) for c in cols)}) "
                  f"VALUES ({', '.join([self.db.param] * len(cols))}) "
                  + self._upsert_clause(key, sets), [values[c] for c in cols])

    def _upsert_clause(self, key: tuple[str, ...], sets: str) -> str:
        return f"ON CONFLICT ({', '.join(self.quote(c) for c in key)}) DO UPDATE SET {sets}"

    _upsert_alias = " AS old"

    def compress_fast(self, table: str, column: str) -> bool:
        """Store the large values of `column` compressed with the engine's fastest method, where it
        has a choice (PostgreSQL: lz4 rather than pglz, when the server was built with it); True
        when it changed something. Only values written afterwards are affected."""
        return False

    def _upsert_expression(self, expr: str) -> str:
        return re.sub(r"\bnew\.(\w+)", r"excluded.\1", expr)

    def insert_rows(self, table: str, columns: list[str], rows: list[tuple], chunk: int = 500) -> None:
        """Multi-row INSERT in chunks: one round trip per chunk on every engine."""
        cols = ", ".join(self.quote(c) for c in columns)
        one = "(" + ", ".join([self.db.param] * len(columns)) + ")"
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            text = f"INSERT INTO {self.table(table)} ({cols}) VALUES " + ", ".join([one] * len(part))
            self.db.execute_sql(text, [v for row in part for v in row])

    insert_returning = False  # INSERT ... RETURNING (PostgreSQL, SQLite 3.35+)
    update_returning = False  # UPDATE ... RETURNING (PostgreSQL, SQLite 3.35+; not MariaDB)
    insert_select_fill = True  # populate fills an empty company with INSERT ... SELECT batches

    def int_div(self, dividend: str, divisor: str) -> str:
        """SQL for the integer quotient of two non-negative integer expressions (truncated)."""
        return f"({dividend}) / ({divisor})"

    def reset_sequence(self, table: str) -> None:
        """After rows were inserted with explicit ids, make the next generated id follow them."""

    def analyze(self, tables: list[str]) -> None:
        """Refresh planner statistics after bulk writes (a fresh table otherwise looks empty)."""
        for table in tables:
            self.db.execute_sql(f"ANALYZE {self.table(table)}")

    # -- transactions ---------------------------------------------------------------------
    def write_transaction(self):
        """A transaction that writes; on SQLite it takes the write lock at BEGIN."""
        return self.db.atomic()

    @contextlib.contextmanager
    def locked_transaction(self, name: str, timeout: float = 10.0):
        """A write transaction that first takes a short lock on `name`, held until it ends
        (serialises e.g. one user's rate-limit admissions across processes and hosts)."""
        with self.write_transaction():
            yield

    def close(self) -> None:
        """Close this thread's connection, and its replicas' (before a fork: each process opens its own)."""
        self.db.close()
        if self.replicas:
            self.replicas.close()

    def alive(self) -> bool:
        """Whether the open connection still answers (one cheap round trip)."""
        try:
            self.db.execute_sql("SELECT 1").fetchall()
            return True
        except Exception:  # noqa: BLE001 - any failure means: replace it
            return False

    def reconnect(self) -> None:
        """Drop a connection that failed and open a new one (before retrying a unit of work)."""
        try:
            self.db.close()
        except Exception:  # noqa: BLE001 - the old connection is gone either way
            self.db._state.reset()
        self.db.connect(reuse_if_open=True)

    def transient(self, exc: BaseException) -> bool:
        """Errors worth retrying: lost connections, deadlocks, lock timeouts, busy files (a
        database's errors only: any other exception is a bug)."""
        return isinstance(exc, DATABASE_ERRORS) and self._transient(exc)

    def _transient(self, exc: BaseException) -> bool:
        return isinstance(exc, (peewee.OperationalError, peewee.InterfaceError))

    def retrying(self, unit: Callable[[], T], attempts: int, base_delay: float, what: str) -> T:
        """Run one unit of database work (a statement, or a whole transaction, which rolls back
        when it fails) up to `attempts` times: after a transient error wait base_delay × 2^(n−1),
        reconnect and run it again (sync-and-cache.md 10). The last error is raised; every retry
        is counted by RETRY_HOOKS."""
        for attempt in range(attempts):
            try:
                return unit()
            except Exception as exc:
                if not self.transient(exc) or attempt == attempts - 1:
                    raise
                log.warning("%s failed (attempt %d of %d), retrying: %s", what, attempt + 1, attempts,
                            first_line(exc))
                for hook in RETRY_HOOKS:
                    hook()
                time.sleep(base_delay * 2 ** attempt)
                try:
                    self.reconnect()
                except Exception:  # noqa: BLE001 - still down: the next attempt says so
                    pass
        raise AssertionError("attempts must be at least 1")

    # -- DDL ------------------------------------------------------------------------------
    # XMLDB → SQL type mapping of settings.md section 3: int widths (smallest length first match)
    int_types: tuple[tuple[int, str], ...] = ((1, "INTEGER"),)
    char_type, number_type, text_type = "TEXT", "NUMERIC", "TEXT"

    def column_type(self, field: dict) -> str:
        n, kind = field.get("length") or 0, field["type"]
        if kind == "int":
            return next(sql for least, sql in self.int_types if n >= least)
        if kind == "char":
            return self.char_type.format(n=n)
        if kind == "number":
            return self.number_type.format(n=n, d=field.get("decimals", 0))
        return self.text_type

    def column_sql(self, field: dict) -> str:
        if field.get("sequence"):
            return self.serial_sql(field["name"])
        parts = [self.quote(field["name"]), self.column_type(field)]
        if field.get("notnull"):
            parts.append("NOT NULL")
        if field.get("default") is not None:
            parts.append("DEFAULT " + self.literal(field["default"]))
        return " ".join(parts)

    def literal(self, value) -> str:
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        return str(value)

    def serial_sql(self, name: str) -> str:
        raise NotImplementedError

    def stored_kind(self, field: dict) -> str:
        """How the engine reports an XMLDB field's kind back (SQLite stores char as TEXT)."""
        return _kind_of(self.column_type(field))

    def table_options(self) -> str:
        return ""

    def create_table_sql(self, table: dict) -> str:
        cols = ",\n  ".join(self.column_sql(f) for f in table["fields"])
        return f"CREATE TABLE {self.table(table['name'])} (\n  {cols}\n){self.table_options()}"

    def index_name(self, table: str, index: str) -> str:
        return _hash_suffix(f"{self.prefix}{table}_{index}", self.max_identifier)

    def create_index_sql(self, table: str, index: dict) -> str:
        unique = "UNIQUE " if index.get("unique") else ""
        cols = ", ".join(self.quote(c) for c in index["fields"])
        name = self.quote(self.index_name(table, index["name"]))
        return f"CREATE {unique}INDEX {name} ON {self.table(table)} ({cols})"

    def add_column_sql(self, table: str, field: dict) -> str:
        return f"ALTER TABLE {self.table(table)} ADD COLUMN {self.column_sql(field)}"

    def widen_column_sql(self, table: str, field: dict) -> str | None:
        raise NotImplementedError

    # -- introspection --------------------------------------------------------------------
    def table_exists(self, name: str) -> bool:
        return (self.prefix + name) in set(self.db.get_tables())

    def tables(self) -> set[str]:
        return set(self.db.get_tables())

    def name_tables(self, iomad_schema: str = "auto") -> None:
        """IOMAD 4.x or 5.x table names (`[database] iomad_schema`; auto: whichever company table
        exists). `connect` calls it once, so every statement of this engine names the right tables."""
        if iomad_schema == "auto":
            present = self.tables()
            iomad_schema = "4" if self.prefix + "company" in present else \
                "5" if self.prefix + "local_iomad_companies" in present else None
        self.iomad = iomad_schema
        self.aliases = dict(IOMAD5_NAMES) if iomad_schema == "5" else {}

    int_sizes: dict[str, int] = {}
    schema_expr = ""

    def columns(self, name: str) -> dict[str, Column]:
        """Columns in table order, from information_schema (SQLite overrides this)."""
        rows = self.rows(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default, "
            "numeric_precision FROM information_schema.columns "
            f"WHERE table_schema = {self.schema_expr} AND table_name = ? ORDER BY ordinal_position",
            (self.prefix + self.aliases.get(name, name),))
        out = {}
        for col, dtype, length, nullable, default, precision in rows:
            kind = _kind_of(dtype)
            size = length if kind == "char" else self.int_sizes.get(dtype, precision)
            out[col] = Column(col, kind, size, nullable == "NO", _unquote(default))
        return out

    def indexes(self, name: str) -> list[tuple[str, tuple[str, ...], bool]]:
        """(physical name, columns, unique) of every index of the table."""
        return [(i.name, tuple(i.columns), bool(i.unique))
                for i in self.db.get_indexes(self.prefix + name)]

    # -- named locks ----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 0.0):
        """Hold the named lock for the block. Raises LockBusy if it stays taken `timeout` s.

        The lock belongs to a dedicated connection (or open file), so it is released when the
        block ends, when the holder fails, and when its process dies."""
        handle = self._acquire(name, timeout)
        try:
            yield
        finally:
            self._release(handle)

    def _acquire(self, name: str, timeout: float):
        """The lock's handle, or LockBusy after waiting up to `timeout` s on one connection (the
        server blocks: no reconnect per attempt)."""
        side = self._side_connection()
        try:
            got = self._wait_lock(side, name, timeout)
        except BaseException:
            side.close()
            raise
        if got:
            return side
        side.close()
        raise LockBusy(name)

    def _wait_lock(self, conn, name: str, timeout: float) -> bool:
        """Take the lock on `conn`, waiting up to `timeout` s; whether it was taken."""
        raise NotImplementedError

    def _release(self, handle) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def lock_set(self):
        """A `LockSet`: many named locks taken in turn without a connection each; everything it
        holds is released when the block ends."""
        locks = LockSet(self)
        try:
            yield locks
        finally:
            locks.close()

    def _try_locks(self, handle, names: list[str]) -> list[bool]:
        raise NotImplementedError

    def _unlock(self, handle, names: list[str]) -> None:
        raise NotImplementedError

    def _side_connection(self) -> peewee.Database:
        """A connection of the lock's own (to lock_url's server when set: past a pooler)."""
        target = self.locks_db or self.db
        side = type(target)(target.database, **target.connect_params)
        side.connect()
        return side

    def describe(self) -> str:
        """The URL without its password, for messages."""
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path}"


class SqliteEngine(Engine):
    kind = "sqlite"
    insert_returning = update_returning = sqlite3.sqlite_version_info >= (3, 35)
    for_update = ""  # the write transaction (BEGIN IMMEDIATE) already excludes other writers

    def write_transaction(self):
        return self.db.atomic("IMMEDIATE")

    def byte_length(self, expr):
        return f"LENGTH(CAST({expr} AS BLOB))"  # SQLite before 3.43 has no OCTET_LENGTH

    def serial_sql(self, name):
        return f"{self.quote(name)} INTEGER PRIMARY KEY AUTOINCREMENT"

    def widen_column_sql(self, table, field):
        return None  # SQLite types are not enforced: nothing to widen

    def analyze(self, tables):
        self.db.execute_sql("ANALYZE")

    def columns(self, name):
        out = {}
        for _cid, col, decl, notnull, default, pk in self.rows(f"PRAGMA table_info({self.table(name)})"):
            out[col] = Column(col, _kind_of(decl), _length_of(decl), bool(notnull or pk), _unquote(default))
        return out

    def _transient(self, exc):
        text = str(exc).lower()
        return isinstance(exc, peewee.OperationalError) and ("locked" in text or "busy" in text)

    def _lock_path(self, name: str) -> Path:
        return Path(f"{self.db.database}.{re.sub(r'[^A-Za-z0-9_.-]', '_', self.prefix + name)}.lock")

    def _acquire(self, name, timeout):
        handle = open(self._lock_path(name), "a+")
        deadline = time.monotonic() + timeout
        while True:  # flock has no timeout: poll the one open file
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return handle
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise LockBusy(name) from None
                time.sleep(min(0.05, max(0.005, deadline - time.monotonic())))

    def _release(self, handle):
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        handle.close()

    def _wait_lock(self, conn, name, timeout):
        try:
            conn[name] = self._acquire(name, timeout)  # a lock set's open lock files
            return True
        except LockBusy:
            return False

    def _try_locks(self, handle, names):
        return [self._wait_lock(handle, name, 0) for name in names]

    def _unlock(self, handle, names):
        for name in names:
            self._release(handle.pop(name))


class PostgresEngine(Engine):
    kind = "postgresql"
    insert_returning = update_returning = True

    int_types = ((10, "BIGINT"), (5, "INTEGER"), (0, "SMALLINT"))
    char_type, number_type = "VARCHAR({n})", "NUMERIC({n},{d})"
    int_sizes = {"bigint": 10, "integer": 5, "smallint": 4}
    schema_expr = "current_schema()"

    def executemany(self, text, seq):
        seq = list(seq)
        if seq:  # psycopg2's executemany is a round trip per row; execute_batch sends pages of them
            psycopg2.extras.execute_batch(self.db.cursor(), self.sql(text), seq, page_size=250)

    def serial_sql(self, name):
        return f"{self.quote(name)} BIGSERIAL PRIMARY KEY"

    def reset_sequence(self, table):
        self.execute(f"SELECT setval(pg_get_serial_sequence('{self.prefix}{self.aliases.get(table, table)}', 'id'), "
                     f"GREATEST((SELECT COALESCE(MAX(id), 0) FROM {{t:{table}}}), 1))")

    def widen_column_sql(self, table, field):
        return (f"ALTER TABLE {self.table(table)} ALTER COLUMN {self.quote(field['name'])} "
                f"TYPE {self.column_type(field)}")


    def _transient(self, exc):
        if isinstance(exc, peewee.InterfaceError):
            return True
        code = getattr(getattr(exc, "orig", None) or exc, "pgcode", None) or ""
        return isinstance(exc, peewee.OperationalError) or code in ("40001", "40P01", "55P03")

    def compress_fast(self, table, column):
        # PostgreSQL 14 and newer, built with lz4; a table the install user does not own keeps pglz
        if not self.scalar("SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
                           "AND 'lz4' = ANY(enumvals)"):
            return False
        if self.scalar("SELECT attcompression FROM pg_attribute WHERE attrelid = CAST(? AS regclass) AND attname = ?",
                       (self.table(table), column)) == "l":
            return False
        try:
            with self.db.atomic():
                self.db.execute_sql(f"ALTER TABLE {self.table(table)} ALTER COLUMN {self.quote(column)} "
                                    "SET COMPRESSION lz4")
        except peewee.DatabaseError as exc:
            log.warning("cache pages keep the default compression: %s", first_line(exc))
            return False
        return True

    @contextlib.contextmanager
    def locked_transaction(self, name, timeout=10.0):
        with self.db.atomic():  # one round trip: the timeout is set (for this transaction) before the wait
            self.execute("SELECT set_config('lock_timeout', ?, true), pg_advisory_xact_lock(?)",
                         (f"{int(timeout * 1000)}ms", self._lock_key(name)))
            yield

    def _lock_key(self, name: str) -> int:
        digest = hashlib.sha256((self.prefix + name).encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _wait_lock(self, conn, name, timeout):
        key = self._lock_key(name)
        if timeout <= 0:
            return conn.execute_sql("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        # the server waits; lock_timeout ends the wait with 55P03 (and no statement_timeout of the
        # user's cuts it short: a wait that ends is busy, never a failure)
        conn.execute_sql(f"SET lock_timeout = '{max(1, int(timeout * 1000))}ms'")
        conn.execute_sql("SET statement_timeout = 0")
        try:
            return conn.execute_sql("SELECT pg_advisory_lock(%s)", (key,)).fetchone() is not None
        except peewee.OperationalError as exc:
            if getattr(getattr(exc, "orig", None) or exc, "pgcode", None) != "55P03":
                raise
            return False
        finally:
            conn.execute_sql("SET lock_timeout = 0")

    def _release(self, handle):
        handle.close()  # closing the session releases its advisory locks

    def _try_locks(self, handle, names):
        keys = [self._lock_key(n) for n in names]
        got = dict(handle.execute_sql("SELECT k, pg_try_advisory_lock(k) FROM unnest(%s::bigint[]) k",
                                      (keys,)).fetchall())
        return [bool(got[k]) for k in keys]

    def _unlock(self, handle, names):
        handle.execute_sql("SELECT pg_advisory_unlock(k) FROM unnest(%s::bigint[]) k",
                           ([self._lock_key(n) for n in names],)).fetchall()


class MariaEngine(Engine):
    kind = "mariadb"
    max_identifier = 64

    def _upsert_clause(self, key, sets):
        return f"ON DUPLICATE KEY UPDATE {sets}"

    _upsert_alias = ""

    def _upsert_expression(self, expr):
        return re.sub(r"\bold\.(\w+)", r"\1", re.sub(r"\bnew\.(\w+)", r"VALUES(\1)", expr))

    def quote(self, name):
        return f"`{name}`"

    int_types = ((10, "BIGINT"), (5, "INT"), (3, "SMALLINT"), (0, "TINYINT"))
    char_type, number_type, text_type = "VARCHAR({n})", "DECIMAL({n},{d})", "LONGTEXT"
    int_sizes = {"bigint": 10, "int": 5, "mediumint": 5, "smallint": 4, "tinyint": 2}
    schema_expr = "DATABASE()"

    def serial_sql(self, name):
        return f"{self.quote(name)} BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY"

    def analyze(self, tables):
        for table in tables:
            self.db.execute_sql(f"ANALYZE TABLE {self.table(table)}").fetchall()

    def int_div(self, dividend, divisor):
        return f"({dividend}) DIV ({divisor})"

    def table_options(self):
        return " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"

    def widen_column_sql(self, table, field):
        return f"ALTER TABLE {self.table(table)} MODIFY COLUMN {self.column_sql(field)}"

    def index_name(self, table, index):
        return _hash_suffix(f"{self.prefix}{table}_{index}", 63)


    def _transient(self, exc):
        if isinstance(exc, peewee.InterfaceError):
            return True
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        return code in (1205, 1213, 2002, 2003, 2006, 2013, 2055) or (
            isinstance(exc, peewee.OperationalError) and code >= 2000)

    @contextlib.contextmanager
    def locked_transaction(self, name, timeout=10.0):
        lock = self._lock_name(name)
        if self.scalar("SELECT GET_LOCK(?, ?)", (lock, int(max(timeout, 1)))) != 1:
            raise peewee.OperationalError(1205, f"lock wait timeout on {name}")
        try:
            with self.db.atomic():
                yield
        finally:
            self.execute("SELECT RELEASE_LOCK(?)", (lock,))

    def _lock_name(self, name: str) -> str:
        full = f"{self.db.database}{self.prefix}{name}"
        return full if len(full) <= 64 else hashlib.sha256(full.encode()).hexdigest()

    def _wait_lock(self, conn, name, timeout):
        # the server waits up to the timeout (fractions of a second allowed), uncut by max_statement_time
        if timeout > 0:
            conn.execute_sql("SET SESSION max_statement_time = 0")
        return conn.execute_sql("SELECT GET_LOCK(%s, %s)", (self._lock_name(name), max(0.0, timeout))).fetchone()[0] == 1

    def _release(self, handle):
        handle.close()  # a closed session frees its GET_LOCK locks

    def _try_locks(self, handle, names):
        row = handle.execute_sql("SELECT " + ", ".join(["GET_LOCK(%s, 0)"] * len(names)),
                                 [self._lock_name(n) for n in names]).fetchone()
        return [value == 1 for value in row]

    def _unlock(self, handle, names):
        handle.execute_sql("SELECT " + ", ".join(["RELEASE_LOCK(%s)"] * len(names)),
                           [self._lock_name(n) for n in names]).fetchone()


def _kind_of(decl: str) -> str:
    decl = (decl or "").lower()
    if "int" in decl:
        return "int"
    if "char" in decl:
        return "char"
    if "numeric" in decl or "decimal" in decl:
        return "number"
    return "text"


def _length_of(decl: str) -> int | None:
    match = re.search(r"\((\d+)", decl or "")
    return int(match.group(1)) if match else None


def _unquote(default):
    if default is None:
        return None
    text = str(default)
    text = re.sub(r"::[\w ]+(\(\d+\))?$", "", text)  # PostgreSQL casts: 'x'::character varying
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text.upper() == "NULL":
        return None
    return text


_URL_OWNED = {"host", "hostaddr", "port", "dbname", "database", "user", "password"}


def _libpq_parameters(url: str, query: str) -> dict[str, str]:
    """A PostgreSQL URL's query parameters as libpq connection keywords; what the URL's own parts
    say (host, port, database, user, password) and anything libpq does not know are refused."""
    given = dict(parse_qsl(query, keep_blank_values=True))
    owned = sorted(_URL_OWNED & set(given))
    if owned:
        raise ConfigError(f"Invalid database URL '{mask_urls(url)}': {', '.join(owned)} belong in the URL itself, "
                          "not in its query")
    try:
        psycopg2.extensions.parse_dsn(psycopg2.extensions.make_dsn(**given))
    except psycopg2.ProgrammingError as exc:
        raise ConfigError(f"Invalid database URL '{mask_urls(url)}': {first_line(exc)}") from None
    return given


def connect(url: str, prefix: str = "mdl_", *, check: bool = True, create: bool = False,
            iomad_schema: str = "auto", lock_url: str = "") -> Engine:
    """Open the database a URL names, with IOMAD's table names of `iomad_schema` (see
    Engine.name_tables). Raises ConfigError with one clear line on failure.

    `lock_url`: the same database reached directly, for the named locks' own connections, when
    `url` goes through a pooler that hands a connection to another client after each transaction
    (PgBouncer's transaction pooling): a session's lock must stay on one server session.

    An SQLite file must already exist unless `create` is set (only the demo-site generator
    creates databases), so a mistyped path never leaves an empty file behind."""
    parts = urlsplit(url)
    kind = SCHEMES.get(parts.scheme.lower())
    if kind is None:
        raise ConfigError(f"Unsupported database URL '{mask_urls(url)}': use sqlite:///path, "
                          "postgresql://user:pass@host:5432/db or mariadb://user:pass@host:3306/db")
    if not re.fullmatch(r"[a-z0-9_]*", prefix):
        raise ConfigError(f"Invalid value for [database] prefix: expected lower-case letters, digits "
                          f"and underscores, got '{prefix}'")
    if kind == "sqlite":
        path = unquote(url.split("://", 1)[1])
        path = path[1:] if path.startswith("/") else path  # sqlite:///rel, sqlite:////abs
        if not path:
            raise ConfigError(f"Invalid database URL '{url}': no file path")
        if check and path != ":memory:" and not Path(path).parent.exists():
            raise ConfigError(f"Cannot open the database {url}: folder {Path(path).parent} does not exist")
        if check and not create and path != ":memory:" and not Path(path).exists():
            raise ConfigError(f"Cannot open the database {url}: file {path} does not exist")
        db = peewee.SqliteDatabase(path, timeout=5, pragmas={"journal_mode": "wal", "busy_timeout": 5000,
                                                              "synchronous": "normal"})
        engine: Engine = SqliteEngine(db, url, prefix)
    else:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ConfigError(f"Invalid database URL '{mask_urls(url)}': no database name")
        params = {"host": parts.hostname or "localhost", "user": unquote(parts.username or "") or None,
                  "password": unquote(parts.password or "") or None}
        if kind == "postgresql":  # query parameters are libpq's (sslmode, sslrootcert, options, …)
            params["port"] = parts.port or 5432
            params.update(_libpq_parameters(url, parts.query))
            db = peewee.PostgresqlDatabase(name, **{k: v for k, v in params.items() if v is not None})
            engine = PostgresEngine(db, url, prefix)
        else:
            if parts.query:
                raise ConfigError(f"Invalid database URL '{mask_urls(url)}': query parameters are only read in "
                                  "PostgreSQL URLs")
            params["port"] = parts.port or 3306
            params["password"] = params["password"] or ""
            db = peewee.MySQLDatabase(name, charset="utf8mb4", **{k: v for k, v in params.items() if v is not None})
            engine = MariaEngine(db, url, prefix)
    if lock_url:
        locks = connect(lock_url, prefix, check=False)
        if engine.kind != "postgresql" or locks.kind != "postgresql":
            raise ConfigError("[database] lock_url is for PostgreSQL behind PgBouncer's transaction pooling: "
                              f"the same PostgreSQL database as url, directly (got '{mask_urls(lock_url)}')")
        engine.locks_db = locks.db
    if check:
        try:
            engine.db.connect(reuse_if_open=True)
        except Exception as exc:  # driver errors vary; the first line says enough
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"Cannot connect to the database {engine.describe()}: {first}") from exc
        if lock_url:
            _check_lock_space(engine, lock_url)
    if check or iomad_schema != "auto":  # detection needs the connection; a named schema does not
        engine.name_tables(iomad_schema)
    return engine


def _check_lock_space(engine: Engine, lock_url: str) -> None:
    """lock_url reaches a primary whose locks the connections of url see: a lock taken there makes
    the same lock busy through url (another database, a standby or the pooler itself would not)."""
    try:
        side = engine._side_connection()
    except Exception as exc:
        raise ConfigError(f"Cannot connect to [database] lock_url '{mask_urls(lock_url)}': {first_line(exc)}") from exc
    try:
        if side.execute_sql("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise ConfigError(f"[database] lock_url '{mask_urls(lock_url)}' is a standby: name the primary")
        key = int.from_bytes(secrets.token_bytes(8), "big", signed=True)
        side.execute_sql("SELECT pg_advisory_lock(%s)", (key,))
        try:
            with engine.db.atomic():
                seen = not engine.db.execute_sql("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0]
        finally:  # released, not left to the session's end: through a pooler that session lives on
            side.execute_sql("SELECT pg_advisory_unlock(%s)", (key,))
        if not seen:
            raise ConfigError(f"[database] lock_url '{mask_urls(lock_url)}' does not reach the database url names "
                              "directly (a lock taken through it is not seen through url)")
    finally:
        side.close()


def sqlite_file(url: str) -> str | None:
    """The file of an sqlite URL, else None."""
    if not url.startswith("sqlite:"):
        return None
    path = unquote(url.split("://", 1)[1])
    return path[1:] if path.startswith("/") else path

