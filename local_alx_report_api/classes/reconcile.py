"""Reconcile (tasks.md section 9): the full company sync for every company, healing drift and
reporting it; busy companies wait for the next reconcile, a stopped one resumes at its key. It
shares no detection code with the sync task, which it checks."""

from __future__ import annotations

import time

from local_alx_report_api.classes import company_runner, company_state, inline_alerts, replica_reads
from local_alx_report_api.classes.progress import Scope, pairs_bound
from local_alx_report_api.classes.reporting import INF, full_sync

EXAMPLES = 20


def reconcile_all(env, *, companies=None, time_budget: int | None = None) -> dict:
    """Every company (or those given) within the time budget (`reconcile_max_time`)."""
    budget = env.plugin.reconcile_max_time if time_budget is None else time_budget
    began = time.monotonic()

    def out_of_time() -> bool:
        return time.monotonic() - began >= budget or env.should_stop()

    summary = {"companies": 0, "busy": 0, "failed": 0, "drift": 0, "stopped": False}
    run = company_runner.each(companies or env.moodle.companies(), lambda company: reconcile_one(env, company, out_of_time),
                              should_stop=out_of_time)
    for outcome in run:
        if outcome.status == "busy":
            env.say(f"{outcome.label} is busy; reconciled next time")
            summary["busy"] += 1
        elif outcome.status == "failed":
            env.say(f"{outcome.label} failed: {outcome.error}"[:500])
            summary["failed"] += 1
        elif outcome.status == "done":
            summary["companies"] += 1
            summary["drift"] += outcome.result["drift"]
    summary["stopped"] = run.stopped
    if summary["failed"]:  # the task fails (fail delay, task alert) once the others are done
        raise RuntimeError(f"reconcile failed for {summary['failed']} of {summary['failed'] + summary['companies']} "
                           "companies; the others were reconciled")
    return summary


def reconcile_one(env, company, out_of_time, *, lock_wait: float = 0.0, batch_size: int | None = None,
                  on_batch=None) -> company_runner.Outcome:
    """One company under its lock; the outcome's result holds its drift (rows fixed)."""
    def work() -> tuple[bool, dict]:
        drift = reconcile_company(env, company, out_of_time, batch_size=batch_size, on_batch=on_batch)
        return drift is not None, {"drift": drift}

    return company_runner.run(env.engine, company, work, what="reconcile", lock_wait=lock_wait)


def reconcile_company(env, company, out_of_time, *, batch_size: int | None = None, on_batch=None) -> int | None:
    """Drift of the company (rows fixed), or None when the time budget stopped it mid-way.

    `on_batch(counts, processed, total)` hears each committed batch (reconcile jobs show it as
    progress)."""
    now = env.clock()
    state = company_state.load(env.engine, company.id, now)
    resume = state.get("reconcile_after")
    after = tuple(resume["after"]) if resume else (0, 0)
    counts = resume["counts"] if resume else {"checked": 0, "inserted": 0, "updated": 0, "reactivated": 0,
                                              "deleted": 0, "examples": []}
    started = resume["started"] if resume else now
    processed = [0]

    def remember(batch):
        for key in ("checked", "inserted", "updated", "reactivated", "deleted"):
            counts[key] += getattr(batch.counts, key)
        counts["examples"] = (counts.get("examples", []) + batch.counts.examples)[:EXAMPLES]
        if on_batch:
            processed[0] += batch.counts.checked
            on_batch(batch.counts, processed[0], total)

    with replica_reads.reading(env.engine) as live:  # Moodle's tables as the primary holds them now, or later
        scope = Scope.load(live, company.id, env.plugin.report_roles)
        total = pairs_bound(live, scope) if on_batch else 0
        _, after = full_sync(env.engine, scope, now, batch_size or env.plugin.sync_batch_size, after=after,
                             on_batch=remember, should_stop=out_of_time, live=live)
    state = company_state.load(env.engine, company.id, now)
    if after != INF:
        state["reconcile_after"] = {"after": list(after), "counts": counts, "started": started}
        company_state.save(env.engine, company.id, state, now)
        return None
    drift = {k: counts[k] for k in ("inserted", "updated", "reactivated", "deleted")}
    state.pop("reconcile_after", None)
    state["last_reconcile"] = {"started": started, "finished": env.clock(), "checked": counts["checked"], "drift": drift}
    company_state.save(env.engine, company.id, state, now)
    total = sum(drift.values())
    active = int(env.engine.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE companyid = ? AND "
                                   "is_deleted = 0", (company.id,)))
    inline_alerts.reconcile_drift(env.engine, env.settings, env.clock(), company, drift, active,
                                  counts.get("examples", []))
    env.say(f"Company {company.id} ({company.shortname}): {counts['checked']} pairs checked, drift {total}")
    return total
