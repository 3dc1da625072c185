"""One company at a time, for every kind of per-company work (the sync task, populate, reconcile and
the jobs that run them): take the company's lock (tasks.md 3.3), run with the company named in
slow-query lines, and isolate a failure so that it never stops the other companies (ST6)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from moodle_core.engines import QUERY_COMPANY, Engine, LockBusy, LockSet
from moodle_core.moodle import Company

log = logging.getLogger(__name__)
BUSY = "company busy"


@dataclass
class Outcome:
    """How one company's work ended: `done`, `stopped` (a time limit or a stopping runner ended it
    after a committed batch; it resumes there), `busy` (its lock stayed taken) or `failed`."""

    company: Company
    status: str
    result: dict | None = None  # what the work returned (done or stopped)
    error: str | None = None  # busy or failed: why (`Type: message` of a failure)
    seconds: float = 0.0
    exception: Exception | None = None  # what failed

    @property
    def label(self) -> str:
        return label(self.company)


def label(company: Company) -> str:
    return f"Company {company.id} ({company.shortname})"


def lock_name(companyid: int) -> str:
    return f"company_{companyid}"


@contextlib.contextmanager
def _held(engine: Engine, companyid: int, lock_wait: float, locks: LockSet | None):
    if locks is None:
        with engine.lock(lock_name(companyid), timeout=lock_wait):
            yield
        return
    name = lock_name(companyid)
    if not locks.take([name], timeout=lock_wait):
        raise LockBusy(name)
    try:
        yield
    finally:
        locks.release([name])


def run(engine: Engine, company: Company, work: Callable[[], tuple[bool, dict]], *, what: str,
        lock_wait: float = 0.0, locks: LockSet | None = None) -> Outcome:
    """`work()` under the company's lock, waiting up to `lock_wait` s for it (taken from `locks`
    when a run holds a lock set: no connection of its own); it returns (complete, result). A
    failure is logged with its traceback and becomes the outcome."""
    began = time.monotonic()
    named = QUERY_COMPANY.set(company.id)
    try:
        with _held(engine, company.id, lock_wait, locks):
            complete, result = work()
    except LockBusy:
        return Outcome(company, "busy", error=BUSY, seconds=time.monotonic() - began)
    except Exception as exc:  # one company's failure never stops the others
        log.exception("%s of company %s failed", what, company.id)
        return Outcome(company, "failed", error=f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - began,
                       exception=exc)
    finally:
        QUERY_COMPANY.reset(named)
    return Outcome(company, "done" if complete else "stopped", result, seconds=time.monotonic() - began)


class each:  # noqa: N801 - used as a function: `for outcome in each(...)`
    """`step` for each company in turn, until `should_stop()` says so between companies or a
    company's work was stopped mid-way; `stopped` then tells the caller, which reports the run as
    stopped."""

    def __init__(self, companies: Iterable[Company], step: Callable[[Company], Outcome], *,
                 should_stop: Callable[[], bool]):
        self.companies, self.step, self.should_stop = companies, step, should_stop
        self.stopped = False

    def __iter__(self) -> Iterator[Outcome]:
        for company in self.companies:
            if self.should_stop():
                self.stopped = True
                return
            outcome = self.step(company)
            yield outcome
            if outcome.status == "stopped":
                self.stopped = True
                return
