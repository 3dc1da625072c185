"""The per-company change sequence (sync-and-cache.md section 4).

The counter lives in the company's `cron` row of local_alx_api_sync_status. Writers reserve
values with an UPDATE inside their own transaction: the row lock serialises writers of one
company, so commit order equals sequence order (W3, W4); readers never block."""

from __future__ import annotations

import hashlib

import peewee

from moodle_core.engines import Engine


def token_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def cron_hash(companyid: int) -> str:
    return token_hash(f"cron_task_{companyid}")


def ensure_counter(engine: Engine, companyid: int, now: int) -> None:
    """Create the company's `cron` row if it is missing (a concurrent creator is harmless)."""
    if engine.scalar("SELECT id FROM {t:local_alx_api_sync_status} WHERE companyid = ? AND token_hash = ?",
                     (companyid, cron_hash(companyid))) is not None:
        return
    try:
        with engine.db.atomic():
            engine.execute(
                "INSERT INTO {t:local_alx_api_sync_status} (companyid, token_hash, sync_mode, kind, "
                "last_sync_status, created_at, updated_at) VALUES (?, ?, 'cron', 'cron', 'success', ?, ?)",
                (companyid, cron_hash(companyid), now, now))
    except peewee.IntegrityError:
        pass


def reserve(engine: Engine, companyid: int, count: int) -> int:
    """Take `count` new values; returns the first. Call inside the writing transaction."""
    engine.execute("UPDATE {t:local_alx_api_sync_status} SET change_seq = change_seq + ? "
                   "WHERE companyid = ? AND token_hash = ?", (count, companyid, cron_hash(companyid)))
    top = engine.scalar("SELECT change_seq FROM {t:local_alx_api_sync_status} WHERE companyid = ? AND token_hash = ?",
                        (companyid, cron_hash(companyid)))
    if top is None:
        raise RuntimeError(f"change sequence of company {companyid} is missing")
    return int(top) - count + 1


def current(engine: Engine, companyid: int) -> int:
    """The company's counter as committed (what a pull start reads as `until`)."""
    value = engine.scalar("SELECT change_seq FROM {t:local_alx_api_sync_status} WHERE companyid = ? AND token_hash = ?",
                          (companyid, cron_hash(companyid)))
    return int(value or 0)
