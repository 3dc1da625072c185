"""Populate: the full company sync of tasks.md section 6 with progress (section 10)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from local_alx_report_api.classes import company_runner, company_state, replica_reads, sync
from local_alx_report_api.classes.detection import Site
from local_alx_report_api.classes.progress import Scope, pairs_bound
from local_alx_report_api.classes.reporting import INF, Batch, Counts, full_sync, purge_cache
from moodle_core.engines import Engine, first_line
from moodle_core.moodle import Company


@dataclass
class PopulateProgress:
    """The progress record of tasks.md 10.3 (also what a populate job stores)."""

    companies_total: int
    companies_done: int = 0
    current: dict | None = None
    totals: Counts = field(default_factory=Counts)
    percent: float = 0.0
    started: float = field(default_factory=time.time)
    elapsed: float = 0.0
    eta_seconds: float | None = None
    errors: list[dict] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)

    def note(self, level: str, message: str, now: float | None = None) -> None:
        self.log.append({"time": int(now or time.time()), "level": level, "message": message})
        del self.log[:-200]

    def update(self) -> None:
        fraction = self.companies_done
        if self.current and self.current["total"]:
            fraction += min(1.0, self.current["processed"] / self.current["total"])
        percent = round(fraction / max(self.companies_total, 1) * 100, 1)
        self.percent = max(self.percent, percent)
        self.elapsed = time.time() - self.started
        done = fraction / max(self.companies_total, 1)
        self.eta_seconds = (self.elapsed / done - self.elapsed) if done > 0 else None

    def as_dict(self) -> dict:
        return {"companies_total": self.companies_total, "companies_done": self.companies_done,
                "current": self.current, **self.totals.as_dict(), "percent": self.percent,
                "started": int(self.started), "elapsed": round(self.elapsed, 1),
                "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
                "errors": self.errors, "log": self.log}


def _summary(counts: Counts) -> str:
    return (f"inserted {counts.inserted}, updated {counts.updated}, reactivated {counts.reactivated}, "
            f"deleted {counts.deleted}, unchanged {counts.unchanged}")


def populate(engine: Engine, companies: list[Company], *, batch_size: int, report_roles: list[str],
             now: Callable[[], int], lock_wait: float,
             emit: Callable[[str, str], None] = lambda level, text: None,
             on_progress: Callable[[PopulateProgress], None] = lambda p: None,
             should_stop: Callable[[], bool] = lambda: False) -> PopulateProgress:
    """Populate the given companies in ascending id. `emit(level, line)` reports each event."""
    state = PopulateProgress(len(companies))

    def say(level: str, text: str) -> None:
        state.note(level, text)
        emit(level, text)

    say("info", f"Populating {len(companies)} compan{'y' if len(companies) == 1 else 'ies'}, batch size {batch_size}")
    with replica_reads.reading(engine) as live:  # Moodle's tables, as the primary holds them now or later
        started, site = now(), Site.read(live)  # what a completed company's sync runs go on from
    locks, completed = engine.lock_set(), {}

    def step(company: Company) -> company_runner.Outcome:
        def work() -> tuple[bool, dict]:
            # Moodle's tables as the primary holds them now that the company is locked: no sync
            # of it since the populate began can have seen a newer state than this company's read
            with replica_reads.reading(engine) as live:
                return _populate_company(engine, live, company, state, batch_size, report_roles, now, say,
                                         on_progress, should_stop, site, started, completed), {}

        outcome = company_runner.run(engine, company, work, what="populate", lock_wait=lock_wait, locks=held)
        if outcome.error:
            message = first_line(outcome.exception) if outcome.exception else outcome.error
            state.errors.append({"companyid": company.id, "message": message})
            say("error", f"{outcome.label}: {message}; skipped" if outcome.status == "busy" else
                f"{outcome.label}: failed: {message}")
        if outcome.status != "stopped":  # stopped after a committed batch: the company is not done
            state.companies_done += 1
            state.current = None
            state.update()
            on_progress(state)
        return outcome

    with locks as held:  # one connection for every company's lock
        for _ in company_runner.each(sorted(companies, key=lambda c: c.id), step, should_stop=should_stop):
            pass
        sync.settle_prints(engine, completed, held)
    if state.totals.inserted:
        engine.analyze(["local_alx_api_reporting"])
    t = state.totals
    complete = state.companies_done == state.companies_total
    say("success" if not state.errors and complete else "warning",
        f"{'Finished' if complete else 'Stopped'}: {state.companies_done} "
        f"compan{'y' if state.companies_done == 1 else 'ies'}, {t.checked} pairs "
        f"checked, {t.inserted} inserted, {t.updated} updated, {t.reactivated} reactivated, {t.deleted} deleted, "
        f"{t.unchanged} unchanged in {time.time() - state.started:.1f} s, {len(state.errors)} errors")
    return state


def _populate_company(engine, live, company, state, batch_size, report_roles, now, say, on_progress, should_stop,
                      site: Site, began: int, scopes: dict) -> bool:
    """Populate one company; False when `should_stop` ended it before its last batch. `site` and
    `began`: the populate's snapshot and its time, which a completed company's sync runs go on
    from; `scopes` gains the company's scope when it completes."""
    started = time.time()
    label = company_runner.label(company)
    scope = Scope.load(live, company.id, report_roles)
    walk = sync.full_walk(site, scope, began, company_state.current(engine, company.id))
    purge_cache(engine, company.id)
    company_state.ensure(engine, company.id, now())
    total = pairs_bound(live, scope)  # an estimate, for progress
    if not scope.courses and total == 0:
        say("warning", f"{label} has no courses in scope; skipped.")
        return True
    state.current = {"id": company.id, "shortname": company.shortname, "total": total, "processed": 0}
    say("company", f"{label}: {total} pairs to check")
    counts = Counts()

    def on_batch(batch: Batch) -> None:
        counts.add(batch.counts)
        state.totals.add(batch.counts)
        state.current["processed"] = counts.checked
        state.update()
        pct = counts.checked / total * 100 if total else 100.0
        say("info", f"{label}: {counts.checked}/{total} ({pct:.1f}%) {_summary(counts)}")
        on_progress(state)

    _, after = full_sync(engine, scope, now(), batch_size, on_batch=on_batch, should_stop=should_stop, live=live)
    purge_cache(engine, company.id)
    if after != INF:
        say("warning", f"{label}: stopped after {counts.checked}/{total} pairs: {_summary(counts)}")
        return False
    sync.adopt_full_walk(engine, company.id, walk, counts.changed, now())
    scopes[company.id] = scope
    say("success", f"{label}: done in {time.time() - started:.1f} s: {_summary(counts)}")
    return True
