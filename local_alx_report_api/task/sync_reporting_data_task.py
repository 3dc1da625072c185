"""`sync_reporting_data_task` (tasks.md section 5): per company, detect changes since the last
committed run and bring the reporting rows up to date, within `max_sync_time`."""

from __future__ import annotations

import time

from local_alx_report_api.classes import sync


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
        outcome, run = sync.sync_company(env, company, out_of_time=out_of_time)
        if outcome != "done":
            summary["skipped" if outcome == "busy" else "failed"] += 1
            continue
        summary["processed"] += 1
        summary["pairs"] += run["pairs"]
        for key in ("inserted", "updated", "reactivated", "deleted", "unchanged"):
            summary[key] += run[key]
        if run["stopped"] != "complete":
            summary["stopped"] = "time_limit"
            break
    return summary
