"""The pull model (sync-and-cache.md sections 2, 3, 5, 8 and 10): per-token sync state, page
classification, the definition fixed at offset 0, keyset pages that never skip or repeat a row,
completion that moves the watermark, the live fallback and retries with backoff."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from local_alx_report_api.classes import client_state, company_state, replica_reads
from local_alx_report_api.classes.progress import Key, Progress, Scope, live_rows
from local_alx_report_api.classes.reporting import hundredths
from moodle_core.engines import DATABASE_ERRORS, Engine
from webservice.external import Encoded

log = logging.getLogger(__name__)
FUNCTION = "local_alx_report_api_get_course_progress"
TABLE_COLUMNS = ("userid", "courseid", "firstname", "lastname", "email", "coursename", "timecompleted",
                 "timestarted", "percentage", "status", "is_deleted")
_COLUMNS = ", ".join(TABLE_COLUMNS)


@dataclass
class Definition:
    mode: str  # full | incremental | disabled
    since: int
    until: int
    deletions: bool  # tombstones are part of the rows
    reason: str = ""  # why this definition: a REASONS key

    def describe(self) -> dict:
        return {"mode": self.mode, "since": self.since, "until": self.until, "deletions": self.deletions,
                "reason": self.reason}


# why a pull got its definition (the request log's `reason`, the control center's words)
REASONS = {
    "mode_full": "the client asked for mode=full",
    "mode_incremental": "the client asked for mode=incremental",
    "company_full": "the company is set to Always full",
    "company_incremental": "the company is set to Always incremental",
    "client_full": "Auto: a Power Query client (its User-Agent is in full_pull_user_agents)",
    "first_pull": "Auto: the token's first pull",
    "last_failed": "Auto: the token's last pull failed",
    "window_zero": "Auto: the sync window is 0",
    "window_passed": "Auto: the last successful pull is older than the sync window",
    "within_window": "Auto: within the sync window since the last successful pull",
    "live_data": "live data (the company's table was never filled, or could not be read) is always full",
}
MODES = ("auto", "full", "incremental")  # the `mode` parameter


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
    scope_source: Scope | Callable[[], Scope] | None  # a loader: a page from the cache needs no scope
    sync_mode: int
    window_hours: int
    adaptive: bool
    deletions: bool
    now: int
    timezone: str
    requested: str = "auto"  # the `mode` parameter
    client: str | None = None  # which client's pull: "id:<X-ALX-Pull-Id>" or "ua:<hash of User-Agent, mode>"
    user_agent: str = ""
    full_agents: tuple[str, ...] = ()  # User-Agent prefixes whose Auto pulls are full
    table: tuple[int, bool] | None = None  # the company's counter and whether its table has rows, when read already

    @functools.cached_property
    def scope(self) -> Scope | None:
        return self.scope_source() if callable(self.scope_source) else self.scope_source

    @property
    def full_agent(self) -> bool:
        return any(self.user_agent.startswith(prefix) for prefix in self.full_agents if prefix)


def client_key(pull_id: str | None, user_agent: str, requested: str) -> str:
    """Tells one token's clients apart: the pull id a connector sends (our Power Query function
    sends one per refresh), else the client software and the mode it asks for."""
    if pull_id:
        return "id:" + pull_id[:100]
    return "ua:" + hashlib.sha256(f"{user_agent}\n{requested}".encode()).hexdigest()[:16]


@dataclass
class Slice:
    """A page as served: its response elements, the key of its last row and its row count."""

    elements: list[dict] | Encoded  # a cached page is kept encoded
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
    return [_row(r) for r in table_tuples(engine, req, definition, after=after, offset=offset)]


def table_tuples(engine: Engine, req: PageRequest, definition: Definition, *, after: Key | None = None,
                 offset: int = 0) -> list[tuple]:
    """`table_rows` as the database gives them (TABLE_COLUMNS), for a page that turns them
    into response elements at once (pages.table_elements)."""
    courses = ", ".join(str(int(c)) for c in req.scope.courses) or "NULL"
    where = ["companyid = ?", f"(is_deleted = 1 OR courseid IN ({courses}))"]
    params: list = [req.companyid]
    if definition.mode == "incremental":
        where.append("change_seq > ?")
        params.append(definition.since)
    elif definition.deletions:  # the union of a full and an incremental pull (decision 87)
        where.append("(is_deleted = 0 OR change_seq > ?)")
        params.append(definition.since)
    if not definition.deletions:
        where.append("is_deleted = 0")
    if after is not None:
        where.append("userid >= ? AND (userid > ? OR (userid = ? AND courseid > ?))")
        params += [after[0], after[0], after[0], after[1]]
    sql = (f"SELECT {_COLUMNS} FROM {{t:local_alx_api_reporting}} WHERE {' AND '.join(where)} "
           f"ORDER BY userid, courseid LIMIT {int(req.limit)}" + (f" OFFSET {int(offset)}" if after is None else ""))
    return engine.rows(sql, params)


def has_rows(engine: Engine, companyid: int) -> bool:
    """Whether the company's table holds any row (the API serves from it once it does)."""
    return company_state.current_and_filled(engine, companyid)[1]


def live_page(engine: Engine, req: PageRequest, *, after: Key | None, offset: int) -> list[Row]:
    rows = live_rows(replica_reads.live(engine), req.scope, req.now, after=after or (0, 0), limit=req.limit,
                     offset=offset if after is None else 0)
    return [Row(p, False) for p in rows]


# -- choosing the definition at offset 0 -------------------------------------------------------------
def effective_window(engine: Engine, req: PageRequest, state: dict) -> tuple[float, str | None]:
    """sync-and-cache.md 5.4.1: the base window adapted to the token user's usage of 7 days."""
    base = req.window_hours
    if base == 0 or not req.adaptive:
        return float(base), None
    usage = state["data"].get("usage")
    if (not isinstance(usage, dict) or usage.get("pattern") not in ("high", "medium", "low")
            or req.now - int(usage.get("computed") or 0) >= 3600):
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


def choose(engine: Engine, req: PageRequest, state: dict, until: int) -> tuple[Definition, dict]:
    """The definition of a new pull (5.4), with the client's `mode` and the Power Query rule of
    issue 12 before the company's mode; Always incremental is never overridden by the agent.
    `until`: the company's counter as read by this request."""
    watermark = int(state["change_seq"] or 0)

    def full(reason):
        return Definition("full", 0, until, False, reason)

    def incremental(reason):
        return Definition("incremental", watermark, until, req.deletions and watermark > 0, reason)

    extra: dict = {"user_agent": req.user_agent[:120]}
    if req.requested == "full":
        return full("mode_full"), extra
    if req.requested == "incremental":
        return incremental("mode_incremental"), extra
    if req.sync_mode == 2:
        return full("company_full"), extra
    if req.sync_mode == 1:
        return incremental("company_incremental"), extra
    if req.full_agent:
        return full("client_full"), extra
    window, pattern = effective_window(engine, req, state)
    extra.update(window=window, pattern=pattern)
    last = int(state["last_sync_timestamp"] or 0)
    if last == 0:
        return full("first_pull"), extra
    if state["last_sync_status"] == "failed":
        return full("last_failed"), extra
    if window == 0:
        return full("window_zero"), extra
    if req.now - last > window * 3600:
        return full("window_passed"), extra
    return incremental("within_window"), extra


# -- the open pulls of a token (issue 12: several at once) ------------------------------------------
MAX_OPEN_PULLS = 16  # one token's concurrent pulls (queries of a model, Desktop and the service)
PULL_IDLE_SECONDS = 86400  # a pull with no page for a day is abandoned
RESTART_IDLE_SECONDS = 900  # a client's restart abandons its own pulls idle this long (decision 87)


_PULL_KEYS = {"id": int, "mode": str, "since": int, "until": int, "deletions": bool, "started": int,
              "next_offset": int, "after": list, "rows": int, "pages": int, "had_error": bool}


def _sound(pull) -> bool:
    if not isinstance(pull, dict) or any(not isinstance(pull.get(k), t) for k, t in _PULL_KEYS.items()):
        return False
    keys = [pull["after"], pull.get("prev_after") or [0, 0]]
    return all(len(k) == 2 and all(isinstance(v, int) for v in k) for k in keys) and pull["mode"] in ("full", "incremental")


def open_pulls(data: dict, now: int | None = None) -> list[dict]:
    """The token's open pulls (state_data "open"), the state of earlier releases ("pull") included,
    damaged entries left out; with `now`, pulls idle for PULL_IDLE_SECONDS too."""
    found = list(data.get("open") or []) if isinstance(data.get("open"), list) else []
    if isinstance(data.get("pull"), dict):  # one open pull, as the first release kept it: any client's
        found.append({"client": None, "deletions": False, "fallback_error": None, **data["pull"]})
    found = [p for p in found if _sound(p)]
    if now is not None:
        found = [p for p in found if now - int(p.get("touched") or p["started"]) < PULL_IDLE_SECONDS]
    return found


def _candidates(pulls: list[dict], offset: int, client: str | None) -> list[tuple[dict, str]]:
    """The caller's open pulls this offset continues: (pull, "next" or "repeat")."""
    out = []
    for pull in pulls:
        if pull.get("client") not in (None, client):
            continue
        if offset == pull["next_offset"]:
            out.append((pull, "next"))
        elif offset == pull.get("prev_offset") and pull.get("prev_after") is not None:
            out.append((pull, "repeat"))
    return out


def _cursor(pull: dict, page: str) -> tuple[int, int]:
    return tuple(pull["after"] if page == "next" else pull["prev_after"])


def _union(pulls: list[dict]) -> tuple[str, int, bool]:
    """(mode, since, deletions) whose rows hold the rows of every pull given: full if any is full,
    changes since the earliest `since`, tombstones if any delivers them."""
    deletions = any(p["deletions"] for p in pulls)
    if any(p["mode"] == "full" for p in pulls):
        return "full", min((p["since"] for p in pulls if p["deletions"]), default=0), deletions
    return "incremental", min(p["since"] for p in pulls), deletions


def _select(found: list[tuple[dict, str]], limit: int) -> tuple[dict, str]:
    """The pull a page continues. Clients that share a token and a client key (a connector that
    sends no X-ALX-Pull-Id) cannot be told apart: when several of their pulls stand at this
    offset, each is moved back to the smallest cursor and the earliest `until` among them, and
    given rows holding the rows of them all, so whichever client asked is served from no later
    than its own position and nothing it needs: a row may come twice or unasked, none is lost,
    and no watermark passes a change the completing client did not receive (decision 87)."""
    if len(found) == 1:
        return found[0]
    pulls = [p for p, _ in found]
    mode, since, deletions = _union(pulls)
    cursor = min(_cursor(p, page) for p, page in found)
    until = min(p["until"] for p in pulls)
    error = next((p["fallback_error"] for p in pulls if p["had_error"]), None)
    for pull, page in found:
        pull["after" if page == "next" else "prev_after"] = list(cursor)
        pull.update(mode=mode, since=since, deletions=deletions, until=until)
        if error:
            pull["had_error"], pull["fallback_error"] = True, error
    # a next page moves a pull forward; a repeat rewinds one, preferably one whose last page had
    # this size, so that the other client's next offset is still found
    return min(found, key=lambda c: (c[1] != "next", c[0]["next_offset"] - (c[0]["prev_offset"] or 0) != limit,
                                     c[0]["started"], c[0]["id"]))


class NotANextPage(Exception):
    """The page was admitted free as the next page of an open pull, but is not one (any more)."""


# -- one page --------------------------------------------------------------------------------------
def classify(pulls: list[dict], req: PageRequest) -> tuple[dict | None, str]:
    if req.offset == 0:
        return None, "start"
    found = _candidates(pulls, req.offset, req.client)
    if not found:
        return None, "stateless"
    return _select(found, req.limit)


def is_next_page(engine: Engine, companyid: int, token_hash: str, offset: int, client: str, now: int) -> bool:
    """Whether this request continues one of the caller's open pulls with its next page (read
    without a lock: the page itself is classified again under the state's lock)."""
    if offset == 0:
        return False
    pulls = open_pulls(client_state.peek(engine, companyid, token_hash), now)
    return any(page == "next" for _, page in _candidates(pulls, offset, client))


def serve(engine: Engine, req: PageRequest, *, read_table, to_elements, attempts: int, base_delay: float,
          free: bool = False) -> Outcome:
    """One page of a pull, modes 0–2: classify, read, save the state before answering.

    `read_table(definition, after, offset, dataversion)` gives the table's Slice (maybe from the
    cache, whose key holds the company's counter as this request read it);
    `to_elements(rows)` turns live rows into response elements. `free`: the request was not
    counted by the rate limit as the next page of an open pull; NotANextPage is raised, with
    nothing changed, when it turns out not to be one.
    Transient database errors are retried with backoff; a read that still fails is answered
    from live data and marks the pull as failed (sync-and-cache.md 8 and 10)."""
    def unit():
        with engine.write_transaction():
            return _unit(engine, req, read_table, to_elements, None, free)

    try:
        try:
            return engine.retrying(unit, attempts, base_delay, "page read")
        except client_state.Missing:  # the token's first page: its row is made, then the page is read
            client_state.ensure(engine, req.companyid, req.token_hash, req.userid, req.now)
            return engine.retrying(unit, attempts, base_delay, "page read")
    except DATABASE_ERRORS as exc:  # only the database's errors: a bug is raised as it is
        log.error("reporting table read failed; answering from live data", exc_info=True)
        failure = exc
    client_state.ensure(engine, req.companyid, req.token_hash, req.userid, req.now)
    with engine.write_transaction():
        return _unit(engine, req, read_table, to_elements, type(failure).__name__, free)


def live_slice(engine: Engine, req: PageRequest, to_elements, *, after: Key | None, offset: int) -> Slice:
    rows = live_page(engine, req, after=after, offset=offset)
    return Slice(to_elements(rows), rows[-1].progress.key if rows else None, len(rows))


def _start(engine: Engine, req: PageRequest, state: dict, pulls: list[dict], until: int) -> dict:
    """A new pull (5.3 start). Other clients' open pulls stay open. The caller's own earlier pull
    is abandoned when the caller names its pulls (X-ALX-Pull-Id); a client that does not name
    them abandons only its pulls idle for RESTART_IDLE_SECONDS (pulls it gave up, not a
    concurrent query's), so that they do not linger beside the new one."""
    named = bool(req.client and req.client.startswith("id:"))
    for old in [p for p in pulls if p.get("client") == req.client]:
        if named or req.now - int(old.get("touched") or old["started"]) >= RESTART_IDLE_SECONDS:
            log.info("pull %s of company %s abandoned", old["id"], req.companyid)
            pulls.remove(old)
    definition, extra = choose(engine, req, state, until)
    counter = state["data"].get("pulls")
    pull = {"id": (counter if isinstance(counter, int) else 0) + 1, "client": req.client, **definition.describe(),
            "started": req.now, "touched": req.now, "next_offset": 0, "after": [0, 0], "prev_offset": None,
            "prev_after": None, "rows": 0, "pages": 0, "had_error": False, "fallback_error": None, **extra}
    state["data"]["pulls"] = pull["id"]
    pulls.append(pull)
    pulls.sort(key=lambda p: p.get("touched") or p["started"])
    for old in pulls[:-MAX_OPEN_PULLS]:
        log.info("pull %s of company %s abandoned (more than %d open)", old["id"], req.companyid, MAX_OPEN_PULLS)
    del pulls[:-MAX_OPEN_PULLS]
    return pull


def _unit(engine: Engine, req: PageRequest, read_table, to_elements, fallback: str | None, free: bool) -> Outcome:
    state = client_state.lock(engine, req.companyid, req.token_hash)
    # after a failed read of the table (fallback), only the counter: the table is not touched again
    if fallback is not None:
        version, filled = company_state.current(engine, req.companyid), False
    else:
        version, filled = req.table or company_state.current_and_filled(engine, req.companyid)
        if version < int(state["change_seq"] or 0):  # another pull of the token read a newer counter
            version = company_state.current(engine, req.companyid)  # since the early read: read it again
    pulls = open_pulls(state["data"], req.now)
    state["data"].pop("pull", None)
    state["data"]["open"] = pulls
    pull, page = classify(pulls, req)
    if free and page != "next":
        raise NotANextPage()
    if page == "start":
        pull = _start(engine, req, state, pulls, version)
    if pull is not None:
        definition = Definition(pull["mode"], pull["since"], pull["until"], pull["deletions"], pull.get("reason", ""))
    else:
        definition, _ = choose(engine, req, state, version)
    after = None
    if page == "start":
        after = (0, 0)
    elif page != "stateless":
        after = _cursor(pull, page)
    reason = fallback if fallback is not None else (None if filled else "never_filled")
    offset = req.offset if after is None else 0
    if filled:
        served, source = read_table(definition, after, offset, version), "table"
    else:  # live data is always a full page (there is nothing to be incremental against)
        definition = Definition("full", 0, definition.until, False, "live_data")
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
    pull["touched"] = req.now
    if fallback:
        pull["had_error"], pull["fallback_error"] = True, fallback
    if served.count < req.limit:
        _complete(engine, req, state, pull)
    else:
        client_state.save(engine, state, req.now, req.userid)


def _complete(engine: Engine, req: PageRequest, state: dict, pull: dict) -> None:
    state["data"]["open"].remove(pull)
    state["data"]["last_pull"] = {k: pull.get(k) for k in ("id", "mode", "since", "until", "rows", "pages", "started",
                                                           "reason", "client", "user_agent")}
    state["data"]["last_pull"]["finished"] = req.now
    if pull["had_error"]:
        client_state.save(engine, state, req.now, req.userid, last_sync_status="failed",
                          last_sync_error=pull["fallback_error"], total_syncs=int(state["total_syncs"]) + 1,
                          consecutive_failures=int(state["consecutive_failures"]) + 1)
        return
    client_state.save(engine, state, req.now, req.userid, last_sync_status="success", last_sync_error=None,
                      change_seq=pull["until"], last_sync_timestamp=req.now, last_sync_records=pull["rows"],
                      total_syncs=int(state["total_syncs"]) + 1, consecutive_failures=0, sync_mode=pull["mode"],
                      sync_window_hours=min(int(pull.get("window") or req.window_hours), 32767))


def serve_stateless(engine: Engine, req: PageRequest, *, read_table, to_elements) -> Outcome:
    """Mode 3 (Disabled): rows O+1 … O+L of the active rows; no sync state at all (5.6)."""
    definition = Definition("disabled", 0, 0, False)
    version, filled = req.table or company_state.current_and_filled(engine, req.companyid)
    if filled:
        return Outcome(read_table(definition, None, req.offset, version), definition, "stateless", "table")
    served = live_slice(engine, req, to_elements, after=None, offset=req.offset)
    return Outcome(served, definition, "stateless", "live", None, "never_filled")

