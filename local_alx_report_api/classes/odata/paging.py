"""Server-driven paging of the feed: one statement per page on the reporting table, keyset on
the key (O(page) at any depth, and a row the sync task updates between two pages is read once,
in one of its states), and the signed `$skiptoken` that carries the position from page to page."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from decimal import Decimal

from local_alx_report_api.classes.odata.query import Options, bad, compared
from moodle_core.engines import DATABASE_ERRORS, Engine

CHAIN_SECONDS = 6 * 3600  # a feed's nextLinks are free this long after its first page (then counted)
_SECRET_ROW = hashlib.sha256(b"odata_skiptoken_secret").hexdigest()


def secret(engine: Engine, config, now: int) -> bytes:
    """The site's key for skiptokens, made once and kept as a row of the service's own
    local_alx_api_sync_status (kind `secret`): every host of the site signs and checks with it."""
    def read():
        return engine.scalar("SELECT state_data FROM {t:local_alx_api_sync_status} WHERE companyid = 0 AND "
                             "token_hash = ?", (_SECRET_ROW,))

    def read_or_make():
        if (value := read()) is not None:
            return value
        try:
            with engine.db.atomic():
                engine.insert("local_alx_api_sync_status", {
                    "companyid": 0, "token_hash": _SECRET_ROW, "kind": "secret", "sync_mode": "secret",
                    "last_sync_status": "success", "state_data": secrets.token_hex(32), "created_at": now,
                    "updated_at": now})
        except DATABASE_ERRORS:  # another host made it at the same moment: theirs is the key
            pass
        return read()

    return config.remember(("odata_secret",), read_or_make).encode()


@dataclass
class Position:
    """What a skiptoken carries."""

    after: list  # the last row served: its value of each order item (Options.order), as compared
    left: int | None  # of $top, the rows still to serve
    count: int | None  # @odata.count as read by the first page
    size: int  # page size
    started: int  # when the first page was served: CHAIN_SECONDS later the next ones count
    free: bool = True  # within its time: not counted


def _bound(options: Options, token_hash: str) -> str:
    """What a skiptoken belongs to: the caller's token and the query's options."""
    text = json.dumps([token_hash, sorted(options.text.items())], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sign(key: bytes, position: Position, options: Options, token_hash: str) -> str:
    body = json.dumps([position.after, position.left, position.count, position.size, position.started,
                       _bound(options, token_hash)], separators=(",", ":")).encode()
    mac = hmac.new(key, body, hashlib.sha256).digest()[:16]
    return (base64.urlsafe_b64encode(body).rstrip(b"=") + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode()


def verify(key: bytes, token: str, options: Options, token_hash: str, now: int) -> Position:
    """The position of a skiptoken this site made for this caller and query; 400 otherwise."""
    try:
        body_text, _, mac_text = token.partition(".")
        body = base64.urlsafe_b64decode(body_text + "=" * (-len(body_text) % 4))
        mac = base64.urlsafe_b64decode(mac_text + "=" * (-len(mac_text) % 4))
        if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()[:16]):
            raise ValueError("signature")
        after, left, count, size, started, bound = json.loads(body)
        if not isinstance(after, list) or len(after) != len(options.order):
            raise ValueError("position")
    except (ValueError, TypeError):
        raise bad("$skiptoken is not one of this feed's: follow the @odata.nextLink as given") from None
    if bound != _bound(options, token_hash):
        raise bad("$skiptoken belongs to another query or token: follow the @odata.nextLink as given")
    return Position(after, left, count, int(size), int(started),
                    now <= int(started) + CHAIN_SECONDS)


@dataclass
class Read:
    """What one page statement needs beyond the options."""

    companyid: int
    courses: tuple[int, ...]  # the company's course scope (switched-off courses left out)


COLUMNS_ALWAYS = ("userid", "courseid")


def where(read: Read, options: Options) -> tuple[str, list]:
    courses = ", ".join(str(int(c)) for c in read.courses) or "NULL"
    sql = f"companyid = ? AND is_deleted = 0 AND courseid IN ({courses})"
    params: list = [read.companyid]
    if options.where:
        sql += f" AND {options.where}"
        params += options.params
    return sql, params


def count(engine: Engine, read: Read, options: Options) -> int:
    sql, params = where(read, options)
    return int(engine.scalar(f"SELECT COUNT(*) FROM {{t:local_alx_api_reporting}} WHERE {sql}", params))


def page(engine: Engine, read: Read, options: Options, columns: tuple[str, ...], *, after: list | None,
         offset: int, limit: int) -> list[tuple]:
    """Up to `limit` rows (userid, courseid, then `columns`) in the options' order, after a row
    (keyset: the rows that sort after its values) or from an offset."""
    sql, params = where(read, options)
    order = [(compared(p, engine.kind), "DESC" if desc else "ASC", "<" if desc else ">") for p, desc in options.order]
    if after is not None:  # e1 >= v1 AND (e1 > v1 OR (e1 = v1 AND (e2 > v2 OR ...))): the first part for the index
        first, _, cmp = order[0]
        condition = ""
        for (expr, _, op), _value in reversed(list(zip(order, after, strict=True))):
            condition = f"{expr} {op} ?" if not condition else f"({expr} {op} ? OR ({expr} = ? AND {condition}))"
        sql += f" AND {first} {cmp}= ? AND {condition}"
        params.append(after[0])
        for i, value in enumerate(after):
            params += [value] if i == len(after) - 1 else [value, value]
    listed = ", ".join((*COLUMNS_ALWAYS, *columns))
    text = (f"SELECT {listed} FROM {{t:local_alx_api_reporting}} WHERE {sql} ORDER BY "
            + ", ".join(f"{expr} {way}" for expr, way, _ in order)
            + f" LIMIT {int(limit)}" + (f" OFFSET {int(offset)}" if offset else ""))
    return engine.rows(text, params)


def positions(columns: tuple[str, ...]) -> dict[str, int]:
    """Where each column is in a row `page` returns."""
    return {**{c: i + len(COLUMNS_ALWAYS) for i, c in enumerate(columns)}, **{c: i for i, c in enumerate(COLUMNS_ALWAYS)}}


def position_of(row: tuple, columns: tuple[str, ...], options: Options) -> list:
    """A row's values of the order items, as `page` compares them (the percentage in hundredths)."""
    at = positions(columns)
    values = []
    for prop, _ in options.order:
        value = row[at[prop.column]]
        values.append(int(round(Decimal(str(value)) * 100)) if prop.edm == "Edm.Decimal" else value)
    return values
