"""The company's `cron` row of local_alx_api_sync_status: its change-sequence counter
(classes/sequence.py) and its sync and reconcile state in `state_data` (tasks.md 4 and 5.6)."""

from __future__ import annotations

import json

from local_alx_report_api.classes import sequence
from moodle_core.engines import Engine


def load(engine: Engine, companyid: int, now: int) -> dict:
    sequence.ensure_counter(engine, companyid, now)
    raw = engine.scalar("SELECT state_data FROM {t:local_alx_api_sync_status} WHERE companyid = ? AND token_hash = ?",
                        (companyid, sequence.cron_hash(companyid)))
    return json.loads(raw or "{}")


def save(engine: Engine, companyid: int, state: dict, now: int, **columns) -> None:
    """Write state_data (and any other columns given) of the company's cron row."""
    sets = ", ".join(["state_data = ?", "updated_at = ?", *(f"{c} = ?" for c in columns)])
    engine.execute(f"UPDATE {{t:local_alx_api_sync_status}} SET {sets} WHERE companyid = ? AND token_hash = ?",
                   (json.dumps(state, separators=(",", ":")), now, *columns.values(), companyid,
                    sequence.cron_hash(companyid)))
