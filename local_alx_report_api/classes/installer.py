"""`alx-report-api install`: create the plugin tables from install.json, or adopt the tables the
original PHP plugin created (settings.md section 3.7), then run numbered upgrade steps."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from local_alx_report_api.classes import company_state
from local_alx_report_api.db.upgrade import STEPS
from moodle_core.engines import Engine
from moodle_core.xmldb import Table, create_statements, tables_from_json


class InstallError(Exception):
    """Install cannot go on; nothing was changed."""


def install_document() -> dict:
    """install.json: shipped inside the package, or at the repository root when run from source."""
    packaged = resources.files("local_alx_report_api").joinpath("install.json")
    if packaged.is_file():
        return json.loads(packaged.read_text(encoding="utf-8"))
    return json.loads((Path(__file__).resolve().parents[2] / "install.json").read_text(encoding="utf-8"))


def plugin_tables() -> list[Table]:
    return tables_from_json(install_document())


def schema_version() -> int:
    return int(install_document()["version"])


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)


def _compatible(engine: Engine, existing, wanted: dict) -> bool:
    return existing.kind == engine.stored_kind(wanted)


def plan_adoption(engine: Engine, table: Table) -> tuple[list[dict], list[dict]]:
    """Columns to add and to widen for an existing table; raises InstallError on a base column
    that is missing or incompatible (before anything is changed)."""
    existing = engine.columns(table.name)
    if not existing:  # PostgreSQL's information_schema hides the columns of a table the user has no rights on
        raise InstallError(f"Table {engine.prefix}{table.name} exists, but the database user has no privileges on it: "
                           "make that user the table's owner (docs/admin-guide.md, moving over from the PHP plugin)")
    add, widen = [], []
    for f in table.fields:
        have = existing.get(f["name"])
        if have is None:
            if not f.get("added"):
                raise InstallError(f"Table {engine.prefix}{table.name}: column {f['name']} is missing; "
                                   "install cannot adopt this table")
            add.append(f)
            continue
        if f.get("sequence"):
            continue
        if not _compatible(engine, have, f):
            raise InstallError(f"Table {engine.prefix}{table.name}: column {f['name']} has an incompatible type "
                               f"({have.kind}{f'({have.length})' if have.length else ''}); install cannot adopt this table")
        if f["type"] in ("char", "int") and have.length and have.length < f["length"] and engine.kind != "sqlite":
            widen.append(f)
    return add, widen


def plan(engine: Engine) -> dict[str, tuple[list[dict], list[dict]]]:
    """What adoption would change per existing table; raises InstallError before any change."""
    present = engine.tables()
    return {t.name: plan_adoption(engine, t) for t in plugin_tables() if engine.prefix + t.name in present}


def install(engine: Engine, now: int) -> Report:
    """Create or adopt the six tables, stamp adopted rows, record the schema version. Idempotent."""
    report = Report()
    tables = plugin_tables()
    plans = plan(engine)
    for table in tables:
        if table.name not in plans:
            for statement in create_statements(engine, table):
                engine.db.execute_sql(statement)
            report.say(f"Created table {engine.prefix}{table.name}")
            continue
        add, widen = plans[table.name]
        for f in add:
            engine.db.execute_sql(engine.add_column_sql(table.name, f))
            report.say(f"Added column {engine.prefix}{table.name}.{f['name']}")
        for f in widen:
            engine.db.execute_sql(engine.widen_column_sql(table.name, f))
            report.say(f"Widened column {engine.prefix}{table.name}.{f['name']} to {f['type']}({f['length']})")
        _add_missing_indexes(engine, table, report)
    engine.compress_fast("local_alx_api_cache", "cache_data")  # a page of 1000 rows is ~300 KB (decision 119)
    _stamp_adopted_rows(engine, now, report)
    _record_version_and_upgrade(engine, now, report)
    return report


def _add_missing_indexes(engine: Engine, table: Table, report: Report) -> None:
    """Indexes are matched by columns and uniqueness, since adopted ones carry Moodle's names."""
    have = {(cols, unique) for _, cols, unique in engine.indexes(table.name)}
    for index in table.indexes:
        if (tuple(index["fields"]), bool(index["unique"])) in have:
            continue
        engine.db.execute_sql(engine.create_index_sql(table.name, index))
        report.say(f"Created index {engine.index_name(table.name, index['name'])}")


def _stamp_adopted_rows(engine: Engine, now: int, report: Report) -> None:
    """Rows left at change_seq 0 (adopted from the original) get new values of their company's
    counter, so incremental pulls from watermark 0 deliver them (settings.md 3.7)."""
    rows = engine.rows("SELECT companyid, MIN(id), MAX(id), COUNT(*) FROM {t:local_alx_api_reporting} "
                       "WHERE change_seq = 0 GROUP BY companyid ORDER BY companyid")
    for companyid, low, high, count in rows:
        company_state.ensure(engine, companyid, now)
        with engine.write_transaction():
            span = int(high) - int(low) + 1
            first = company_state.reserve(engine, companyid, span)
            engine.execute("UPDATE {t:local_alx_api_reporting} SET change_seq = ? + id - ? "
                           "WHERE companyid = ? AND change_seq = 0", (first, low, companyid))
        report.say(f"Stamped {count} adopted reporting rows of company {companyid}")


def installed_version(engine: Engine) -> int | None:
    value = engine.scalar("SELECT setting_value FROM {t:local_alx_api_settings} "
                          "WHERE companyid = 0 AND setting_name = 'schema_version'")
    return None if value is None else int(value)


def _set_version(engine: Engine, version: int, now: int) -> None:
    if installed_version(engine) is None:
        engine.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, "
                       "timecreated, timemodified) VALUES (0, 'schema_version', ?, ?, ?)", (version, now, now))
    else:
        engine.execute("UPDATE {t:local_alx_api_settings} SET setting_value = ?, timemodified = ? "
                       "WHERE companyid = 0 AND setting_name = 'schema_version'", (version, now))


def _record_version_and_upgrade(engine: Engine, now: int, report: Report) -> None:
    base = schema_version()
    current = installed_version(engine)
    if current is None:
        with engine.db.atomic():
            _set_version(engine, base, now)
        report.say(f"Recorded schema version {base}")
        current = base
    for version, description, step in sorted(STEPS, key=lambda s: s[0]):
        if version <= current:
            continue
        with engine.db.atomic():
            step(engine, now)
            _set_version(engine, version, now)
        report.say(f"Upgrade step {version}: {description}")
        current = version
