"""The company's `cron` row of local_alx_api_sync_status (tasks.md 4), and the only code that
reads or writes it: the change-sequence counter (sync-and-cache.md 4), the sync and reconcile
state in `state_data` (tasks.md 5.6, 9) and the outcome of the last sync run.

The counter: writers reserve values with an UPDATE inside their own transaction, so the row lock
serialises writers of one company and commit order equals sequence order (W3, W4); readers never
block."""

from __future__ import annotations

import hashlib
import json
from typing import NamedTuple

import peewee

from moodle_core.engines import Engine
from moodle_core.stored import json_object

_ROW = "{t:local_alx_api_sync_status}"
_COLUMNS = ("companyid", "last_sync_timestamp", "last_sync_status", "last_sync_error", "consecutive_failures",
            "total_syncs", "change_seq")


def _hash(companyid: int) -> str:
    return hashlib.sha256(f"cron_task_{companyid}".encode()).hexdigest()


def ensure(engine: Engine, companyid: int, now: int) -> None:
    """Create the company's row if it is missing (a concurrent creator is harmless)."""
    if engine.scalar(f"SELECT id FROM {_ROW} WHERE companyid = ? AND token_hash = ?",
                     (companyid, _hash(companyid))) is not None:
        return
    try:
        with engine.db.atomic():
            engine.execute(f"INSERT INTO {_ROW} (companyid, token_hash, sync_mode, kind, last_sync_status, created_at, "
                           "updated_at) VALUES (?, ?, 'cron', 'cron', 'success', ?, ?)",
                           (companyid, _hash(companyid), now, now))
    except peewee.IntegrityError:
        pass


# -- the change sequence ------------------------------------------------------------------------
def reserve(engine: Engine, companyid: int, count: int) -> int:
    """Take `count` new values; returns the first. Call inside the writing transaction."""
    sql = f"UPDATE {_ROW} SET change_seq = change_seq + ? WHERE companyid = ? AND token_hash = ?"
    if engine.update_returning:  # one round trip
        top = engine.scalar(sql + " RETURNING change_seq", (count, companyid, _hash(companyid)))
    else:
        engine.execute(sql, (count, companyid, _hash(companyid)))
        top = engine.scalar(f"SELECT change_seq FROM {_ROW} WHERE companyid = ? AND token_hash = ?",
                            (companyid, _hash(companyid)))
    if top is None:
        raise RuntimeError(f"change sequence of company {companyid} is missing")
    return int(top) - count + 1


def current(engine: Engine, companyid: int) -> int:
    """The company's counter as committed (what a pull start reads as `until`)."""
    value = engine.scalar(f"SELECT change_seq FROM {_ROW} WHERE companyid = ? AND token_hash = ?",
                          (companyid, _hash(companyid)))
    return int(value or 0)


def table_state_select(companyid: int) -> tuple[str, tuple]:
    """A SELECT of two (name, value) rows: (".dataversion", `current`) and (".filled", 1 when the
    reporting table holds any row of the company, else 0): both asked by every page request, so
    a caller can add them to another read (UNION ALL) instead of a round trip of their own. The
    fill check is ordered by the (companyid, change_seq) index: a bare LIMIT 1 can be planned as a
    sequential scan that passes every row of the companies stored before this one."""
    return (f"SELECT '.dataversion', change_seq FROM {_ROW} WHERE companyid = ? AND token_hash = ? UNION ALL "
            "SELECT '.filled', COUNT(*) FROM (SELECT 1 AS one FROM {t:local_alx_api_reporting} WHERE companyid = ? "
            "ORDER BY companyid, change_seq LIMIT 1) f", (companyid, _hash(companyid), companyid))


def table_state(rows) -> tuple[int, bool]:
    """(`current`, filled) from the rows of `table_state_select` (other rows are ignored)."""
    found = {name: value for name, value in rows if name in (".dataversion", ".filled")}
    return int(found.get(".dataversion") or 0), bool(int(found.get(".filled") or 0))


def current_and_filled(engine: Engine, companyid: int) -> tuple[int, bool]:
    return table_state(engine.rows(*table_state_select(companyid)))


# -- sync and reconcile state -------------------------------------------------------------------
def load(engine: Engine, companyid: int, now: int) -> dict:
    ensure(engine, companyid, now)
    raw = engine.scalar(f"SELECT state_data FROM {_ROW} WHERE companyid = ? AND token_hash = ?",
                        (companyid, _hash(companyid)))
    return json.loads(raw or "{}")


def save(engine: Engine, companyid: int, state: dict, now: int, **columns) -> None:
    """Write state_data (and any other columns given) of the company's row."""
    sets = ", ".join(["state_data = ?", "updated_at = ?", *(f"{c} = ?" for c in columns)])
    engine.execute(f"UPDATE {_ROW} SET {sets} WHERE companyid = ? AND token_hash = ?",
                   (json.dumps(state, separators=(",", ":")), now, *columns.values(), companyid, _hash(companyid)))


_COMPLETED = (f"UPDATE {_ROW} SET state_data = ?, updated_at = ?, last_sync_status = 'success', last_sync_error = NULL, "
              "last_sync_timestamp = ?, last_sync_records = ?, total_syncs = COALESCE(total_syncs, 0) + 1, "
              "consecutive_failures = 0 WHERE companyid = ? AND token_hash = ?")


def completed(engine: Engine, companyid: int, state: dict, now: int, changed: int) -> None:
    """A sync run completed: the state, and one more success in a row of none failed."""
    completed_many(engine, [(companyid, state, changed)], now)


def completed_many(engine: Engine, runs: list[tuple[int, dict, int]], now: int) -> None:
    """Several companies' completed sync runs, (companyid, state, rows changed) each, written
    together (a run records the companies where nothing changed at once)."""
    engine.executemany(_COMPLETED, [(json.dumps(state, separators=(",", ":")), now, now, changed, companyid,
                                     _hash(companyid)) for companyid, state, changed in runs])


class Stored(NamedTuple):
    raw: str | None  # state_data as stored
    seq: int  # the change counter
    failed: bool  # the last sync run failed


def raw_states(engine: Engine, companyids: list[int] | None = None) -> dict[int, Stored]:
    """Each company's state_data as stored, with its counter and whether its last run failed
    (companies without a row are absent)."""
    sql = f"SELECT companyid, state_data, change_seq, last_sync_status FROM {_ROW} WHERE kind = 'cron'"
    if companyids is not None:
        if not companyids:
            return {}
        sql += f" AND companyid IN ({', '.join(str(int(c)) for c in companyids)})"
    return {int(cid): Stored(raw, int(seq or 0), status == "failed") for cid, raw, seq, status in engine.rows(sql)}


def failed(engine: Engine, companyid: int, now: int, error: str) -> int:
    """A sync run failed after retries: the pending run is kept, the failure counted; returns
    the failures in a row."""
    ensure(engine, companyid, now)
    failures = int(engine.scalar(f"SELECT consecutive_failures FROM {_ROW} WHERE companyid = ? AND token_hash = ?",
                                 (companyid, _hash(companyid))) or 0) + 1
    engine.execute(f"UPDATE {_ROW} SET last_sync_status = 'failed', last_sync_error = ?, consecutive_failures = ?, "
                   "updated_at = ? WHERE companyid = ? AND token_hash = ?",
                   (error[:2000], failures, now, companyid, _hash(companyid)))
    return failures


def forget(engine: Engine, companyid: int) -> int:
    """Reset the company's row to a new row's state (clearing its data: the next sync starts again
    as a first run), keeping its counter: the counter never goes back, or a replica's older copy
    of the company could pass for current (decision 135)."""
    return engine.execute(f"UPDATE {_ROW} SET last_sync_timestamp = 0, last_sync_records = 0, "
                          "last_sync_status = 'success', last_sync_error = NULL, total_syncs = 0, "
                          "consecutive_failures = 0, state_data = NULL WHERE companyid = ? AND token_hash = ?",
                          (companyid, _hash(companyid))).rowcount


# -- every company at once (pages, health, metrics) ---------------------------------------------
def rows(engine: Engine, companyid: int | None = None, *, with_state: bool = False) -> dict[int, dict]:
    """Each company's row with `result`: the last run's outcome, "never" until a run completed or
    failed (the row exists from the first counter use); `with_state` adds `state_data` decoded as
    `state` (for pages: a damaged one reads as {}, its own sync run fails on it and says so)."""
    columns = _COLUMNS + (("state_data",) if with_state else ())
    sql, params = f"SELECT {', '.join(columns)} FROM {_ROW} WHERE kind = 'cron'", ()
    if companyid is not None:
        sql, params = sql + " AND companyid = ?", (companyid,)
    out = {}
    for row in engine.rows(sql, params):
        item = dict(zip(columns, row, strict=True))
        if with_state:
            item["state"] = json_object(item.pop("state_data"), f"sync state of company {item['companyid']}")
        item["result"] = ("never" if not int(item["total_syncs"] or 0) and item["last_sync_status"] != "failed"
                          else item["last_sync_status"])
        out[int(item["companyid"])] = item
    return out


def last_sync(engine: Engine) -> int | None:
    """When any company's sync run last completed (None: never)."""
    return int(engine.scalar(f"SELECT MAX(last_sync_timestamp) FROM {_ROW} WHERE kind = 'cron'") or 0) or None
