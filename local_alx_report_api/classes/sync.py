"""One company's run of `sync_reporting_data_task` (tasks.md 5.3–5.6): detect the pairs whose
values or scope may have changed, from every timestamped source and by set difference, then
recompute them in committed batches that a later run can resume."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from local_alx_report_api.classes import company_runner, company_state, inline_alerts
from local_alx_report_api.classes.progress import Key, Scope, count_scope_union, live_rows, scope_difference, scope_keys
from local_alx_report_api.classes.reporting import INF, Counts, full_sync, purge_cache, stored_rows_for, write_batch
from moodle_core.engines import Engine

log = logging.getLogger(__name__)
SOURCES = ("cmc", "cc_completed", "cc_started", "cc_reaggregate", "ue_created", "ue_modified", "user", "course",
           "ra", "cm_added")


def _ints(values) -> str:
    return ", ".join(str(int(v)) for v in values) or "NULL"


class Detector:
    """Change detection for one company over its watched courses (tasks.md 5.3 and 5.4)."""

    def __init__(self, engine: Engine, scope: Scope, now: int):
        self.engine, self.scope, self.now = engine, scope, now
        c = scope.companyid
        # Only members and users with rows can have pairs that matter; driving every source from
        # them (user indexes) keeps detection proportional to the company, not to shared courses.
        # One round trip: watched courses (tag 0) and users (tag 1).
        rows = engine.rows(
            "SELECT 0, courseid FROM {t:company_course} WHERE companyid = ? UNION "
            "SELECT 0, courseid FROM {t:local_alx_api_reporting} WHERE companyid = ? UNION "
            "SELECT 1, userid FROM {t:company_users} WHERE companyid = ? UNION "
            "SELECT 1, userid FROM {t:local_alx_api_reporting} WHERE companyid = ?", (c, c, c, c))
        self.courses = sorted({int(r[1]) for r in rows if int(r[0]) == 0})
        self.users = sorted({int(r[1]) for r in rows if int(r[0]) == 1})
        self.seen: dict[str, int] = {}

    def _note(self, source: str, stamps) -> None:
        stamps = [int(s) for s in stamps if s is not None]
        if stamps:
            self.seen[source] = max(self.seen.get(source, 0), max(stamps))

    def timestamped(self, bounds: dict[str, int]) -> tuple[set[Key], set[int], set[int]]:
        """(pairs, whole users, whole courses) changed since the bounds, per source: every source
        in one statement (one round trip per company), each row tagged with its source."""
        courses, users, b = _ints(self.courses), _ints(self.users), bounds
        parts = [("cmc", f"SELECT cmc.userid, cm.course, cmc.timemodified FROM {{t:course_modules_completion}} cmc "
                         f"JOIN {{t:course_modules}} cm ON cm.id = cmc.coursemoduleid WHERE cmc.userid IN ({users}) "
                         f"AND cm.course IN ({courses}) AND cmc.timemodified >= ?")]
        for source, column in (("cc_completed", "timecompleted"), ("cc_started", "timestarted"),
                               ("cc_reaggregate", "reaggregate")):
            parts.append((source, f"SELECT userid, course, {column} FROM {{t:course_completions}} WHERE userid "
                                  f"IN ({users}) AND course IN ({courses}) AND {column} >= ? AND {column} > 0"))
        for source, column in (("ue_created", "timecreated"), ("ue_modified", "timemodified")):
            parts.append((source, f"SELECT ue.userid, e.courseid, ue.{column} FROM {{t:user_enrolments}} ue "
                                  f"JOIN {{t:enrol}} e ON e.id = ue.enrolid WHERE ue.userid IN ({users}) "
                                  f"AND e.courseid IN ({courses}) AND ue.{column} >= ?"))
        parts.append(("ra", f"SELECT ra.userid, ctx.instanceid, ra.timemodified FROM {{t:role_assignments}} ra "
                            f"JOIN {{t:context}} ctx ON ctx.id = ra.contextid WHERE ra.userid IN ({users}) "
                            f"AND ctx.contextlevel = 50 AND ctx.instanceid IN ({courses}) AND ra.timemodified >= ?"))
        parts.append(("user", f"SELECT id, 0, timemodified FROM {{t:user}} WHERE id IN ({users}) AND timemodified >= ?"))
        parts.append(("course", f"SELECT id, 0, timemodified FROM {{t:course}} WHERE id IN ({courses}) "
                                f"AND timemodified >= ?"))
        parts.append(("cm_added", f"SELECT course, 0, added FROM {{t:course_modules}} WHERE course IN ({courses}) "
                                  f"AND added >= ?"))
        sql = " UNION ALL ".join(f"SELECT {n} AS source, q.* FROM ({text}) q" for n, (_, text) in enumerate(parts))
        names = [name for name, _ in parts]
        found: dict[str, list[tuple[int, int, int]]] = {name: [] for name in names}
        for n, first, second, stamp in self.engine.rows(sql, [b[name] for name in names]):
            found[names[int(n)]].append((int(first), int(second), stamp))
        for name, rows in found.items():
            self._note(name, (r[2] for r in rows))
        pairs = {(u, c) for name in names[:7] for u, c, _ in found[name]}
        courses_changed = {r[0] for r in found["course"]} | {r[0] for r in found["cm_added"]}
        return pairs, {r[0] for r in found["user"]}, courses_changed

    def cacherevs(self) -> dict[str, int]:
        return {str(r[0]): int(r[1]) for r in self.engine.rows(
            f"SELECT id, cacherev FROM {{t:course}} WHERE id IN ({_ints(self.courses)})")}

    def stored_keys(self, *, active_only: bool, users=None, courses=None) -> set[Key]:
        sql = "SELECT userid, courseid FROM {t:local_alx_api_reporting} WHERE companyid = ?"
        if active_only:
            sql += " AND is_deleted = 0"
        if users is not None:
            sql += f" AND userid IN ({_ints(users)})"
        if courses is not None:
            sql += f" AND courseid IN ({_ints(courses)})"
        return {(int(u), int(c)) for u, c in self.engine.rows(sql, (self.scope.companyid,))}

    def expand(self, users: set[int], courses: set[int]) -> set[Key]:
        """Every pair of these users or courses: stored rows plus in-scope pairs."""
        keys: set[Key] = set()
        if users:
            keys |= self.stored_keys(active_only=False, users=users)
            keys |= scope_keys(self.engine, self.scope, self.now, users=users)
        if courses:
            keys |= self.stored_keys(active_only=False, courses=courses)
            keys |= scope_keys(self.engine, self.scope, self.now, courses=courses)
        return keys

    def set_difference(self) -> set[Key]:
        """Scope changes that leave no timestamp (tasks.md 5.4), differences only."""
        return scope_difference(self.engine, self.scope, self.now)


def run_company(engine: Engine, company, *, now: int, batch_size: int, lookback: int, report_roles: list[str],
                out_of_time: Callable[[], bool], on_batch: Callable[[Counts, int, int], None] | None = None) -> dict:
    """Process one company (the caller holds its lock). Returns its last_run record.

    `on_batch(counts, processed, total)` hears each committed batch (jobs show it as progress)."""
    started = time.time()
    state = company_state.load(engine, company.id, now)
    scope = Scope.load(engine, company.id, report_roles)
    detector = Detector(engine, scope, now)
    counts = Counts()
    if "cutoffs" not in state:
        return _first_sync(engine, company, state, scope, detector, now, batch_size, out_of_time, counts, started,
                           on_batch)
    pending = state.get("pending")
    if pending is None:
        bounds = {s: int(state["cutoffs"].get(s, 0)) - lookback for s in SOURCES}
        pending = {"from": bounds, "high": None, "after": None, "cacherev": detector.cacherevs()}
    pairs, users, courses = detector.timestamped(pending["from"])
    recorded = state.get("cacherev", {})
    courses |= {int(c) for c, rev in pending["cacherev"].items() if recorded.get(c) != rev}
    if pending["high"] is None:
        pending["high"] = {s: min(detector.seen[s], now) if s in detector.seen else int(state["cutoffs"].get(s, 0))
                           for s in SOURCES}
    keys = sorted(pairs | detector.expand(users, courses) | detector.set_difference())
    if pending["after"] is not None:
        keys = [k for k in keys if k > tuple(pending["after"])]
    state["pending"] = pending
    company_state.save(engine, company.id, state, now)
    for start in range(0, len(keys), batch_size):
        if out_of_time():
            return _stopped(engine, company, state, counts, now, started)
        batch = keys[start:start + batch_size]
        live = {p.key: p for p in live_rows(engine, scope, now, users={u for u, _ in batch}) if p.key in set(batch)}
        pending["after"] = list(batch[-1])
        result = write_batch(engine, company.id, now, batch, live, lambda b=batch: stored_rows_for(engine, company.id, b),
                             on_commit=lambda: company_state.save(engine, company.id, state, now))
        if result.changed:
            purge_cache(engine, company.id)
        counts.add(result)
        if on_batch:
            on_batch(result, counts.checked, len(keys))
    state["cutoffs"] = pending["high"]
    state["cacherev"] = pending["cacherev"]
    return _complete(engine, company, state, counts, now, started, len(keys))


def sync_company(env, company, *, out_of_time: Callable[[], bool], lock_wait: float = 0.0,
                 batch_size: int | None = None, on_batch: Callable[[Counts, int, int], None] | None = None
                 ) -> company_runner.Outcome:
    """One company of a sync run under its lock (tasks.md 5.2 step 3, 5.6); its outcome's result
    is the last_run record. Shared by `sync_reporting_data_task` (no wait) and `sync` jobs (wait,
    no time limit)."""
    plugin = env.plugin

    def work() -> tuple[bool, dict]:
        run = run_company(env.engine, company, now=env.clock(), batch_size=batch_size or plugin.sync_batch_size,
                          lookback=plugin.sync_lookback_seconds, report_roles=plugin.report_roles,
                          out_of_time=out_of_time, on_batch=on_batch)
        return run["stopped"] == "complete", run

    outcome = company_runner.run(env.engine, company, work, what="sync", lock_wait=lock_wait)
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
    return outcome


def _first_sync(engine, company, state, scope, detector, now, batch_size, out_of_time, counts, started,
                on_batch) -> dict:
    pending = state.get("pending") or {"full": True, "after": [0, 0], "started": now, "cacherev": detector.cacherevs()}
    state["pending"] = pending
    total = count_scope_union(engine, scope, now) if on_batch else 0

    def remember(batch):
        counts.add(batch.counts)
        pending["after"] = list(batch.upto)
        company_state.save(engine, company.id, state, now)
        if on_batch:
            on_batch(batch.counts, counts.checked, total)

    _, after = full_sync(engine, scope, now, batch_size, after=tuple(pending["after"]), on_batch=remember,
                         should_stop=out_of_time)
    if after != INF:
        return _stopped(engine, company, state, counts, now, started)
    state["cutoffs"] = {s: pending["started"] for s in SOURCES}
    state["cacherev"] = pending["cacherev"]
    return _complete(engine, company, state, counts, now, started, counts.checked)


def _record(counts: Counts, now: int, started: float, stopped: str, pairs: int) -> dict:
    return {"started": now, "finished": now + int(time.time() - started), "pairs": pairs, **counts.as_dict(),
            "seconds": round(time.time() - started, 3), "stopped": stopped}


def _stopped(engine, company, state, counts, now, started) -> dict:
    state["last_run"] = _record(counts, now, started, "time_limit", counts.checked)
    company_state.save(engine, company.id, state, now)
    return state["last_run"]


def _complete(engine, company, state, counts, now, started, pairs) -> dict:
    state["pending"] = None
    state["last_run"] = _record(counts, now, started, "complete", pairs)
    company_state.completed(engine, company.id, state, now, counts.changed)
    return state["last_run"]
