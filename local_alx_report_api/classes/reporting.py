"""Writing reporting rows under the writer rules W1–W4 (sync-and-cache.md section 4) and the
full company sync that populate, reconcile and first syncs share (tasks.md section 6)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from local_alx_report_api.classes import company_state
from local_alx_report_api.classes.progress import Key, Progress, Scope, live_rows, member_window_end, reported_query
from moodle_core.engines import Engine

INF: Key = (2**62, 2**62)
_COLUMNS = ("id", "userid", "courseid", "firstname", "lastname", "email", "coursename",
            "timecompleted", "timestarted", "percentage", "status", "is_deleted")


COUNTED = ("checked", "inserted", "updated", "reactivated", "deleted", "unchanged")


@dataclass
class Counts:
    checked: int = 0
    inserted: int = 0
    updated: int = 0
    reactivated: int = 0
    deleted: int = 0
    unchanged: int = 0
    examples: list = field(default_factory=list)  # up to 20 keys that changed (reconcile drift alerts)

    def add(self, other: Counts) -> None:
        for name in COUNTED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.examples = (self.examples + other.examples)[:20]

    @property
    def changed(self) -> int:
        return self.inserted + self.updated + self.reactivated + self.deleted

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in COUNTED}


@dataclass
class StoredRow:
    id: int
    values: tuple  # REPORTED order, percentage in hundredths
    is_deleted: bool


def hundredths(value) -> int:
    """A stored NUMERIC(5,2) percentage (Decimal, float on SQLite) in hundredths."""
    return int((Decimal(str(value)) * 100).to_integral_value())


def _stored(row) -> tuple[Key, StoredRow]:
    rid, userid, courseid, fn, ln, em, cn, tc, ts, pct, st, deleted = row
    return (userid, courseid), StoredRow(rid, (fn, ln, em, cn, int(tc), int(ts), hundredths(pct), st), bool(deleted))


def stored_rows(engine: Engine, companyid: int, after: Key, upto: Key | None = None,
                limit: int | None = None) -> dict[Key, StoredRow]:
    """The company's reporting rows with key > after (and ≤ upto), in key order."""
    sql = (f"SELECT {', '.join(_COLUMNS)} FROM {{t:local_alx_api_reporting}} WHERE companyid = ? "
           "AND userid >= ? AND (userid > ? OR (userid = ? AND courseid > ?))")
    params = [companyid, after[0], after[0], after[0], after[1]]
    if upto is not None and upto != INF:
        sql += " AND userid <= ? AND (userid < ? OR (userid = ? AND courseid <= ?))"
        params += [upto[0], upto[0], upto[0], upto[1]]
    sql += " ORDER BY userid, courseid"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return dict(_stored(row) for row in engine.rows(sql, params))


def stored_rows_for(engine: Engine, companyid: int, keys: Iterable[Key]) -> dict[Key, StoredRow]:
    """Stored rows of an explicit key set (read by user, filtered by course)."""
    keys = set(keys)
    out: dict[Key, StoredRow] = {}
    users = sorted({u for u, _ in keys})
    for start in range(0, len(users), 500):
        part = users[start:start + 500]
        marks = ", ".join("?" * len(part))
        for row in engine.rows(f"SELECT {', '.join(_COLUMNS)} FROM {{t:local_alx_api_reporting}} "
                               f"WHERE companyid = ? AND userid IN ({marks})", [companyid, *part]):
            key, stored = _stored(row)
            if key in keys:
                out[key] = stored
    return out


def write_batch(engine: Engine, companyid: int, now: int, keys: list[Key], live: dict[Key, Progress],
                stored: Callable[[], dict[Key, StoredRow]], on_commit: Callable[[Counts], None] | None = None) -> Counts:
    """Make the reporting rows of `keys` match `live` (absent = out of scope), in one transaction.

    Only real changes are written (W2); each gets the next value of the company's counter in key
    order (W1); the counter row lock orders commits (W3, W4). `stored` is read inside the
    transaction. `on_commit(counts)` runs inside it after the writes (e.g. to store a resume key)."""
    counts = Counts(checked=len(keys))
    if not keys:
        return counts
    with engine.write_transaction():
        current = stored()
        inserts, updates = [], []
        for key in keys:
            row, new = current.get(key), live.get(key)
            if new is not None:
                if row is None:
                    inserts.append(new)
                    counts.inserted += 1
                    counts.examples.append(list(key))
                elif row.is_deleted:
                    updates.append((row.id, new.values(), 0))
                    counts.reactivated += 1
                    counts.examples.append(list(key))
                elif row.values != new.values():
                    updates.append((row.id, new.values(), 0))
                    counts.updated += 1
                    counts.examples.append(list(key))
                else:
                    counts.unchanged += 1
            elif row is not None and not row.is_deleted:
                updates.append((row.id, row.values, 1))
                counts.deleted += 1
                counts.examples.append(list(key))
            else:  # out of scope and already deleted (or never stored): nothing to write
                counts.unchanged += 1
        del counts.examples[20:]
        changes = len(inserts) + len(updates)
        if changes:
            seq = company_state.reserve(engine, companyid, changes)
            _insert(engine, companyid, now, inserts, seq)
            _update(engine, now, updates, seq + len(inserts))
        if on_commit:
            on_commit(counts)
    return counts


def _pct(hundredths: int) -> str:
    return f"{hundredths // 100}.{hundredths % 100:02d}"


def _insert(engine: Engine, companyid: int, now: int, rows: list[Progress], seq: int) -> None:
    engine.insert_rows("local_alx_api_reporting",
                       ["userid", "companyid", "courseid", "firstname", "lastname", "email", "coursename",
                        "timecompleted", "timestarted", "percentage", "status", "last_updated", "is_deleted",
                        "created_at", "updated_at", "change_seq"],
                       [(p.userid, companyid, p.courseid, p.firstname, p.lastname, p.email, p.coursename,
                         p.timecompleted, p.timestarted, _pct(p.percentage), p.status, now, 0, now, now, seq + i)
                        for i, p in enumerate(rows)])


def _update(engine: Engine, now: int, rows: list[tuple], seq: int) -> None:
    engine.executemany(
        "UPDATE {t:local_alx_api_reporting} SET firstname = ?, lastname = ?, email = ?, coursename = ?, "
        "timecompleted = ?, timestarted = ?, percentage = ?, status = ?, is_deleted = ?, last_updated = ?, "
        "updated_at = ?, change_seq = ? WHERE id = ?",
        [(*values[:6], _pct(values[6]), values[7], deleted, now, now, seq + i, rid)
         for i, (rid, values, deleted) in enumerate(rows)])


def purge_cache(engine: Engine, companyid: int) -> int:
    """Delete the company's cache entries; returns how many there were."""
    return engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE companyid = ?", (companyid,)).rowcount


@dataclass
class Batch:
    """One step of a full company sync: the keys it covered and what it changed."""

    upto: Key
    counts: Counts = field(default_factory=Counts)


def full_sync(engine: Engine, scope: Scope, now: int, batch_size: int, *, after: Key = (0, 0),
              on_batch: Callable[[Batch], None] | None = None,
              should_stop: Callable[[], bool] = lambda: False, live: Engine | None = None) -> tuple[Counts, Key]:
    """Walk the union of live scope and stored rows in key order, batch by batch (tasks.md 6).

    Two key-ordered streams are merged without loading the company: a window of live pairs and
    the stored rows after `after`; each batch covers keys up to the point where both streams are
    known, at most `batch_size` keys. Once no stored row lies ahead (a company being filled),
    every live pair is an insert: the batch is written inside the database (`_insert_window`).
    The window of members adapts to the pairs per member seen, so a batch computes about
    `batch_size` pairs, not `batch_size` members' worth. Returns the totals and the resume key
    (INF when done). `live`: where Moodle's tables are read (a replica: the values are computed
    here and written, not INSERT ... SELECT on the primary)."""
    live = live or engine
    total = Counts()
    companyid = scope.companyid
    window = max(8, batch_size // 4)  # members; adapted after each batch (_next_window)
    filling = False  # the last batch found no stored row ahead: under the company's lock none appears
    while after != INF and not should_stop():
        upto_user = member_window_end(live, companyid, after[0], window)
        rep = {} if filling else stored_rows(engine, companyid, after, limit=batch_size)
        bulk = not rep and engine.insert_select_fill and live is engine
        done = _insert_window(engine, scope, now, after, upto_user, batch_size) if bulk else None
        if done is None and filling:  # a row appeared ahead after all: merge with what is stored
            rep = stored_rows(engine, companyid, after, limit=batch_size)
        filling = done is not None
        if done is not None:
            counts, bound, users = done
        else:
            pairs = live_rows(live, scope, now, after=after, upto_user=upto_user, limit=batch_size)
            live_bound = pairs[-1].key if len(pairs) == batch_size else ((upto_user, INF[1]) if upto_user else INF)
            rep_bound = list(rep)[-1] if len(rep) == batch_size else INF
            bound = min(live_bound, rep_bound)
            keys = sorted({p.key for p in pairs if p.key <= bound} | {k for k in rep if k <= bound})
            if len(keys) > batch_size:
                keys = keys[:batch_size]
                bound = keys[-1]
            wanted = {p.key: p for p in pairs if p.key <= bound}
            counts = write_batch(engine, companyid, now, keys, wanted,
                                 lambda start=after, upto=bound: stored_rows(engine, companyid, start, upto))
            users = len({p.userid for p in pairs})
        if counts.changed:
            purge_cache(engine, companyid)
        total.add(counts)
        after = bound
        window = _next_window(window, batch_size, counts.checked, users)
        if on_batch:
            on_batch(Batch(bound, counts))
    return total, after


def _next_window(window: int, batch_size: int, pairs: int, users: int) -> int:
    """Members for the next window: about batch_size pairs at the density just seen; a batch
    that did not fill (the window ran out first) doubles it."""
    if users <= 0 or pairs < batch_size:
        return min(window * 2, 16 * batch_size)
    return max(8, min(16 * batch_size, -(-batch_size * 23 * users // (20 * pairs))))


_INSERT_COLUMNS = ("userid", "companyid", "courseid", "firstname", "lastname", "email", "coursename",
                   "timecompleted", "timestarted", "percentage", "status", "last_updated", "is_deleted",
                   "created_at", "updated_at", "change_seq")


def _insert_window(engine: Engine, scope: Scope, now: int, after: Key, upto_user: int | None,
                   batch_size: int) -> tuple[Counts, Key, int] | None:
    """One batch when no stored row of the company lies after `after`: the live pairs of the
    window are inserted with one INSERT ... SELECT (values computed by the database, the formulas
    of progress.reported_query), each with the next counter value in key order (W1), under the
    counter's row lock (W3, W4). Returns (counts, bound, users in the batch), or None when a row
    appeared after `after` meanwhile (the caller merges as usual)."""
    companyid = scope.companyid
    query = reported_query(engine, scope, now, after=after, upto_user=upto_user, limit=batch_size)
    if query is None:  # nothing can be in scope and nothing is stored ahead: the walk is over
        return Counts(), INF, 0
    select, params = query
    with engine.write_transaction():
        if stored_rows(engine, companyid, after, limit=1):
            return None
        first = company_state.reserve(engine, companyid, 0)  # locks the counter row: the first free value
        order = "ORDER BY r.userid, r.courseid"
        sql = (f"INSERT INTO {{t:local_alx_api_reporting}} ({', '.join(_INSERT_COLUMNS)}) "
               f"SELECT r.userid, {int(companyid)}, r.courseid, r.firstname, r.lastname, r.email, r.coursename, "
               f"r.timecompleted, r.timestarted, r.hundredths / 100.0, r.status, {int(now)}, 0, {int(now)}, "
               f"{int(now)}, {int(first) - 1} + ROW_NUMBER() OVER ({order}) FROM ({select}) r {order}")
        if engine.insert_returning:
            keys = sorted((int(u), int(c)) for u, c in engine.rows(sql + " RETURNING userid, courseid", params))
        else:
            inserted = engine.execute(sql, params).rowcount
            keys = [(int(u), int(c)) for u, c in engine.rows(
                "SELECT userid, courseid FROM {t:local_alx_api_reporting} WHERE companyid = ? AND change_seq >= ? "
                "AND change_seq < ? ORDER BY change_seq", (companyid, first, first + inserted))] if inserted else []
        if keys:
            company_state.reserve(engine, companyid, len(keys))
    counts = Counts(checked=len(keys), inserted=len(keys), examples=[list(k) for k in keys[:20]])
    if len(keys) == batch_size:
        bound = keys[-1]
    else:
        bound = (upto_user, INF[1]) if upto_user else INF
    return counts, bound, len({u for u, _ in keys})
