"""`sync_reporting_data_task` (tasks.md section 5): detect the changes since each company's last
committed run, for all companies at once, and bring the reporting rows up to date where something
changed, within `max_sync_time`."""

from __future__ import annotations

import time

from local_alx_report_api.classes import company_state, sync


def _order(env, companies):
    """Never-synced companies first, then by the time of their last completed run, then id."""
    last = {c: int(r["last_sync_timestamp"]) for c, r in company_state.rows(env.engine).items() if r["total_syncs"]}
    return sorted(companies, key=lambda c: (last.get(c.id, -1), c.id))


def execute(env, *, companies=None, time_limit: int | None = None) -> dict:
    plugin = env.plugin
    limit = plugin.max_sync_time if time_limit is None else time_limit
    began = time.monotonic()

    def out_of_time() -> bool:
        return (limit is not None and time.monotonic() - began >= limit) or env.should_stop()

    summary = {"processed": 0, "skipped": 0, "failed": 0, "pairs": 0, "inserted": 0, "updated": 0,
               "reactivated": 0, "deleted": 0, "unchanged": 0, "stopped": "complete"}
    run = sync.Run(env, _order(env, companies or env.moodle.companies()), every=companies is None,
                   out_of_time=out_of_time)
    for outcome in run:
        if outcome.status in ("busy", "failed"):
            summary["skipped" if outcome.status == "busy" else "failed"] += 1
            continue
        summary["processed"] += 1
        summary["pairs"] += outcome.result["pairs"]
        for key in ("inserted", "updated", "reactivated", "deleted", "unchanged"):
            summary[key] += outcome.result[key]
    if run.stopped:
        summary["stopped"] = "time_limit"
    return summary
