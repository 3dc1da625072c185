"""Which server a read goes to when [database] replica_urls names replicas (docs/scaling.md):
a company's report rows go to a replica that holds the version the request read on the primary;
Moodle's live tables go to a replica that has replayed what the primary had written when the
read began. Everything else (pull state, rate-limit counts, locks, the cache, writes) stays on
the primary."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from local_alx_report_api.classes import company_state
from moodle_core.engines import DATABASE_ERRORS, Engine

T = TypeVar("T")


def company_rows(engine: Engine, companyid: int, version: int, read: Callable[[Engine], T]) -> tuple[T, bool]:
    """(`read(server)`, whether a replica served it). A replica serves when its copy of the
    company's change counter is at `version` or later: every write of the company's rows moves
    the counter in the same transaction, so it then holds what the primary held at `version` or
    newer, which is what a read on the primary gives (a page is never older than its cache key
    says, nor than the pull's `until`). A replica that fails is left for the primary."""
    replicas = engine.replicas
    for replica in replicas.usable() if replicas else ():
        try:
            if company_state.current(replica, companyid) >= version:
                return read(replica), True
        except DATABASE_ERRORS as exc:
            replicas.failed(replica, exc)
    return read(engine), False


def live(engine: Engine, *, task: bool = False) -> Engine:
    """Where to read Moodle's live tables: a replica that has replayed everything the primary had
    written by now, else the primary. A task (`task`) waits for one up to the replicas'
    `task_wait`; a request does not wait."""
    replicas = engine.replicas
    return replicas.caught_up(replicas.task_wait if task else 0.0) if replicas else engine
