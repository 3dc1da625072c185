"""`cleanup_task` (tasks.md section 8): expired cache, old logs, old resolved alerts, old jobs,
orphaned client state; each deletion in batches of at most 10000 rows."""

from __future__ import annotations

from local_alx_report_api.classes import client_state, jobs

BATCH = 10000
MONTH = 30 * 86400


def _delete(env, table: str, where: str, params: tuple) -> int:
    engine, total = env.engine, 0
    while True:
        with engine.write_transaction():
            ids = [r[0] for r in engine.rows(f"SELECT id FROM {{t:{table}}} WHERE {where} LIMIT {BATCH}", params)]
            if ids:
                engine.execute(f"DELETE FROM {{t:{table}}} WHERE id IN ({', '.join(str(int(i)) for i in ids)})")
        total += len(ids)
        if len(ids) < BATCH:
            return total


def _delete_ids(env, ids: list[int], delete) -> int:
    for start in range(0, len(ids), BATCH):
        with env.engine.write_transaction():
            delete(env.engine, ids[start:start + BATCH])
    return len(ids)


def execute(env) -> dict:
    now, plugin = env.clock(), env.plugin
    summary = {"cache": _delete(env, "local_alx_api_cache", "expires_at < ?", (now,))}
    summary["logs"] = _delete(env, "local_alx_api_logs", "timeaccessed < ?",
                              (now - plugin.log_retention_days * 86400,)) if plugin.log_retention_days else 0
    summary["alerts"] = _delete(env, "local_alx_api_alerts", "resolved = 1 AND timeresolved < ?",
                                (now - plugin.alert_retention_days * 86400,))
    summary["jobs"] = _delete_ids(env, jobs.finished_before(env.engine, now - MONTH), jobs.delete)
    summary["client_state"] = _delete_ids(env, client_state.stale_without_token(env.engine, now - MONTH),
                                          client_state.delete)
    env.say("Cleanup: " + ", ".join(f"{name} {count}" for name, count in summary.items()) + " rows deleted")
    return summary
