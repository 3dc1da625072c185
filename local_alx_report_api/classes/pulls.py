"""The pull model (sync-and-cache.md sections 2, 3, 5, 8 and 10): per-token sync state, page
classification, the definition fixed at offset 0, keyset pages that never skip or repeat a row,
completion that moves the watermark, the live fallback and retries with backoff."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import peewee

from local_alx_report_api.classes import sequence
from local_alx_report_api.classes.progress import Key, Progress, Scope, live_rows
from local_alx_report_api.classes.reporting import hundredths
from moodle_core.engines import Engine

log = logging.getLogger(__name__)
FUNCTION = "local_alx_report_api_get_course_progress"
_COLUMNS = ("userid, courseid, firstname, lastname, email, coursename, timecompleted, timestarted, percentage, "
            "status, is_deleted")


@dataclass
class Definition:
    mode: str  # full | incremental | disabled
    since: int
    until: int
    deletions: bool  # tombstones are part of the rows

    def describe(self) -> dict:
        return {"mode": self.mode, "since": self.since, "until": self.until, "deletions": self.deletions}


@dataclass
class Row:
    progress: Progress
    deleted: bool


@dataclass
class PageRequest:
    """Everything that decides which rows one request gets."""

    companyid: int
    token_hash: str
    userid: int
    limit: int
    offset: int
    scope: Scope
    sync_mode: int
    window_hours: int
    adaptive: bool
    deletions: bool
    now: int
    timezone: str


@dataclass
class Slice:
    """A page as served: its response elements, the key of its last row and its row count."""

    elements: list[dict]
    last: Key | None
    count: int


@dataclass
class Outcome:
    slice: Slice
    definition: Definition
    page: str  # start | next | repeat | stateless
    source: str  # table | live
    pull: dict | None = None
    fallback_reason: str | None = None


# -- reading rows ----------------------------------------------------------------------------------
def _row(r) -> Row:
    u, c, fn, ln, em, cn, tc, ts, pct, st, deleted = r
    return Row(Progress(int(u), int(c), fn, ln, em, cn, int(tc), int(ts), hundredths(pct), st), bool(deleted))


def table_rows(engine: Engine, req: PageRequest, definition: Definition, *, after: Key | None = None,
               offset: int = 0) -> list[Row]:
    """Rows of the definition in key order: after a key (keyset, O(page)) or by offset (stateless)."""
    courses = ", ".join(str(int(c)) for c in req.scope.courses) or "NULL"
    where = ["companyid = ?", f"(is_deleted = 1 OR courseid IN ({courses}))"]
    params: list = [req.companyid]
    if definition.mode == "incremental":
        where.append("change_seq > ?")
        params.append(definition.since)
    if not definition.deletions:
        where.append("is_deleted = 0")
    if after is not None:
        where.append("userid >= ? AND (userid > ? OR (userid = ? AND courseid > ?))")
        params += [after[0], after[0], after[0], after[1]]
    sql = (f"SELECT {_COLUMNS} FROM {{t:local_alx_api_reporting}} WHERE {' AND '.join(where)} "
           f"ORDER BY userid, courseid LIMIT {int(req.limit)}" + (f" OFFSET {int(offset)}" if after is None else ""))
    return [_row(r) for r in engine.rows(sql, params)]


def has_rows(engine: Engine, companyid: int) -> bool:
    # ordered by the (companyid, change_seq) index: a bare LIMIT 1 can be planned as a sequential
    # scan that passes every row of the companies stored before this one
    return engine.scalar("SELECT 1 FROM {t:local_alx_api_reporting} WHERE companyid = ? "
                         "ORDER BY companyid, change_seq LIMIT 1", (companyid,)) is not None


def live_page(engine: Engine, req: PageRequest, *, after: Key | None, offset: int) -> list[Row]:
    rows = live_rows(engine, req.scope, req.now, after=after or (0, 0), limit=req.limit,
                     offset=offset if after is None else 0)
    return [Row(p, False) for p in rows]


# -- the token's state -------------------------------------------------------------------------------
def _ensure_state(engine: Engine, req: PageRequest) -> None:
    if engine.scalar("SELECT id FROM {t:local_alx_api_sync_status} WHERE companyid = ? AND token_hash = ?",
                     (req.companyid, req.token_hash)) is not None:
        return
    try:
        with engine.db.atomic():
            engine.insert("local_alx_api_sync_status", {
                "companyid": req.companyid, "token_hash": req.token_hash, "kind": "api", "userid": req.userid,
                "sync_mode": "auto", "last_sync_status": "never", "created_at": req.now, "updated_at": req.now})
    except peewee.IntegrityError:
        pass


_STATE = ("id", "change_seq", "last_sync_timestamp", "last_sync_status", "total_syncs", "consecutive_failures",
          "state_data")


def _lock_state(engine: Engine, req: PageRequest) -> dict:
    row = engine.execute(f"SELECT {', '.join(_STATE)} FROM {{t:local_alx_api_sync_status}} WHERE companyid = ? "
                         f"AND token_hash = ?{engine.for_update}", (req.companyid, req.token_hash)).fetchone()
    state = dict(zip(_STATE, row, strict=True))
    state["data"] = json.loads(state.pop("state_data") or "{}")
    return state


def _save_state(engine: Engine, req: PageRequest, state: dict, **columns) -> None:
    sets = ", ".join(["state_data = ?", "updated_at = ?", "userid = ?", *(f"{c} = ?" for c in columns)])
    engine.execute(f"UPDATE {{t:local_alx_api_sync_status}} SET {sets} WHERE id = ?",
                   (json.dumps(state["data"], separators=(",", ":")), req.now, req.userid, *columns.values(),
                    state["id"]))


# -- choosing the definition at offset 0 -------------------------------------------------------------
def effective_window(engine: Engine, req: PageRequest, state: dict) -> tuple[float, str | None]:
    """sync-and-cache.md 5.4.1: the base window adapted to the token user's usage of 7 days."""
    base = req.window_hours
    if base == 0 or not req.adaptive:
        return float(base), None
    usage = state["data"].get("usage")
    if not usage or req.now - usage.get("computed", 0) >= 3600:
        zone = ZoneInfo(req.timezone)
        today = datetime.fromtimestamp(req.now, zone).date()
        first = today - timedelta(days=6)
        start = int(datetime(first.year, first.month, first.day, tzinfo=zone).timestamp())
        stamps = [r[0] for r in engine.rows("SELECT timeaccessed FROM {t:local_alx_api_logs} WHERE userid = ? AND "
                                            "endpoint = ? AND timeaccessed >= ?", (req.userid, FUNCTION, start))]
        days = {datetime.fromtimestamp(t, zone).date() for t in stamps}
        per_day = len(stamps) / max(len(days), 1)
        usage = {"computed": req.now, "calls_per_day": round(per_day, 2),
                 "pattern": "high" if per_day > 20 else "medium" if per_day > 5 else "low"}
        state["data"]["usage"] = usage
    pattern = usage["pattern"]
    window = max(base * 0.5, 6) if pattern == "high" else base if pattern == "medium" else min(base * 2, 168)
    return float(window), pattern


def choose(engine: Engine, req: PageRequest, state: dict) -> tuple[Definition, dict]:
    until = sequence.current(engine, req.companyid)
    watermark = int(state["change_seq"] or 0)
    extra: dict = {}
    if req.sync_mode == 2:
        return Definition("full", 0, until, False), extra
    if req.sync_mode == 1:
        return Definition("incremental", watermark, until, req.deletions and watermark > 0), extra
    window, pattern = effective_window(engine, req, state)
    extra = {"window": window, "pattern": pattern}
    never = int(state["last_sync_timestamp"] or 0) == 0
    full = (never or state["last_sync_status"] == "failed" or window == 0
            or req.now - int(state["last_sync_timestamp"]) > window * 3600)
    if full:
        return Definition("full", 0, until, False), extra
    return Definition("incremental", watermark, until, req.deletions and watermark > 0), extra


# -- one page --------------------------------------------------------------------------------------
def classify(pull: dict | None, offset: int) -> str:
    if offset == 0:
        return "start"
    if pull and offset == pull["next_offset"]:
        return "next"
    if pull and offset == pull.get("prev_offset") and pull.get("prev_after") is not None:
        return "repeat"
    return "stateless"


def serve(engine: Engine, req: PageRequest, *, read_table, to_elements, attempts: int, base_delay: float) -> Outcome:
    """One page of a pull, modes 0–2: classify, read, save the state before answering.

    `read_table(definition, after, offset)` gives the table's Slice (maybe from the cache);
    `to_elements(rows)` turns live rows into response elements.
    Transient database errors are retried with backoff; a read that still fails is answered
    from live data and marks the pull as failed (sync-and-cache.md 8 and 10)."""
    _ensure_state(engine, req)
    failure: Exception | None = None
    for attempt in range(attempts):
        try:
            with engine.write_transaction():
                return _unit(engine, req, read_table, to_elements, None)
        except Exception as exc:  # noqa: BLE001 - classified below
            failure = exc
            if not engine.transient(exc) or attempt == attempts - 1:
                break
            log.warning("page read failed (attempt %d of %d): %s", attempt + 1, attempts, exc)
            time.sleep(base_delay * 2 ** attempt)
            engine.reconnect()
    log.error("reporting table read failed; answering from live data: %s", failure)
    with engine.write_transaction():
        return _unit(engine, req, read_table, to_elements, type(failure).__name__)


def live_slice(engine: Engine, req: PageRequest, to_elements, *, after: Key | None, offset: int) -> Slice:
    rows = live_page(engine, req, after=after, offset=offset)
    return Slice(to_elements(rows), rows[-1].progress.key if rows else None, len(rows))


def _unit(engine: Engine, req: PageRequest, read_table, to_elements, fallback: str | None) -> Outcome:
    state = _lock_state(engine, req)
    pull = state["data"].get("pull")
    page = classify(pull, req.offset)
    if page == "start":
        if pull is not None:
            log.info("pull %s of company %s abandoned", pull["id"], req.companyid)
        definition, extra = choose(engine, req, state)
        pull = {"id": int(state["data"].get("pulls", 0)) + 1, **definition.describe(), "started": req.now,
                "next_offset": 0, "after": [0, 0], "prev_offset": None, "prev_after": None, "rows": 0, "pages": 0,
                "had_error": False, "fallback_error": None, **extra}
        state["data"]["pulls"] = pull["id"]
        state["data"]["pull"] = pull
    elif pull is not None:
        definition = Definition(pull["mode"], pull["since"], pull["until"], pull["deletions"])
    else:
        definition, _ = choose(engine, req, state)
    after = None
    if page in ("start", "next"):
        after = tuple(pull["after"])
    elif page == "repeat":
        after = tuple(pull["prev_after"])
    filled = fallback is None and has_rows(engine, req.companyid)
    reason = fallback if fallback is not None else (None if filled else "never_filled")
    offset = req.offset if after is None else 0
    if filled:
        served, source = read_table(definition, after, offset), "table"
    else:  # live data is always a full page (there is nothing to be incremental against)
        definition = Definition("full", 0, definition.until, False)
        served, source = live_slice(engine, req, to_elements, after=after, offset=offset), "live"
    if page != "stateless":
        _advance(engine, req, state, pull, page, served, fallback)
    return Outcome(served, definition, page, source, pull, reason)


def _advance(engine: Engine, req: PageRequest, state: dict, pull: dict, page: str, served: Slice, fallback) -> None:
    """Move the cursor past the rows served (5.3); a short page completes the pull."""
    if page == "start":
        base_offset, base_after = 0, [0, 0]
    elif page == "next":
        base_offset, base_after = pull["next_offset"], pull["after"]
    else:  # repeat: the client retried its last page
        base_offset, base_after = pull["prev_offset"], pull["prev_after"]
    pull["prev_offset"], pull["prev_after"] = base_offset, base_after
    pull["next_offset"] = pull["rows"] = base_offset + served.count
    pull["after"] = list(served.last) if served.last else base_after
    pull["pages"] += 1
    if fallback:
        pull["had_error"], pull["fallback_error"] = True, fallback
    if served.count < req.limit:
        _complete(engine, req, state, pull)
    else:
        _save_state(engine, req, state)


def _complete(engine: Engine, req: PageRequest, state: dict, pull: dict) -> None:
    state["data"]["pull"] = None
    state["data"]["last_pull"] = {k: pull[k] for k in ("id", "mode", "since", "until", "rows", "pages", "started")}
    if pull["had_error"]:
        _save_state(engine, req, state, last_sync_status="failed", last_sync_error=pull["fallback_error"],
                    total_syncs=int(state["total_syncs"]) + 1,
                    consecutive_failures=int(state["consecutive_failures"]) + 1)
        return
    _save_state(engine, req, state, last_sync_status="success", last_sync_error=None, change_seq=pull["until"],
                last_sync_timestamp=req.now, last_sync_records=pull["rows"], total_syncs=int(state["total_syncs"]) + 1,
                consecutive_failures=0, sync_mode=pull["mode"],
                sync_window_hours=min(int(pull.get("window") or req.window_hours), 32767))


def serve_stateless(engine: Engine, req: PageRequest, *, read_table, to_elements) -> Outcome:
    """Mode 3 (Disabled): rows O+1 … O+L of the active rows; no sync state at all (5.6)."""
    definition = Definition("disabled", 0, 0, False)
    if has_rows(engine, req.companyid):
        return Outcome(read_table(definition, None, req.offset), definition, "stateless", "table")
    served = live_slice(engine, req, to_elements, after=None, offset=req.offset)
    return Outcome(served, definition, "stateless", "live", None, "never_filled")


def as_moodle_error(engine: Engine, exc: Exception):
    """The envelope for a page that could not be served even from live data (protocol.md 19–21)."""
    from webservice.errors import DmlConnectionException, DmlReadException, MoodleException

    if isinstance(exc, MoodleException):
        return exc
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, peewee.InterfaceError) or (engine.transient(exc) and "connect" in first.lower()):
        return DmlConnectionException(first)
    return DmlReadException(first)
