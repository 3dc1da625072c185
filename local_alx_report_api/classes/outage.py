"""Long-running work through database outages (issue 14): the cron runner's passes and job polls
keep going while the database is away, back off, say one line when the database goes and one
when it comes back, and raise the `database` alert (monitoring.md 3, condition 10) as soon as
the database can store it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from local_alx_report_api.classes import alerts
from moodle_core.engines import Engine, first_line

log = logging.getLogger("alx_report_api.outage")


class OutageGuard:
    """Runs units of work; a database error starts an outage: the next tries wait 1, 2, 4 … up to
    `max_delay` seconds, each reconnecting first; the first success ends it. A bug (any other
    exception) is logged with its traceback and the runner goes on."""

    def __init__(self, engine: Engine, settings, clock: Callable[[], int], *, base_delay: float = 1.0,
                 max_delay: float = 60.0, monotonic: Callable[[], float] = time.monotonic):
        self.engine, self.settings, self.clock = engine, settings, clock
        self.base_delay, self.max_delay, self.monotonic = base_delay, max_delay, monotonic
        self.down_since: int | None = None  # wall clock of the first failure
        self.error = ""
        self.delay, self.retry_at = base_delay, 0.0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def run(self, work: Callable[[], object], what: str) -> None:
        if self.down:
            if self.monotonic() < self.retry_at:
                return
            try:
                self.engine.reconnect()
            except Exception as exc:  # noqa: BLE001 - still away
                self._failed(exc)
                return
        try:
            work()
        except Exception as exc:
            if self.engine.transient(exc):  # the database is away (or busy): an outage
                self._failed(exc)
            else:  # a bug, or a wrong statement: logged, and sync, alerts and notifications go on
                log.exception("%s failed", what)
            return
        if self.down:
            self._recovered()

    def _failed(self, exc: BaseException) -> None:
        first = first_line(exc)
        if not self.down:
            self.down_since, self.error, self.delay = self.clock(), first, self.base_delay
            log.error("database unreachable: %s; retrying with backoff (up to every %.0f s)", first, self.max_delay)
        else:
            self.delay = min(self.delay * 2, self.max_delay)
        self.retry_at = self.monotonic() + self.delay

    def _recovered(self) -> None:
        now = self.clock()
        seconds = now - self.down_since
        log.warning("database reachable again after %d s", seconds)
        alerts.raise_alert(self.engine, self.settings, now, alert_type="database", severity="critical",
                           subject="db_connection", message=f"Database connection problem: {self.error}",
                           data={"down_since": self.down_since, "recovered": now, "seconds": seconds,
                                 "retry_attempts": self.settings.database.retry_attempts, "source": "cron"})
        self.down_since = None
