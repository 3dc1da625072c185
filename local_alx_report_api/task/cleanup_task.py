"""`cleanup_task` (tasks.md section 8): expired cache, old logs, old resolved alerts, old jobs,
orphaned client state; each deletion in batches of at most 10000 rows."""

from __future__ import annotations

import hashlib

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


def _orphaned_api_rows(env, before: int) -> int:
    tokens = {hashlib.sha256(t.encode()).hexdigest() for (t,) in env.engine.rows("SELECT token FROM {t:external_tokens}")}
    stale = [rid for rid, token_hash in env.engine.rows(
        "SELECT id, token_hash FROM {t:local_alx_api_sync_status} WHERE kind = 'api' AND updated_at < ?", (before,))
        if token_hash not in tokens]
    for start in range(0, len(stale), BATCH):
        with env.engine.write_transaction():
            ids = ", ".join(str(int(i)) for i in stale[start:start + BATCH])
            env.engine.execute(f"DELETE FROM {{t:local_alx_api_sync_status}} WHERE id IN ({ids})")
    return len(stale)


def execute(env) -> dict:
    now, plugin = env.clock(), env.plugin
    summary = {"cache": _delete(env, "local_alx_api_cache", "expires_at < ?", (now,))}
    summary["logs"] = _delete(env, "local_alx_api_logs", "timeaccessed < ?",
                              (now - plugin.log_retention_days * 86400,)) if plugin.log_retention_days else 0
    summary["alerts"] = _delete(env, "local_alx_api_alerts", "resolved = 1 AND timeresolved < ?",
                                (now - plugin.alert_retention_days * 86400,))
    summary["jobs"] = _delete(env, "local_alx_api_sync_status", "kind = 'job' AND last_sync_status IN "
                              "('success', 'failed', 'cancelled') AND last_sync_timestamp < ?", (now - MONTH,))
    summary["client_state"] = _orphaned_api_rows(env, now - MONTH)
    env.say("Cleanup: " + ", ".join(f"{name} {count}" for name, count in summary.items()) + " rows deleted")
    return summary
