"""Which server a read goes to when [database] replica_urls names replicas (docs/scaling.md,
decision 135): a company's report rows (and its cached pages) go to a replica that holds the
version the request read on the primary; Moodle's live tables go to a replica that has replayed
what the primary had written when the read began. Everything else (pull state, rate-limit
counts, token checks, locks, cache writes, every write) stays on the primary."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

from local_alx_report_api.classes import company_state
from moodle_core.engines import DATABASE_ERRORS, Engine

T = TypeVar("T")


def on_replica(engine: Engine, read: Callable[[Engine], T], fits: Callable[[Engine], bool] = lambda _: True
               ) -> tuple[T, bool]:
    """(`read(server)`, whether a replica served it): on the first usable replica that `fits`,
    else on the primary. A replica whose read fails is left for the primary."""
    replicas = engine.replicas
    for replica in replicas.usable() if replicas else ():
        try:
            if fits(replica):
                return read(replica), True
        except DATABASE_ERRORS as exc:
            replicas.failed(replica, exc)
    return read(engine), False


def company_rows(engine: Engine, companyid: int, version: int, read: Callable[[Engine], T]) -> tuple[T, bool]:
    """`on_replica` for a company's report rows: a replica serves when its copy of the company's
    change counter is at `version` or later. Every write of the company's rows moves the counter
    in the same transaction, and the counter never goes back, so the replica then holds what the
    primary held at `version` or newer: what a read on the primary gives (a page is never older
    than its cache key says, nor than the pull's `until`)."""
    return on_replica(engine, read, lambda replica: company_state.current(replica, companyid) >= version)


@contextlib.contextmanager
def reading(engine: Engine, chosen: Engine | None = None):
    """A task's unit of work that reads Moodle's tables: yields where (`chosen`, else a new
    choice of `live` with task=True). When a database error ends it and that is a replica that no
    longer answers, the replica is left (marked down) so that the next unit reads elsewhere; the
    error goes on to the caller (the company's run fails, and is retried at the next run)."""
    source = chosen or live(engine, task=True)
    try:
        yield source
    except DATABASE_ERRORS as exc:
        if source is not engine and engine.replicas and not source.alive():
            engine.replicas.failed(source, exc)
        raise


def still_live(engine: Engine, chosen: Engine) -> Engine:
    """`chosen` while it is the primary or a replica still fit, else a new choice (`live` with
    task=True: never older than the primary now, so never older than what `chosen` gave)."""
    if chosen is engine or chosen in (engine.replicas.usable() if engine.replicas else ()):
        return chosen
    return live(engine, task=True)


def live(engine: Engine, *, task: bool = False) -> Engine:
    """Where to read Moodle's live tables: a replica that has replayed everything the primary had
    written by now, else the primary. A task (`task`) waits for one up to the replicas'
    `task_wait`; a request does not wait."""
    replicas = engine.replicas
    return replicas.caught_up(replicas.task_wait if task else 0.0) if replicas else engine
