"""Per-company settings (settings.md section 2): rows of local_alx_api_settings over defaults;
saving them as the control center does, and clearing a company's data (admin-ui.md 3.3)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import peewee

from local_alx_report_api.classes import client_state, company_state
from local_alx_report_api.classes.reporting import Counts, purge_cache, stored_rows_for, write_batch
from moodle_core.engines import DATABASE_ERRORS, Engine
from moodle_core.moodle import Company

log = logging.getLogger(__name__)
SYNC_MODES = {0: "Auto", 1: "Always incremental", 2: "Always full", 3: "Disabled"}  # sync_mode, by value

FIELDS = ("userid", "firstname", "lastname", "email", "courseid", "coursename", "timecompleted",
          "timecompleted_unix", "timestarted", "timestarted_unix", "percentage", "status")
# name → (low, high, default); None default = "absent" (rate_limit and rate_limit_per_pull fall back
# to the global value)
RANGES = {**{f"field_{f}": (0, 1, 1) for f in FIELDS},
          "sync_mode": (0, 3, 0), "sync_window_hours": (0, 8760, 24), "adaptive_sync_window": (0, 1, 1),
          "incremental_deletions": (0, 1, 1), "enable_cache": (0, 1, 1), "cache_ttl_minutes": (1, 1440, 60),
          "rate_limit": (0, 1000000, None), "rate_limit_per_pull": (0, 1, None)}


@dataclass
class CompanySettings:
    companyid: int
    values: dict[str, int]
    switched_off: frozenset[int]
    table: tuple[int, bool] | None = None  # with_table: company_state.current_and_filled, read with them

    def get(self, name: str):
        return self.values.get(name, RANGES[name][2])

    @property
    def fields(self) -> tuple[str, ...]:
        """The enabled response keys, in response order."""
        return tuple(f for f in FIELDS if self.get(f"field_{f}") != 0)


def load(engine: Engine, companyid: int, *, with_table: bool = False) -> CompanySettings:
    """The company's settings; `with_table`: also the state of its table, in the same round trip
    (a page request needs both)."""
    sql, params = "SELECT setting_name, setting_value FROM {t:local_alx_api_settings} WHERE companyid = ?", (companyid,)
    if not with_table:
        return _parsed(companyid, engine.rows(sql, params))
    table_sql, table_params = company_state.table_state_select(companyid)
    try:
        rows = engine.rows(f"{sql} UNION ALL {table_sql}", (*params, *table_params))
    except DATABASE_ERRORS:  # the table cannot be read: the pull's retries and live fallback decide
        return _parsed(companyid, engine.rows(sql, params))
    loaded = _parsed(companyid, [r for r in rows if not r[0].startswith(".")])
    loaded.table = company_state.table_state(rows)
    return loaded


def load_all(engine: Engine, companyids) -> dict[int, CompanySettings]:
    """The settings of these companies in one query (a page listing every company)."""
    grouped: dict[int, list] = {int(cid): [] for cid in companyids}
    for companyid, name, value in engine.rows("SELECT companyid, setting_name, setting_value FROM "
                                              "{t:local_alx_api_settings} WHERE companyid > 0"):
        if int(companyid) in grouped:
            grouped[int(companyid)].append((name, value))
    return {cid: _parsed(cid, rows) for cid, rows in grouped.items()}


def _parsed(companyid: int, rows) -> CompanySettings:
    values, off = {}, set()
    for name, value in rows:
        value = int(value)
        if name.startswith("course_") and name[7:].isdigit():
            if value == 0:
                off.add(int(name[7:]))
        elif name in RANGES:
            low, high, _ = RANGES[name]
            if low <= value <= high:
                values[name] = value
            else:
                log.warning("company %s setting %s = %s is out of range %s-%s; using the default",
                            companyid, name, value, low, high)
    return CompanySettings(companyid, values, frozenset(off))


def save(engine, company: Company, store: dict, before: CompanySettings, now: int) -> tuple[Counts, set]:
    """One transaction (admin-ui.md 3.3): the settings rows, then the rows of courses now switched
    off soft-deleted with new change_seq values (the sync's own writer, W1), then the cache.
    Returns the write counts and the courses switched on."""
    switched_on = {cid for cid, on in store["courses"].items() if on and cid in before.switched_off}
    off = [cid for cid, on in store["courses"].items() if not on]
    rows = {name: value for name, value in store.items() if name != "courses"}
    rows.update({f"course_{cid}": on for cid, on in store["courses"].items()})
    company_state.ensure(engine, company.id, now)
    for attempt in (1, 2):  # a concurrent first save may insert the same rows: the second try updates
        try:
            with engine.write_transaction():
                _write_rows(engine, company.id, rows, now)
                keys = sorted((int(u), int(c)) for u, c in engine.rows(
                    f"SELECT userid, courseid FROM {{t:local_alx_api_reporting}} WHERE companyid = ? AND "
                    f"is_deleted = 0 AND courseid IN ({', '.join('?' * len(off)) or 'NULL'})", (company.id, *off)))
                counts = write_batch(engine, company.id, now, keys, {},
                                     lambda k=keys: stored_rows_for(engine, company.id, k))
                purge_cache(engine, company.id)
            return counts, switched_on
        except peewee.IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _write_rows(engine, companyid: int, rows: dict, now: int) -> None:
    existing = {name for (name,) in engine.rows(
        "SELECT setting_name FROM {t:local_alx_api_settings} WHERE companyid = ?", (companyid,))}
    for name, value in rows.items():
        if value is None:  # rate_limit left empty: the global value applies
            engine.execute("DELETE FROM {t:local_alx_api_settings} WHERE companyid = ? AND setting_name = ?",
                           (companyid, name))
        elif name in existing:
            engine.execute("UPDATE {t:local_alx_api_settings} SET setting_value = ?, timemodified = ? "
                           "WHERE companyid = ? AND setting_name = ?", (value, now, companyid, name))
        else:
            engine.insert("local_alx_api_settings", {"companyid": companyid, "setting_name": name,
                                                     "setting_value": value, "timecreated": now, "timemodified": now})


def clear_company_data(engine, companyid: int) -> tuple[int, int, int]:
    """Delete the company's reporting rows, client and sync state and cache in one transaction
    under its lock, without waiting (admin-ui.md 3.3; the only physical deletion of rows).
    Returns (reporting rows, sync states, cache entries) deleted; raises LockBusy."""
    with engine.lock(f"company_{companyid}"), engine.write_transaction():
        rows = engine.execute("DELETE FROM {t:local_alx_api_reporting} WHERE companyid = ?", (companyid,)).rowcount
        states = client_state.forget_company(engine, companyid) + company_state.forget(engine, companyid)
        cached = engine.execute("DELETE FROM {t:local_alx_api_cache} WHERE companyid = ?", (companyid,)).rowcount
    return rows, states, cached
