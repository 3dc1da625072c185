"""install.json is the schema: DDL and models agree on every engine; install is idempotent and
adopts the original plugin's tables without losing a row (settings.md section 3)."""

import copy

import pytest

from local_alx_report_api.classes import company_state, installer
from moodle_core.moodle_schema import moodle_tables
from moodle_core.xmldb import create_statements, make_models, tables_from_json
from tests.sites import NOW


def test_install_json_describes_the_six_tables():
    doc = installer.install_document()
    assert doc["version"] == 2026112500
    names = [t["name"] for t in doc["tables"]]
    assert names == ["local_alx_api_logs", "local_alx_api_settings", "local_alx_api_reporting",
                     "local_alx_api_sync_status", "local_alx_api_cache", "local_alx_api_alerts"]
    reporting = {f["name"]: f for f in doc["tables"][2]["fields"]}
    assert reporting["coursename"]["length"] == 1333 and reporting["change_seq"]["added"]
    assert [f["name"] for f in doc["tables"][0]["fields"]][-1] == "source"


def _physical(engine, field):
    """What the engine should report for an install.json field (settings.md type mapping)."""
    kind, n = field["type"], field.get("length")
    if engine.kind == "sqlite":
        return {"char": "text"}.get(kind, kind), None
    if kind == "int":
        if engine.kind == "postgresql":
            return "int", 10 if n >= 10 else 5 if n >= 5 else 4
        return "int", 10 if n >= 10 else 5 if n >= 5 else 4 if n >= 3 else 2
    if kind == "char":
        return "char", n
    if kind == "number":
        return "number", n
    return "text", None


def same_value(a, b) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def test_ddl_models_and_install_json_agree(db):
    installer.install(db, NOW)
    models = make_models(installer.plugin_tables(), db.db, db.prefix)
    for table in installer.plugin_tables():
        columns = db.columns(table.name)
        model = models[table.name]
        assert list(columns) == [f["name"] for f in table.fields]
        assert [f.column_name for f in model._meta.sorted_fields] == [f["name"] for f in table.fields]
        for field in table.fields:
            column = columns[field["name"]]
            if field.get("sequence"):
                continue
            assert (column.kind, column.length if db.kind != "sqlite" else None) == _physical(db, field), field
            assert column.notnull == bool(field["notnull"]), field
            model_field = model._meta.columns[field["name"]]
            assert model_field.null == (not field["notnull"])
            if field["default"] is not None:
                assert same_value(column.default, field["default"]), field
                assert model_field.default == field["default"]
        indexes = {(cols, unique) for _, cols, unique in db.indexes(table.name)}
        for index in table.indexes:
            assert (tuple(index["fields"]), index["unique"]) in indexes
    # the models really read and write the tables
    Settings = models["local_alx_api_settings"]
    Settings.create(companyid=1, setting_name="field_email", setting_value=0, timecreated=NOW, timemodified=NOW)
    assert Settings.get(Settings.setting_name == "field_email").setting_value == 0


def test_install_is_idempotent_and_records_the_version(db):
    first = installer.install(db, NOW)
    assert sum(line.startswith("Created table") for line in first.lines) == 6
    assert "Recorded schema version 2026112500" in first.lines
    assert installer.installed_version(db) == 2026112500
    again = installer.install(db, NOW + 1)
    assert again.lines == []


def test_physical_index_names_carry_prefix_and_are_cut_with_a_hash(db):
    name = db.index_name("local_alx_api_reporting", "companyid_userid_courseid")
    assert name.startswith(db.prefix + "local_alx_api_reporting_")
    assert len(name) <= 63
    if len(f"{db.prefix}local_alx_api_reporting_companyid_userid_courseid") > 63:
        assert name[-9] == "_" and len(name) == 63


def original_tables():
    """The original plugin's install.xml: our document without added columns and indexes, with
    the original widths."""
    doc = copy.deepcopy(installer.install_document())
    for table in doc["tables"]:
        table["fields"] = [f for f in table["fields"] if not f.get("added")]
        for f in table["fields"]:
            if f.get("widened"):
                kind, length = f["widened"].rstrip(")").split("(")
                f["length"] = int(length)
        names = {f["name"] for f in table["fields"]}
        table["indexes"] = [i for i in table["indexes"] if set(i["fields"]) <= names and
                            i["name"] not in ("userid_timeaccessed", "companyid_timeaccessed",
                                              "companyid_userid_courseid", "kind_companyid")]
    return tables_from_json(doc)


def _original_site(db):
    for table in original_tables():
        for statement in create_statements(db, table):
            db.db.execute_sql(statement)
    for company in (1, 2):
        for user in range(1, 4):
            db.execute("INSERT INTO {t:local_alx_api_reporting} (userid, companyid, courseid, firstname, lastname, "
                       "email, coursename, timecompleted, timestarted, percentage, status, last_updated, is_deleted, "
                       "created_at, updated_at) VALUES (?, ?, 7, 'A', 'B', 'a@b.c', 'Course', 0, 0, 12.5, "
                       "'in_progress', 100, 0, 100, 100)", (user, company))
    db.execute("INSERT INTO {t:local_alx_api_settings} (companyid, setting_name, setting_value, timecreated, "
               "timemodified) VALUES (1, 'field_email', 0, 1, 1)")
    db.execute("INSERT INTO {t:local_alx_api_logs} (userid, company_shortname, endpoint, record_count, timeaccessed) "
               "VALUES (5, 'acme', 'get_course_progress', 3, 100)")


def test_install_adopts_the_original_tables_without_losing_a_row(db):
    _original_site(db)
    report = installer.install(db, NOW)
    assert f"Added column {db.prefix}local_alx_api_reporting.change_seq" in report.lines
    if db.kind != "sqlite":
        assert any(line.startswith(f"Widened column {db.prefix}local_alx_api_reporting.coursename") for line in report.lines)
        assert db.columns("local_alx_api_reporting")["coursename"].length == 1333
    assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting}") == 6
    assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_logs} WHERE counted = 0 AND response_bytes = 0") == 1
    assert db.scalar("SELECT setting_value FROM {t:local_alx_api_settings} WHERE setting_name = 'field_email'") == 0
    # setting_value now holds values above the original int(1)
    db.execute("UPDATE {t:local_alx_api_settings} SET setting_value = 1000000 WHERE setting_name = 'field_email'")
    assert db.scalar("SELECT setting_value FROM {t:local_alx_api_settings} WHERE setting_name = 'field_email'") == 1000000
    for company in (1, 2):
        seqs = [r[0] for r in db.rows("SELECT change_seq FROM {t:local_alx_api_reporting} WHERE companyid = ? "
                                      "ORDER BY id", (company,))]
        assert all(s > 0 for s in seqs) and seqs == sorted(set(seqs))
        assert company_state.current(db, company) >= seqs[-1]
    assert installer.install(db, NOW + 5).lines == []  # nothing left to adopt or stamp


def test_install_refuses_an_incompatible_base_column_and_changes_nothing(db):
    tables = original_tables()
    reporting = next(t for t in tables if t.name == "local_alx_api_reporting")
    for f in reporting.fields:
        if f["name"] == "percentage":
            f["type"], f["length"] = "char", 10
    for table in tables:
        for statement in create_statements(db, table):
            db.db.execute_sql(statement)
    before = {t: list(db.columns(t)) for t in (x.name for x in tables)}
    with pytest.raises(installer.InstallError, match="local_alx_api_reporting: column percentage"):
        installer.install(db, NOW)
    assert {t: list(db.columns(t)) for t in before} == before


def test_moodle_tables_build_on_every_engine(db):
    from moodle_core.xmldb import create_tables
    created = create_tables(db, moodle_tables())
    assert "user" in created and "company_users" in created
    assert db.columns("user_enrolments")["timeend"].default in (2147483647, "2147483647")


def test_upgrade_steps_run_once_in_version_order(db, monkeypatch):
    from local_alx_report_api.db import upgrade
    installer.install(db, NOW)
    ran = []
    monkeypatch.setattr(upgrade, "STEPS", [
        (2026120200, "second", lambda engine, now: ran.append(2)),
        (2026120100, "first", lambda engine, now: ran.append(1))])
    monkeypatch.setattr(installer, "STEPS", upgrade.STEPS)
    report = installer.install(db, NOW)
    assert ran == [1, 2]
    assert report.lines == ["Upgrade step 2026120100: first", "Upgrade step 2026120200: second"]
    assert installer.installed_version(db) == 2026120200
    assert installer.install(db, NOW).lines == [] and ran == [1, 2]


def test_cache_pages_are_compressed_with_lz4_on_postgresql(db):
    """Issue 15 (decision 119): a page of 1000 rows is ~300 KB; lz4 writes it in half pglz's time."""
    installer.install(db, NOW)
    if db.kind != "postgresql":
        assert db.compress_fast("local_alx_api_cache", "cache_data") is False
        return
    assert db.scalar("SELECT attcompression FROM pg_attribute WHERE attrelid = CAST(? AS regclass) AND attname = "
                     "'cache_data'", (db.table("local_alx_api_cache"),)) == "l"
    assert db.compress_fast("local_alx_api_cache", "cache_data") is False  # already: nothing to do
