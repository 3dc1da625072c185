"""A token's `api` rows of local_alx_api_sync_status (sync-and-cache.md 3; one per company the
token's user pulled), and the only code that reads or writes them: the watermark and pull results
in columns, the open pulls in `state_data` (classes/pulls.py decides what they mean)."""

from __future__ import annotations

import orjson
import peewee

from moodle_core.engines import Engine
from moodle_core.stored import json_object
from webservice.call import token_hash

_ROW = "{t:local_alx_api_sync_status}"
_LOCKED = ("id", "change_seq", "last_sync_timestamp", "last_sync_status", "total_syncs", "consecutive_failures",
           "state_data")
_LISTED = ("id", "token_hash", "companyid", "userid", "change_seq", "last_sync_timestamp", "last_sync_status",
           "last_sync_error", "last_sync_records", "sync_mode", "total_syncs", "consecutive_failures", "updated_at",
           "state_data")


def load_data(raw) -> dict:
    """A row's `state_data`: {} when it is missing or damaged (its pulls are then gone; the
    watermark, a column of its own, is kept)."""
    return json_object(raw, "state_data of a client state")


def ensure(engine: Engine, companyid: int, thash: str, userid: int, now: int) -> None:
    """Create the row if it is missing (a concurrent creator is harmless)."""
    if engine.scalar(f"SELECT id FROM {_ROW} WHERE companyid = ? AND token_hash = ?", (companyid, thash)) is not None:
        return
    try:
        with engine.db.atomic():
            engine.insert("local_alx_api_sync_status", {
                "companyid": companyid, "token_hash": thash, "kind": "api", "userid": userid, "sync_mode": "auto",
                "last_sync_status": "never", "created_at": now, "updated_at": now})
    except peewee.IntegrityError:
        pass


class Missing(Exception):
    """The token has no row yet: create it (`ensure`, outside the locking transaction) and try again."""


def lock(engine: Engine, companyid: int, thash: str) -> dict:
    """The row, locked for the rest of the transaction (FOR UPDATE, or SQLite's write lock);
    `state_data` decoded as `data`. Raises Missing when there is none: creating it here, after a
    FOR UPDATE that found nothing, could deadlock two first pages on MariaDB's gap locks."""
    row = engine.execute(f"SELECT {', '.join(_LOCKED)} FROM {_ROW} WHERE companyid = ? AND token_hash = ?"
                         f"{engine.for_update}", (companyid, thash)).fetchone()
    if row is None:
        raise Missing()
    state = dict(zip(_LOCKED, row, strict=True))
    state["data"] = load_data(state.pop("state_data"))
    return state


def save(engine: Engine, state: dict, now: int, userid: int, **columns) -> None:
    """Write a locked row back: `data` and any other columns given."""
    sets = ", ".join(["state_data = ?", "updated_at = ?", "userid = ?", *(f"{c} = ?" for c in columns)])
    engine.execute(f"UPDATE {_ROW} SET {sets} WHERE id = ?",
                   (orjson.dumps(state["data"]).decode(), now, userid, *columns.values(), state["id"]))


def peek(engine: Engine, companyid: int, thash: str) -> dict:
    """The row's `state_data`, read without a lock."""
    return load_data(engine.scalar(f"SELECT state_data FROM {_ROW} WHERE companyid = ? AND token_hash = ?",
                                   (companyid, thash)))


def listed(engine: Engine, *, companyid: int | None = None) -> list[dict]:
    """Every row (or a company's), oldest update first, `state_data` decoded as `data`."""
    sql, params = f"SELECT {', '.join(_LISTED)} FROM {_ROW} WHERE kind = 'api'", ()
    if companyid is not None:
        sql, params = sql + " AND companyid = ?", (companyid,)
    out = []
    for row in engine.rows(sql + " ORDER BY updated_at, id", params):
        item = dict(zip(_LISTED, row, strict=True))
        item["data"] = load_data(item.pop("state_data"))
        out.append(item)
    return out


def count(engine: Engine, companyid: int) -> int:
    return int(engine.scalar(f"SELECT COUNT(*) FROM {_ROW} WHERE companyid = ? AND kind = 'api'", (companyid,)))


def completed_by_result(engine: Engine) -> list[tuple[str, str, int]]:
    """(mode, result, completed pulls) over every row."""
    return [(mode, result, int(total or 0)) for mode, result, total in engine.rows(
        f"SELECT sync_mode, last_sync_status, SUM(total_syncs) FROM {_ROW} WHERE kind = 'api' AND total_syncs > 0 "
        "GROUP BY sync_mode, last_sync_status")]


# -- resetting: the client's next pull is a first pull ----------------------------------------------
def forget_token(engine: Engine, token: str) -> int:
    """Delete the token's rows (every company); returns how many."""
    return engine.execute(f"DELETE FROM {_ROW} WHERE kind = 'api' AND token_hash = ?", (token_hash(token),)).rowcount


def forget_company(engine: Engine, companyid: int, *, state_id: int | None = None) -> int:
    """Delete the company's rows (or the one with this id); returns how many."""
    if state_id is None:
        return engine.execute(f"DELETE FROM {_ROW} WHERE companyid = ? AND kind = 'api'", (companyid,)).rowcount
    return engine.execute(f"DELETE FROM {_ROW} WHERE id = ? AND companyid = ? AND kind = 'api'",
                          (state_id, companyid)).rowcount


def stale_without_token(engine: Engine, before: int) -> list[int]:
    """Rows untouched since `before` whose token no longer exists (cleanup, tasks.md 8)."""
    tokens = {token_hash(t) for (t,) in engine.rows("SELECT token FROM {t:external_tokens}")}
    return [int(rid) for rid, thash in engine.rows(
        f"SELECT id, token_hash FROM {_ROW} WHERE kind = 'api' AND updated_at < ?", (before,)) if thash not in tokens]


def delete(engine: Engine, ids: list[int]) -> None:
    if ids:
        engine.execute(f"DELETE FROM {_ROW} WHERE kind = 'api' AND id IN ({', '.join(str(int(i)) for i in ids)})")
