"""The response cache in local_alx_api_cache (sync-and-cache.md section 9)."""

from __future__ import annotations

import hashlib
import json
import logging

import peewee

from moodle_core.engines import Engine

log = logging.getLogger(__name__)


def signature(fields: tuple[str, ...], deletions: bool, timezone: str) -> str:
    text = f"fields={','.join(fields)};deletions={int(deletions)};tz={timezone};v=1"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key(companyid: int, mode: str, since: int, position: str, limit: int, sig: str, dataversion: int) -> str:
    return f"api_response_{companyid}_{mode}_{since}_{position}_{limit}_{sig}_{dataversion}"


def read(engine: Engine, companyid: int, cache_key: str, now: int) -> tuple[dict | None, bool]:
    """(page, corrupt). An expired or corrupt entry is deleted and reads as a miss."""
    row = engine.execute("SELECT id, cache_data, expires_at FROM {t:local_alx_api_cache} WHERE cache_key = ? "
                         "AND companyid = ?", (cache_key, companyid)).fetchone()
    if row is None:
        return None, False
    rid, data, expires = row
    if int(expires) < now:
        engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE id = ?", (rid,))
        return None, False
    try:
        page = json.loads(data)
        if not (isinstance(page, dict) and isinstance(page.get("rows"), list) and isinstance(page.get("count"), int)
                and (page.get("last") is None or (isinstance(page["last"], list) and len(page["last"]) == 2))):
            raise ValueError("unexpected shape")
    except ValueError:
        log.warning("corrupt cache entry %s of company %s removed", cache_key, companyid)
        engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE id = ?", (rid,))
        return None, True
    try:  # best effort: a failure here never fails the request
        with engine.db.atomic():
            engine.execute("UPDATE {t:local_alx_api_cache} SET hit_count = hit_count + 1, last_accessed = ? "
                           "WHERE id = ?", (now, rid))
    except peewee.DatabaseError:
        log.warning("could not count a cache hit", exc_info=True)
    return page, False


def write(engine: Engine, companyid: int, cache_key: str, page: dict, now: int, ttl_minutes: int) -> None:
    data = json.dumps(page, separators=(",", ":"), ensure_ascii=False)
    values = (data, now, now + ttl_minutes * 60, now)
    try:
        with engine.db.atomic():
            updated = engine.execute("UPDATE {t:local_alx_api_cache} SET cache_data = ?, cache_timestamp = ?, "
                                     "expires_at = ?, last_accessed = ? WHERE cache_key = ? AND companyid = ?",
                                     (*values, cache_key, companyid)).rowcount
            if not updated:
                engine.insert("local_alx_api_cache", {"cache_key": cache_key, "companyid": companyid,
                                                      "cache_data": data, "cache_timestamp": now,
                                                      "expires_at": now + ttl_minutes * 60, "hit_count": 0,
                                                      "last_accessed": now})
    except peewee.IntegrityError:
        pass  # a concurrent writer stored the same page
