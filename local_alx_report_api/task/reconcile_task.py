"""`reconcile_task` (tasks.md section 9): the full company sync for every company, healing drift
and reporting it; busy companies wait for the next reconcile, a stopped one resumes at its key."""

from __future__ import annotations

import logging
import time

from local_alx_report_api.classes import company_state, inline_alerts
from local_alx_report_api.classes.progress import Scope
from local_alx_report_api.classes.reporting import INF, full_sync
from moodle_core.engines import LockBusy

EXAMPLES = 20
log = logging.getLogger(__name__)


def execute(env, *, companies=None, time_budget: int | None = None) -> dict:
    budget = env.plugin.reconcile_max_time if time_budget is None else time_budget
    began = time.monotonic()
    summary = {"companies": 0, "busy": 0, "failed": 0, "drift": 0, "stopped": False}
    for company in companies or env.moodle.companies():
        if time.monotonic() - began >= budget or env.should_stop():
            summary["stopped"] = True
            break
        try:
            with env.engine.lock(f"company_{company.id}"):
                drift = reconcile_company(env, company, lambda: time.monotonic() - began >= budget or env.should_stop())
        except LockBusy:
            env.say(f"Company {company.id} ({company.shortname}) is busy; reconciled next time")
            summary["busy"] += 1
            continue
        except Exception as exc:  # one company's failure never stops the others (issue 14, 12)
            log.exception("reconcile of company %s failed", company.id)
            env.say(f"Company {company.id} ({company.shortname}) failed: {type(exc).__name__}: {exc}"[:500])
            summary["failed"] += 1
            continue
        if drift is None:
            summary["stopped"] = True
            break
        summary["companies"] += 1
        summary["drift"] += drift
    if summary["failed"]:  # the task fails (fail delay, task alert) once the others are done
        raise RuntimeError(f"reconcile failed for {summary['failed']} of {summary['failed'] + summary['companies']} "
                           "companies; the others were reconciled")
    return summary


def reconcile_company(env, company, out_of_time, *, batch_size: int | None = None, on_batch=None) -> int | None:
    """Drift of the company (rows fixed), or None when the time budget stopped it mid-way.

    `on_batch(batch)` hears each committed batch (reconcile jobs show it as progress)."""
    now = env.clock()
    state = company_state.load(env.engine, company.id, now)
    resume = state.get("reconcile_after")
    after = tuple(resume["after"]) if resume else (0, 0)
    counts = resume["counts"] if resume else {"checked": 0, "inserted": 0, "updated": 0, "reactivated": 0,
                                              "deleted": 0, "examples": []}
    scope = Scope.load(env.engine, company.id, env.plugin.report_roles)
    started = resume["started"] if resume else now

    def remember(batch):
        for key in ("checked", "inserted", "updated", "reactivated", "deleted"):
            counts[key] += getattr(batch.counts, key)
        counts["examples"] = (counts.get("examples", []) + batch.counts.examples)[:20]
        if on_batch:
            on_batch(batch)

    _, after = full_sync(env.engine, scope, now, batch_size or env.plugin.sync_batch_size, after=after,
                         on_batch=remember, should_stop=out_of_time)
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
