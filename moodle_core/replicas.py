"""Read replicas (`[database] replica_urls`, PostgreSQL streaming standbys): whether one is fit
to take a read, and which.

A replica is checked at most every `check_every` seconds per process (two cheap statements): it
is `ok` when it answers, is a standby and lags at most `max_lag` seconds, else `lagging` or
`down`, and is then left alone until the next check (reads go to the primary; the health check
and an alert say so; the next good check takes it back). A read on a replica that fails marks it
down at once and is answered by the primary.

What a lagging replica may serve is decided by the caller, exactly, not by the lag estimate:
- Moodle's live tables (sync detection, populate, the live fallback): `caught_up` gives a replica
  only once it has replayed the primary's WAL up to the position read first, so what it reads is
  never older than what the primary held at that moment (a sync run never writes back an older
  state than a run before it saw).
- A company's reporting rows: the plugin reads the company's change counter on the replica and
  uses it only when it holds the version the request read on the primary (the cache key's)."""

from __future__ import annotations

import collections
import itertools
import logging
import re
import threading
import time
from dataclasses import dataclass

from moodle_core import engines
from moodle_core.config import ConfigError, mask_urls
from moodle_core.engines import DATABASE_ERRORS, Engine, first_line

log = logging.getLogger("alx_report_api.db")
# a standby shares its primary's system identifier; the database name tells the site
_IDENTITY = "SELECT (SELECT system_identifier FROM pg_control_system())::text, current_database()"


def lsn(text: str | None) -> int:
    """A PostgreSQL WAL position ('16/B374D848') as a number (None: none)."""
    if not text:
        return -1
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass
class Replica:
    engine: Engine
    status: str = "unknown"  # ok | lagging | down | unknown (not checked yet)
    lag: float | None = None  # seconds behind the primary (0: caught up), as last checked
    error: str | None = None
    checked: float = float("-inf")  # time.monotonic() of the last check
    behind_until: float = float("-inf")  # caught_up waited in vain: not waited for again before this

    def describe(self) -> dict:
        return {"url": self.engine.describe(), "status": self.status,
                "lag_seconds": None if self.lag is None else round(self.lag, 3), "error": self.error}


class Replicas:
    """The primary's replicas, as one process sees them."""

    def __init__(self, primary: Engine, engines: list[Engine], *, max_lag: float = 30.0, check_every: float = 5.0,
                 task_wait: float = 2.0):
        self.primary = primary
        self.task_wait = task_wait  # seconds a task waits for a replica to replay what the primary holds
        self._identity: tuple | None = None  # the primary's cluster and database (_IDENTITY)
        self._seen: collections.deque[tuple[float, int]] = collections.deque()  # (when, the primary's position)
        self.all = [Replica(e) for e in engines]
        self.max_lag, self.check_every = max_lag, check_every
        self._turn = itertools.count()
        self._checking = threading.Lock()  # one thread of a process checks at a time (gthread workers)
        for replica in self.all:
            replica.engine.retry_attempts = 1  # a failed read goes to the primary at once (see failed)

    def __bool__(self) -> bool:
        return bool(self.all)

    def usable(self) -> list[Engine]:
        """The replicas fit to take reads now, starting with a different one each call (reads
        spread over them); each is checked again when its last check is older than check_every."""
        return [r.engine for r in self._fit()]

    def _fit(self) -> list[Replica]:
        if not self.all:
            return []
        now = time.monotonic()
        due = [r for r in self.all if now - r.checked >= self.check_every]
        if due and self._checking.acquire(blocking=False):  # another thread checking: its last states serve
            try:
                for replica in due:
                    self._check(replica)
            finally:
                self._checking.release()
        fit = [r for r in self.all if r.status == "ok"]
        for replica in fit:  # the site's table names, as the primary has them now
            replica.engine.aliases, replica.engine.iomad = self.primary.aliases, self.primary.iomad
        if len(fit) > 1:
            start = next(self._turn) % len(fit)
            fit = fit[start:] + fit[:start]
        return fit

    def failed(self, engine: Engine, exc: BaseException) -> bool:
        """A read on this replica failed (the caller reads the primary instead): down until its
        next check. When this thread's connection had dropped (the replica restarted) and a new
        one answers, it is not down: True (the connection was reopened)."""
        for replica in self.all:
            if replica.engine is engine:
                conn = engine.db._state.conn
                if conn is None or getattr(conn, "closed", 0):  # the link broke, not the server's answer
                    try:
                        engine.reconnect()
                        if engine.alive():
                            return True
                    except Exception:  # noqa: BLE001 - it does not answer: down
                        engine.db._state.reset()
                log.warning("replica %s failed, reads go to the primary: %s", engine.describe(), first_line(exc))
                replica.status, replica.error, replica.checked = "down", first_line(exc), time.monotonic()
        return False

    def close(self) -> None:
        """Close this thread's replica connections (before a fork, as the primary's)."""
        for replica in self.all:
            replica.engine.db.close()

    def check(self) -> list[dict]:
        """Check every replica now (health check, alerts); their states as dicts."""
        with self._checking:
            for replica in self.all:
                self._check(replica)
        return [r.describe() for r in self.all]

    def caught_up(self, wait: float = 0.0) -> Engine:
        """A replica that has replayed everything the primary had written when this was called
        (waiting up to `wait` seconds for one), else the primary."""
        started = time.monotonic()
        waiting = [r for r in self._fit() if r.behind_until <= started]
        if not waiting:
            return self.primary
        try:
            target = self._position()
        except DATABASE_ERRORS:
            return self.primary  # its own error is met where the read is made
        while waiting:
            for replica in waiting:
                try:
                    if lsn(replica.engine.scalar("SELECT pg_last_wal_replay_lsn()")) >= target:
                        return replica.engine
                except DATABASE_ERRORS as exc:
                    self.failed(replica.engine, exc)
            waiting = [r for r in waiting if r.status == "ok"]
            if time.monotonic() - started >= wait:
                if wait > 0:  # waited in vain: not waited for again before its next check
                    for replica in waiting:
                        replica.behind_until = time.monotonic() + self.check_every
                break
            time.sleep(0.01)
        return self.primary

    def _position(self) -> int:
        """The primary's WAL insert position: past every record it has made, committed or
        visible, flushed or not (in a savepoint: a failure leaves the caller's transaction whole)."""
        with self.primary.db.atomic():
            return lsn(self.primary.scalar("SELECT pg_current_wal_insert_lsn()"))

    def _check(self, replica: Replica) -> None:
        """The primary's WAL position first, then the replica's: caught up (lag 0) when it has
        replayed that far. Otherwise its lag is at most the time since the primary stood where the
        replica stands (from the positions earlier checks saw) and at most the age of the last
        transaction it replayed; the smaller of the two is taken."""
        now = replica.checked = time.monotonic()
        try:
            target = self._position()
        except DATABASE_ERRORS:
            return  # the primary's own trouble: the replica's state stays as it was
        if self._identity is None:
            try:
                with self.primary.db.atomic():  # a savepoint inside the caller's transaction
                    self._identity = tuple(self.primary.rows(_IDENTITY)[0])
            except DATABASE_ERRORS as exc:
                replica.status, replica.lag = "down", None
                replica.error = (f"cannot tell whether it is a copy of the primary: {first_line(exc)} (grant "
                                 "EXECUTE ON FUNCTION pg_control_system() to the service's user)")
                return
        self._seen.append((now, target))
        while self._seen and now - self._seen[0][0] > 3 * self.max_lag:
            self._seen.popleft()
        for attempt in (1, 2):  # a second time on a connection reopened after a drop
            try:
                standby, replayed, age, *identity = replica.engine.rows(
                    "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text, "
                    "EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()), "
                    + _IDENTITY.removeprefix("SELECT "))[0]
                break
            except DATABASE_ERRORS as exc:
                if not self.failed(replica.engine, exc) or attempt == 2:
                    replica.status, replica.error, replica.checked = "down", first_line(exc), now
                    return
        problem = ("not a copy of the primary's database (another cluster or database)"
                   if tuple(identity) != tuple(self._identity) else
                   None if standby else "not a standby (promoted, or the primary itself)")
        if problem:
            replica.status, replica.lag, replica.error = "down", None, problem
            return
        bounds = [now - t for t, position in self._seen if position <= lsn(replayed)]
        bounds += [float(age)] if age is not None else []
        replica.lag = min(bounds) if bounds else None
        before = replica.status
        if replica.lag is not None and replica.lag <= self.max_lag:
            replica.status, replica.error = "ok", None
        else:
            replica.status = "lagging"
            replica.error = (f"{replica.lag:.0f} s behind the primary (limit {self.max_lag:g} s)"
                             if replica.lag is not None else "has replayed nothing since it started")
        if before in ("down", "lagging") and replica.status == "ok":
            log.info("replica %s recovered; reads go to it again", replica.engine.describe())
        elif replica.status == "lagging" and before != "lagging":
            log.warning("replica %s %s; reads go to the primary", replica.engine.describe(), replica.error)


def connect_site(database, *, web: bool = False, **options) -> Engine:
    """The site's database as the [database] settings section names it: the primary
    (engines.connect with url, prefix, iomad_schema, lock_url) and its replica_urls. A command
    refuses a replica that answers and is not a copy of the site's database; the web app (`web`,
    a gunicorn worker starting after `serve` checked them) must not die of a replica, and bounds
    its replica reads (REQUEST_STATEMENT_TIMEOUT_MS; a task's long reads are not cut)."""
    engine = engines.connect(database.url, database.prefix, iomad_schema=database.iomad_schema,
                             lock_url=database.lock_url, **options)
    return attach(engine, database.replica_urls, max_lag=database.replica_max_lag,
                  check=not web and options.get("check", True),
                  statement_timeout_ms=REQUEST_STATEMENT_TIMEOUT_MS if web else None)


REQUEST_STATEMENT_TIMEOUT_MS = 30000  # a page a standby cannot finish (a replayed lock) goes to the primary
_GLUED = re.compile(r"(postgres|postgresql|mariadb|mysql|sqlite)://", re.IGNORECASE)


def attach(engine: Engine, urls: list[str], *, max_lag: float = 30.0, check: bool = True,
           statement_timeout_ms: int | None = None) -> Engine:
    """Give `engine` (the primary) its replicas, PostgreSQL standbys of the same database. One
    that cannot be reached, or is not (or no longer) a standby, is not an error: it is reported,
    and reads go to the primary until it is a standby that answers. With `check`, one that
    answers and is a copy of another cluster or database stops the command in one line.
    `statement_timeout_ms`: of the replica sessions (the web app's), unless the URL's `options`
    set one."""
    for url in urls:
        if re.search(r"\s", url) or _GLUED.search(url, url.find("://") + 3):
            raise ConfigError(f"[database] replica_urls: '{mask_urls(url)}' is not one URL (separate URLs with "
                              "commas)")
    others = [engines.connect(u, engine.prefix, check=False) for u in urls]
    if others and (engine.kind != "postgresql" or any(o.kind != "postgresql" for o in others)):
        raise ConfigError("[database] replica_urls are PostgreSQL standbys of a PostgreSQL url (got "
                          f"{', '.join(repr(mask_urls(u)) for u in urls)} for a {engine.kind} url)")
    for other in others:  # an unreachable, vanished or stuck standby must not hold a request up for long
        params = other.db.connect_params
        for key, value in dict(connect_timeout=3, keepalives=1, keepalives_idle=5, keepalives_interval=2,
                               keepalives_count=3, tcp_user_timeout=10000).items():
            params.setdefault(key, value)
        if statement_timeout_ms and "statement_timeout" not in params.get("options", ""):
            params["options"] = f"{params.get('options', '')} -c statement_timeout={statement_timeout_ms}".strip()
    engine.replicas = Replicas(engine, others, max_lag=max_lag)
    if check:
        for state in engine.replicas.check():
            if state["error"] and state["error"].startswith("not a copy"):
                raise ConfigError(f"[database] replica_urls: {state['url']} is {state['error']}")
    return engine
