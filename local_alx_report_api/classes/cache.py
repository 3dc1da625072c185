"""The response cache in local_alx_api_cache (sync-and-cache.md section 9): pages kept as the
bytes they were sent as (issue 15), so a hit is one indexed read and a write of those bytes.

`cache_data` stays JSON of the spec's shape: `{"last":[userid,courseid]|null,"count":n,"rows":[…]}`
where `rows` is the JSON answer exactly as sent; an XML page keeps its document as a string in
`xml` instead. The header comes first, so a hit finds the body without decoding it."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import orjson
import peewee

from moodle_core.engines import Engine
from webservice.external import Encoded

log = logging.getLogger(__name__)
_HEAD = re.compile(r'\{"last":(null|\[-?\d+,-?\d+\]),"count":(\d+),"(rows|xml)":')


def signature(fields: tuple[str, ...], deletions: bool, timezone: str, fmt: str) -> str:
    text = f"fields={','.join(fields)};deletions={int(deletions)};tz={timezone};format={fmt};v=2"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def key(companyid: int, mode: str, since: int, position: str, limit: int, sig: str, dataversion: int) -> str:
    return f"api_response_{companyid}_{mode}_{since}_{position}_{limit}_{sig}_{dataversion}"


@dataclass(frozen=True)
class Page:
    """A page as the cache keeps it: the answer's bytes, the key of its last row, its row count."""

    encoded: Encoded
    last: tuple[int, int] | None


def _decode(data: str) -> Page:
    head = _HEAD.match(data)
    if head is None or not data.endswith("}"):
        raise ValueError("unexpected shape")
    body = data[head.end():-1]
    if head.group(3) == "rows":
        if not (body.startswith("[") and body.endswith("]")):
            raise ValueError("unexpected shape")
        raw = body.encode("ascii")  # a JSON answer is ASCII (protocol.md 10); anything else is damage
    else:
        text = orjson.loads(body)
        if not isinstance(text, str):
            raise ValueError("unexpected shape")
        raw = text.encode("utf-8")
    last = orjson.loads(head.group(1))
    return Page(Encoded(raw, int(head.group(2))), tuple(last) if last else None)


def encode(page: Page, fmt: str) -> str:
    last = f"[{page.last[0]},{page.last[1]}]" if page.last else "null"
    body = page.encoded.body.decode("ascii") if fmt == "json" else orjson.dumps(page.encoded.body.decode()).decode()
    return f'{{"last":{last},"count":{page.encoded.count},"{"rows" if fmt == "json" else "xml"}":{body}}}'


def read(engine: Engine, companyid: int, cache_key: str, now: int, source: Engine | None = None
         ) -> tuple[Page | None, bool]:
    """(page, corrupt). An expired or corrupt entry reads as a miss (a corrupt one is deleted, an
    expired one replaced by the miss's write, or removed by the cleanup task). A hit counts
    itself (`hit_count`, `last_accessed`) in the same statement where the database can say
    what it updated (UPDATE … RETURNING); elsewhere in a second one, best effort.

    `source`: a replica to read the entry on (an entry's bytes never change under its key, whose
    version says what they hold: any copy is exact); the hit is counted on `engine`, and an entry
    the replica does not have yet is a miss."""
    where = "WHERE cache_key = ? AND companyid = ?"
    counted = engine.update_returning and source is None
    if counted:
        row = engine.execute("UPDATE {t:local_alx_api_cache} SET hit_count = hit_count + 1, last_accessed = ? "
                             f"{where} AND expires_at >= ? RETURNING id, cache_data", (now, cache_key, companyid,
                                                                                        now)).fetchone()
        if row is None:  # missing, or expired: the write of the miss replaces an expired entry
            return None, False
        rid, data = row
    else:
        row = (source or engine).execute(f"SELECT id, cache_data, expires_at FROM {{t:local_alx_api_cache}} {where}",
                                         (cache_key, companyid)).fetchone()
        if row is None:
            return None, False
        rid, data, expires = row
        if int(expires) < now:  # as above: the miss's write replaces it
            return None, False
    try:
        page = _decode(data)
    except (ValueError, UnicodeError):  # orjson's decode error is a ValueError
        log.warning("corrupt cache entry %s of company %s removed", cache_key, companyid)
        engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE id = ?", (rid,))
        return None, True
    if not counted:
        try:  # best effort: a failure here never fails the request
            with engine.db.atomic():
                engine.execute("UPDATE {t:local_alx_api_cache} SET hit_count = hit_count + 1, last_accessed = ? "
                               "WHERE id = ?", (now, rid))
        except peewee.DatabaseError:
            log.warning("could not count a cache hit", exc_info=True)
    return page, False


def write(engine: Engine, companyid: int, cache_key: str, page: Page, fmt: str, now: int, ttl_minutes: int) -> None:
    """Store a page; an entry with the key already (a concurrent writer's, or an expired one a
    read left in place) takes the new data and times, keeping `hit_count` unless it had expired
    (one statement: no unique-key clash to catch)."""
    engine.upsert("local_alx_api_cache", {
        "cache_key": cache_key, "companyid": companyid, "cache_data": encode(page, fmt),
        "cache_timestamp": now, "expires_at": now + ttl_minutes * 60, "hit_count": 0, "last_accessed": now},
        ("cache_key", "companyid"), {
            "hit_count": "CASE WHEN old.expires_at < new.cache_timestamp THEN 0 ELSE old.hit_count END",
            "cache_data": "new.cache_data", "cache_timestamp": "new.cache_timestamp",
            "expires_at": "new.expires_at", "last_accessed": "new.last_accessed"})
