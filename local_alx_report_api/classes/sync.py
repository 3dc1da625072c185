"""A sync run (tasks.md 5.2–5.6): detection once for all of the run's companies (detection.py),
then each company where something changed, under its lock: the pairs to recompute, in committed
batches that a later run can resume. The companies where nothing changed are recorded as synced
together, under their locks, in a few statements for all of them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from local_alx_report_api.classes import company_runner, company_state, detection, inline_alerts, replica_reads
from local_alx_report_api.classes.detection import CLOCK_SOURCES, SOURCES, Found, Site
from local_alx_report_api.classes.progress import Key, Scope, live_rows, pairs_bound, scope_difference, scope_keys
from local_alx_report_api.classes.reporting import INF, Counts, full_sync, purge_cache, stored_rows_for, write_batch
from moodle_core.engines import Engine, LockSet
from moodle_core.moodle import Company


@dataclass
class Plan:
    """One company's part of a run as detection left it: what its processing starts from."""

    company: Company
    row: company_state.Stored | None  # its state as read (None: no row yet); processing re-plans when it moved
    state: dict
    error: Exception | None  # the state could not be read: the company's run fails with it
    scope: Scope
    pending: dict  # the pending run: new, or continued from a stopped run
    live: Engine  # where its Moodle tables are read: a caught-up replica, or the primary
    found: Found | None = None  # None: a first (full) sync
    stored: set[Key] = field(default_factory=set)  # the stored keys of found.users
    courses: set[int] = field(default_factory=set)  # every pair of these: found or cacherev moved
    difference: set[int] | None = field(default_factory=set)  # set difference: None all, else these courses

    @property
    def idle(self) -> bool:
        """Nothing to recompute: the run only records that it looked."""
        return (self.error is None and self.found is not None and self.state.get("pending") is None
                and not (self.found.pairs or self.found.users or self.courses) and self.difference == set())


def plan(engine: Engine, companies: list[Company], *, now: int, lookback: int, report_roles: list[str],
         every: bool) -> list[Plan]:
    """Detection for these companies (`every`: they are every company of the site)."""
    with replica_reads.reading(engine) as live:  # never older than the primary now: no run undoes an earlier one
        return _plan(engine, live, companies, now=now, lookback=lookback, report_roles=report_roles, every=every)


def _plan(engine: Engine, live: Engine, companies: list[Company], *, now: int, lookback: int,
          report_roles: list[str], every: bool) -> list[Plan]:
    ids = [c.id for c in companies]
    rows = company_state.raw_states(engine, None if every else ids)
    scopes = Scope.load_all(live, ids, report_roles)
    site = Site.read(live)  # before any pair is read: a change after it is seen by the next run
    plans, bounds, prints = [], {}, {}
    for company in companies:
        row, scope = rows.get(company.id), scopes[company.id]
        seq, prints[company.id] = row.seq if row else 0, site.prints(scope)
        try:  # a damaged state fails its own company only
            state, pending, error = json.loads(row.raw if row and row.raw else "{}"), None, None
            if not isinstance(state, dict):
                raise ValueError(f"sync state of company {company.id} is not an object")
            pending = state.get("pending")
            if "cutoffs" in state:
                if pending is None:
                    cut = state["cutoffs"]
                    floor = min((int(v) for v in cut.values()), default=0)  # a source added since: the oldest
                    pending = {"from": {s: int(cut.get(s, floor)) - lookback for s in SOURCES}, "high": None,
                               "after": None, "cacherev": site.cacherev_snapshot(company.id, state.get("cacherev", {})),
                               "fp": prints[company.id], "seq": seq, "written": 0}
                start = pending["from"]
                bounds[company.id] = {s: int(start.get(s, min(int(v) for v in start.values()))) for s in SOURCES}
                pending.setdefault("fp", None)  # a run stopped before fingerprints existed: none recorded
            elif pending is None:
                pending = full_walk(site, scope, now, seq)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            state, pending, error = {}, {}, exc
            bounds.pop(company.id, None)
        plans.append(Plan(company, row, state, error, scope, pending, live))
    found, read = detection.changes(live, bounds, now)
    stored = detection.stored_of_users(engine, {cid: f.users for cid, f in found.items() if f.users})
    for p in plans:
        f = found.get(p.company.id)
        if f is None:
            continue
        try:  # a damaged state fails its own company only
            recorded = p.state.get("cacherev", {})
            p.courses = f.courses | {int(c) for c, rev in p.pending["cacherev"].items() if recorded.get(c) != rev}
            # rows written since the last run by anything else (reconcile, a course switched off): the
            # recorded fingerprints no longer describe the table
            written_elsewhere = p.state.get("seq") != (p.row.seq if p.row else 0)
            p.difference = None if written_elsewhere else detection.to_difference(p.state.get("fp"),
                                                                                     prints[p.company.id])
            if p.pending["high"] is None:  # tasks.md 5.6 step 3, the marks of this run's read
                b = bounds[p.company.id]
                p.pending["high"] = {s: now if s in CLOCK_SOURCES else min(f.seen[s], now) if s in f.seen
                                     else max(b[s] + lookback, min(read.get(s, 0), now)) for s in SOURCES}
            p.found, p.stored = f, stored.get(p.company.id, set())
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            p.error, p.courses, p.difference = exc, set(), set()
    return plans


def full_walk(site: Site, scope: Scope, started: int, seq: int) -> dict:
    """The pending record of a full company sync (tasks.md 6) starting at `started` with the
    company's counter at `seq`, with the snapshots `site` took before it: once the walk completes,
    every change before `started` is in the table, so they become the company's cutoffs and
    fingerprints (tasks.md 5.6 step 1)."""
    return {"full": True, "after": [0, 0], "started": started,
            "cacherev": site.cacherev_snapshot(scope.companyid, {}), "fp": site.prints(scope), "seq": seq,
            "written": 0}


def adopt_full_walk(engine: Engine, companyid: int, pending: dict, written: int, now: int) -> None:
    """A populate completed the company's full walk of `pending`, writing `written` rows: its sync
    runs go on from there (a first sync would walk the company once more), as after a completed
    first sync."""
    try:
        state = company_state.load(engine, companyid, now)
        last_run = state.get("last_run")  # no sync run happened: the last one's record stays
    except (ValueError, AttributeError):  # a damaged state: the company's next sync run reports it
        return
    state["pending"] = {**pending, "high": {s: pending["started"] for s in SOURCES}, "written": written}
    _finish(state, Counts(), now, time.time(), 0)
    state["last_run"] = last_run
    company_state.save(engine, companyid, state, now)


def settle_prints(engine: Engine, scopes: dict[int, Scope], locks: LockSet) -> None:
    """After a run, a job or a populate: the companies whose rows it wrote and whose inputs moved
    since its snapshot forget their fingerprints, recorded or pending (their rows may show the
    moved state; a flag flipped back later would restore the snapshot's value), so that their next
    run checks all scope."""
    if not scopes:
        return
    end = Site.read(replica_reads.live(engine, task=True))  # as the primary holds them now, or later
    held = locks.take(company_runner.lock_name(c) for c in scopes)
    try:
        for cid, row in company_state.raw_states(engine, [c for c in scopes if company_runner.lock_name(c) in held]
                                                 ).items():
            try:
                state = json.loads(row.raw or "{}")
                now_prints, moved = end.prints(scopes[cid]), False
                for holder in (state, state.get("pending") or {}):
                    if holder.get("fp") and holder["fp"] != now_prints:
                        holder["fp"], moved = None, True
            except (ValueError, TypeError, AttributeError):  # a damaged state: its next run reports it
                continue
            if moved:
                company_state.save(engine, cid, state, int(time.time()))
    finally:
        locks.release(held)


def _stored_keys(engine: Engine, companyid: int, courses: set[int]) -> set[Key]:
    sql = (f"SELECT userid, courseid FROM {{t:local_alx_api_reporting}} WHERE companyid = ? "
           f"AND courseid IN ({', '.join(str(int(c)) for c in sorted(courses))})")
    return {(int(u), int(c)) for u, c in engine.rows(sql, (companyid,))}


def run_company(engine: Engine, p: Plan, *, now: int, batch_size: int, out_of_time: Callable[[], bool],
                on_batch: Callable[[Counts, int, int], None] | None = None) -> dict:
    """Process one company's plan (the caller holds its lock). Returns its last_run record.

    `on_batch(counts, processed, total)` hears each committed batch (jobs show it as progress)."""
    if p.error is not None:
        raise p.error
    started = time.time()
    if p.found is None:
        return _first_sync(engine, p, now, batch_size, out_of_time, on_batch, started)
    scope, f, pending, state = p.scope, p.found, p.pending, p.state
    keys = f.pairs | p.stored
    if p.courses:
        keys |= _stored_keys(engine, scope.companyid, p.courses) | scope_keys(p.live, scope, now, courses=p.courses)
    if p.difference != set():
        keys |= scope_difference(p.live, scope, now, courses=p.difference)
    prefetched = None
    if f.users:  # every pair of these users: their stored keys (known) and in-scope pairs
        users = f.users | {u for u, _ in keys}
        if len(users) <= batch_size:  # one read gives the pairs and the values of every batch
            prefetched = {q.key: q for q in live_rows(p.live, scope, now, users=users)}
            keys |= {k for k in prefetched if k[0] in f.users}
        else:
            keys |= scope_keys(p.live, scope, now, users=f.users)
    keys = sorted(keys)
    if pending["after"] is not None:
        keys = [k for k in keys if k > tuple(pending["after"])]
    state["pending"] = pending
    counts = Counts()
    if not keys:
        _finish(state, counts, now, started, 0)
        company_state.completed(engine, scope.companyid, state, now, 0)
        return state["last_run"]
    for start in range(0, len(keys), batch_size):
        if out_of_time():
            return _stopped(engine, scope.companyid, state, counts, now, started)
        batch = keys[start:start + batch_size]
        if prefetched is not None:
            live = {k: prefetched[k] for k in batch if k in prefetched}
        else:
            wanted = set(batch)
            live = {q.key: q for q in live_rows(p.live, scope, now, users={u for u, _ in batch}) if q.key in wanted}
        pending["after"] = list(batch[-1])
        last = start + batch_size >= len(keys)

        def commit(result: Counts, last=last) -> None:  # inside the batch's transaction
            pending["written"] = pending.get("written", 0) + result.changed
            if not last:
                company_state.save(engine, scope.companyid, state, now)
                return
            total = Counts()
            total.add(counts)
            total.add(result)
            _finish(state, total, now, started, len(keys))
            company_state.completed(engine, scope.companyid, state, now, total.changed)

        result = write_batch(engine, scope.companyid, now, batch, live,
                             lambda b=batch: stored_rows_for(engine, scope.companyid, b), on_commit=commit)
        if result.changed:
            purge_cache(engine, scope.companyid)
        counts.add(result)
        if on_batch:
            on_batch(result, counts.checked, len(keys))
    return state["last_run"]


def _finish(state: dict, counts: Counts, now: int, started: float, pairs: int) -> None:
    """A completed run's state (tasks.md 5.6 step 5): the pending run's high marks become the
    cutoffs, with its cacherev and fingerprint snapshots."""
    pending = state["pending"]
    state["cutoffs"] = pending["high"]
    state["cacherev"] = pending["cacherev"]
    state["fp"] = pending.get("fp")
    # the counter as this company's own runs left it: another writer moves it (decision 122)
    state["seq"] = pending["seq"] + pending.get("written", 0) if pending.get("seq") is not None else None
    state["pending"] = None
    state["last_run"] = _record(counts, now, started, "complete", pairs)


def sync_company(env, company: Company, *, out_of_time: Callable[[], bool], lock_wait: float = 0.0,
                 batch_size: int | None = None, on_batch: Callable[[Counts, int, int], None] | None = None,
                 planned: Plan | None = None, locks: LockSet | None = None) -> company_runner.Outcome:
    """One company of a sync run under its lock (tasks.md 5.2 step 3, 5.6); its outcome's result
    is the last_run record. Shared by `sync_reporting_data_task` (its run's plan, the lock from the
    run's lock set, no wait) and `sync` jobs (detection under the lock, wait, no time limit)."""
    plugin = env.plugin

    def work() -> tuple[bool, dict]:
        p, now = planned, env.clock()
        if p is None or company_state.raw_states(env.engine, [company.id]).get(company.id) != p.row:
            p = plan(env.engine, [company], now=now, lookback=plugin.sync_lookback_seconds,
                     report_roles=plugin.report_roles, every=False)[0]
        p.live = replica_reads.still_live(env.engine, p.live)
        with replica_reads.reading(env.engine, p.live):
            run = run_company(env.engine, p, now=now, batch_size=batch_size or plugin.sync_batch_size,
                              out_of_time=out_of_time, on_batch=on_batch)
        return run["stopped"] == "complete", run

    outcome = company_runner.run(env.engine, company, work, what="sync", lock_wait=lock_wait, locks=locks)
    _report(env, outcome)
    if locks is None and outcome.status != "busy":  # a job: settled now (a run settles its companies at its end)
        with env.engine.lock_set() as own:
            scope = Scope.load(replica_reads.live(env.engine, task=True), company.id, plugin.report_roles)
            settle_prints(env.engine, {company.id: scope}, own)
    return outcome


def _report(env, outcome: company_runner.Outcome) -> None:
    company = outcome.company
    if outcome.status == "busy":
        env.say(f"{outcome.label} is busy; skipped")
    elif outcome.status == "failed":
        failures = company_state.failed(env.engine, company.id, env.clock(), outcome.error)
        inline_alerts.sync_result(env.engine, env.settings, env.clock(), company, failures, outcome.error)
        env.say(f"{outcome.label} failed ({failures} in a row): {outcome.exception}")
    else:
        run = outcome.result
        if outcome.status == "done":
            inline_alerts.sync_result(env.engine, env.settings, env.clock(), company, 0, None)
        env.say(f"{outcome.label}: {run['pairs']} pairs, inserted {run['inserted']}, updated {run['updated']}, "
                f"reactivated {run['reactivated']}, deleted {run['deleted']}, unchanged {run['unchanged']} in "
                f"{run['seconds']} s" + (" (stopped by the time limit)" if outcome.status == "stopped" else ""))


class Run:
    """A run of `sync_reporting_data_task` over companies in their order (tasks.md 5.2): iterate
    for each company's outcome; `stopped` tells whether the time limit (or a stopping runner)
    ended it early. `every`: the companies are every company of the site."""

    def __init__(self, env, companies: list[Company], *, every: bool, out_of_time: Callable[[], bool]):
        self.env, self.companies, self.every, self.out_of_time = env, companies, every, out_of_time
        self.stopped = False

    def __iter__(self) -> Iterator[company_runner.Outcome]:
        env, plugin = self.env, self.env.plugin
        now = env.clock()
        plans = plan(env.engine, self.companies, now=now, lookback=plugin.sync_lookback_seconds,
                     report_roles=plugin.report_roles, every=self.every)
        with env.engine.lock_set() as locks:
            idle = [p for p in plans if p.idle]
            moved = []
            for start in range(0, len(idle), IDLE_CHUNK):
                outcomes, later = _record_idle(env, idle[start:start + IDLE_CHUNK], locks, now)
                moved += later
                yield from outcomes
            replan = {p.company.id for p in moved}
            work = {p.company.id: p for p in plans if not p.idle or p.company.id in replan}
            done = {}
            each = company_runner.each(
                [c for c in self.companies if c.id in work],
                lambda company: sync_company(env, company, out_of_time=self.out_of_time, locks=locks,
                                             planned=None if company.id in replan else work[company.id]),
                should_stop=self.out_of_time)
            for outcome in each:
                if outcome.status != "busy":  # rows may have been written: done, stopped or failed
                    done[outcome.company.id] = work[outcome.company.id].scope
                yield outcome
            self.stopped = each.stopped
            settle_prints(env.engine, done, locks)


IDLE_CHUNK = 500  # idle companies recorded per round: locks held at once stay few


def _record_idle(env, idle: list[Plan], locks: LockSet, now: int) -> tuple[list[company_runner.Outcome], list[Plan]]:
    """Companies where nothing changed, recorded as synced together under their locks. Returns
    their outcomes and the plans whose state moved since detection (processed alone)."""
    started = time.time()
    names = {company_runner.lock_name(p.company.id): p for p in idle}
    held = locks.take(names)
    try:
        ours = [p for name, p in names.items() if name in held]
        rows = company_state.raw_states(env.engine, [p.company.id for p in ours])
        moved = [p for p in ours if rows.get(p.company.id) != p.row]
        ready = [p for p in ours if rows.get(p.company.id) == p.row]
        for p in ready:
            p.state["pending"] = p.pending
            _finish(p.state, Counts(), now, started, 0)
        company_state.completed_many(env.engine, [(p.company.id, p.state, 0) for p in ready], now)
    finally:
        locks.release(held)
    outcomes = []
    for p in idle:
        if company_runner.lock_name(p.company.id) not in held:
            outcome = company_runner.Outcome(p.company, "busy", error=company_runner.BUSY)
            _report(env, outcome)
            outcomes.append(outcome)
    for p in ready:
        if p.row and p.row.failed:  # its last run had failed: resolve the sync alert
            inline_alerts.sync_result(env.engine, env.settings, now, p.company, 0, None)
        outcomes.append(company_runner.Outcome(p.company, "done", p.state["last_run"]))
    if ready:
        env.say(f"{len(ready)} compan{'y' if len(ready) == 1 else 'ies'} unchanged, recorded in "
                f"{time.time() - started:.3f} s")
    return outcomes, moved


def _first_sync(engine, p: Plan, now, batch_size, out_of_time, on_batch, started) -> dict:
    companyid, state, pending = p.scope.companyid, p.state, p.pending
    company_state.ensure(engine, companyid, now)
    state["pending"] = pending
    counts = Counts()
    total = pairs_bound(p.live, p.scope) if on_batch else 0

    def remember(batch):
        counts.add(batch.counts)
        pending["after"] = list(batch.upto)
        pending["written"] = pending.get("written", 0) + batch.counts.changed
        company_state.save(engine, companyid, state, now)
        if on_batch:
            on_batch(batch.counts, counts.checked, total)

    _, after = full_sync(engine, p.scope, now, batch_size, after=tuple(pending["after"]), on_batch=remember,
                         should_stop=out_of_time, live=p.live)
    if after != INF:
        return _stopped(engine, companyid, state, counts, now, started)
    pending["high"] = {s: pending["started"] for s in SOURCES}
    _finish(state, counts, now, started, counts.checked)
    company_state.completed(engine, companyid, state, now, counts.changed)
    return state["last_run"]


def _record(counts: Counts, now: int, started: float, stopped: str, pairs: int) -> dict:
    return {"started": now, "finished": now + int(time.time() - started), "pairs": pairs, **counts.as_dict(),
            "seconds": round(time.time() - started, 3), "stopped": stopped}


def _stopped(engine, companyid, state, counts, now, started) -> dict:
    state["last_run"] = _record(counts, now, started, "time_limit", counts.checked)
    company_state.save(engine, companyid, state, now)
    return state["last_run"]
