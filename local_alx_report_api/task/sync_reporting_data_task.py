"""`sync_reporting_data_task` (tasks.md section 5): per company, detect changes since the last
committed run and bring the reporting rows up to date, within `max_sync_time`."""

from __future__ import annotations

import logging
import time

from local_alx_report_api.classes import inline_alerts, sync
from moodle_core.engines import LockBusy

log = logging.getLogger(__name__)


def _order(env, companies):
    """Never-synced companies first, then by the time of their last completed run, then id."""
    last = dict(env.engine.rows("SELECT companyid, last_sync_timestamp FROM {t:local_alx_api_sync_status} "
                                "WHERE kind = 'cron' AND total_syncs > 0"))
    return sorted(companies, key=lambda c: (last.get(c.id, -1), c.id))


def execute(env, *, companies=None, time_limit: int | None = None) -> dict:
    plugin = env.plugin
    limit = plugin.max_sync_time if time_limit is None else time_limit
    began = time.monotonic()

    def out_of_time() -> bool:
        return (limit is not None and time.monotonic() - began >= limit) or env.should_stop()

    summary = {"processed": 0, "skipped": 0, "failed": 0, "pairs": 0, "inserted": 0, "updated": 0,
               "reactivated": 0, "deleted": 0, "unchanged": 0, "stopped": "complete"}
    for company in _order(env, companies or env.moodle.companies()):
        if out_of_time():
            summary["stopped"] = "time_limit"
            break
        try:
            with env.engine.lock(f"company_{company.id}"):
                run = sync.run_company(env.engine, company, now=env.clock(), batch_size=plugin.sync_batch_size,
                                       lookback=plugin.sync_lookback_seconds, report_roles=plugin.report_roles,
                                       out_of_time=out_of_time)
        except LockBusy:
            summary["skipped"] += 1
            env.say(f"Company {company.id} ({company.shortname}) is busy; skipped")
            continue
        except Exception as exc:  # one company's failure never stops the others (ST6)
            log.exception("sync of company %s failed", company.id)
            error = f"{type(exc).__name__}: {exc}"
            failures = sync.record_failure(env.engine, company, env.clock(), error)
            inline_alerts.sync_result(env.engine, env.settings, env.clock(), company, failures, error)
            env.say(f"Company {company.id} ({company.shortname}) failed ({failures} in a row): {exc}")
            summary["failed"] += 1
            continue
        summary["processed"] += 1
        if run["stopped"] == "complete":
            inline_alerts.sync_result(env.engine, env.settings, env.clock(), company, 0, None)
        summary["pairs"] += run["pairs"]
        for key in ("inserted", "updated", "reactivated", "deleted", "unchanged"):
            summary[key] += run[key]
        env.say(f"Company {company.id} ({company.shortname}): {run['pairs']} pairs, inserted {run['inserted']}, "
                f"updated {run['updated']}, reactivated {run['reactivated']}, deleted {run['deleted']}, "
                f"unchanged {run['unchanged']} in {run['seconds']} s" +
                (" (stopped by the time limit)" if run["stopped"] != "complete" else ""))
        if run["stopped"] != "complete":
            summary["stopped"] = "time_limit"
            break
    return summary
