"""The read model follows the prefix and IOMAD's 4.x or 5.x table names."""

from local_alx_report_api.classes.progress import Scope, live_rows
from moodle_core import engines
from moodle_core.moodle import Moodle
from moodle_core.moodle_schema import IOMAD5_NAMES
from tests.oracle import expected_rows
from tests.sites import NOW, new_site, worked_examples


def test_iomad5_table_names_are_detected_and_used(db):
    b = new_site(db)
    worked_examples(b)
    before = {p.key: p.values() for p in live_rows(db, Scope.load(db, 5, ["student"]), NOW)}
    for old, new in IOMAD5_NAMES.items():
        db.db.execute_sql(f"ALTER TABLE {db.quote(db.prefix + old)} RENAME TO {db.quote(db.prefix + new)}")
    fresh = engines.connect(db.url, db.prefix)
    moodle = Moodle(fresh)
    assert moodle.iomad == "5" and moodle.missing_tables() == []
    assert [c.shortname for c in moodle.companies()] == ["acme"]
    assert moodle.models["company"]._meta.table_name == db.prefix + "local_iomad_companies"
    after = {p.key: p.values() for p in live_rows(fresh, Scope.load(fresh, 5, ["student"]), NOW)}
    assert after == before and after == expected_rows(fresh, 5, NOW)


def test_site_timezone_follows_moodle_config(db):
    new_site(db, timezone="99")
    moodle = Moodle(db)
    assert moodle.site_timezone()[0] == "UTC"
    db.execute("UPDATE {t:config} SET value = 'Europe/Oslo' WHERE name = 'timezone'")
    assert moodle.site_timezone() == ("Europe/Oslo", "Moodle config")
    db.execute("UPDATE {t:config} SET value = '1.0' WHERE name = 'timezone'")
    assert moodle.site_timezone()[0] == "UTC"
    assert moodle.site_timezone("Europe/London") == ("Europe/London", "settings.ini")


def test_missing_iomad_tables_are_reported(db):
    new_site(db)
    db.db.execute_sql(f"DROP TABLE {db.table('company_course')}")
    assert Moodle(db).missing_tables() == [db.prefix + "company_course"]
