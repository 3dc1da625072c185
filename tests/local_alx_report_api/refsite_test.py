"""The real IOMAD 4.4.5 reference site (shared/fixtures/iomad-4.4.5/site.sql, PostgreSQL):
the read model reads it, install adopts the original's tables, populate yields the spec's rows."""

from local_alx_report_api.classes import company_state, installer
from local_alx_report_api.classes.populate import populate
from moodle_core.moodle import Moodle
from tests.oracle import expected_rows, stored

NOW = 1796000000  # 2026-12-01, after the site's history; the tokens are still valid
PLUGIN_TABLES = ("logs", "settings", "reporting", "sync_status", "cache", "alerts")


def counts(engine):
    return {t: engine.scalar(f"SELECT COUNT(*) FROM {{t:local_alx_api_{t}}}") for t in PLUGIN_TABLES}


def test_read_model_reads_the_reference_site(refsite):
    moodle = Moodle(refsite)
    assert moodle.iomad == "4" and moodle.missing_tables() == []
    assert [(c.id, c.shortname, c.name) for c in moodle.companies()] == [
        (1, "acme", "Acme Learning Ltd"), (2, "globex", "Globex Corporation"), (3, "initech", "Initech Systems")]
    assert moodle.site_timezone() == ("Europe/London", "Moodle config")
    assert moodle.site_timezone("Europe/Oslo") == ("Europe/Oslo", "settings.ini")
    assert moodle.user_company(60).shortname == "acme" and moodle.user_company(2) is None
    User = moodle.models["user"]
    carol = User.get_by_id(5)
    assert (carol.firstname, carol.lastname, carol.email) == ("Carol", "Lee", "carol.lee3@acme.example.com")
    Token = moodle.models["external_tokens"]
    assert Token.get(Token.token == "6b84b9954ee4488dbdd473f3a0c892fe").userid == 60


def test_install_adopts_the_originals_tables_without_losing_a_row(refsite):
    before = counts(refsite)
    assert before["reporting"] > 0 and before["settings"] > 0
    old_rows = refsite.rows("SELECT id, userid, courseid, companyid, percentage, status FROM "
                            "{t:local_alx_api_reporting} ORDER BY id")
    report = installer.install(refsite, NOW)
    assert f"Widened column {refsite.prefix}local_alx_api_reporting.coursename to char(1333)" in report.lines
    assert f"Widened column {refsite.prefix}local_alx_api_settings.setting_value to int(10)" in report.lines
    assert counts(refsite)["reporting"] == before["reporting"]
    assert counts(refsite)["settings"] == before["settings"] + 1  # + schema_version
    assert refsite.rows("SELECT id, userid, courseid, companyid, percentage, status FROM "
                        "{t:local_alx_api_reporting} ORDER BY id") == old_rows
    for companyid in (1, 2, 3):
        seqs = [r[0] for r in refsite.rows("SELECT change_seq FROM {t:local_alx_api_reporting} WHERE companyid = ?",
                                           (companyid,))]
        if seqs:
            assert min(seqs) > 0 and len(set(seqs)) == len(seqs)
            assert company_state.current(refsite, companyid) >= max(seqs)
    assert installer.install(refsite, NOW + 1).lines == []


def test_populate_yields_exactly_the_spec_rows(refsite):
    installer.install(refsite, NOW)
    moodle = Moodle(refsite)
    state = populate(refsite, moodle.companies(), batch_size=100, report_roles=["student"], now=lambda: NOW,
                     lock_wait=5)
    assert not state.errors
    acme, globex, initech = (stored(refsite, c) for c in (1, 2, 3))
    for companyid, rows in ((1, acme), (2, globex), (3, initech)):
        assert rows == expected_rows(refsite, companyid, NOW)
    # Example I: Carol Lee in Anti-Bribery Compliance
    assert acme[(5, 4)] == ("Carol", "Lee", "carol.lee3@acme.example.com", "Anti-Bribery Compliance", 0,
                            1788998888, 3333, "in_progress")
    # Erin (7) is suspended: no rows; her stale original rows are soft-deleted
    assert not any(u == 7 for u, _ in acme)
    assert refsite.scalar("SELECT COUNT(*) FROM {t:local_alx_api_reporting} WHERE userid = 7 AND is_deleted = 0") == 0
    # Frank (8): his enrolment in course 3 is suspended, course 2 stays
    assert (8, 3) not in acme and (8, 2) in acme
    # Niaj (44) is deleted; the API managers 60-62 are not students
    assert not any(u in (44, 60, 61, 62) for rows in (acme, globex, initech) for u, _ in rows)
    # globex switched course 6 off; course 9 is hidden
    assert not any(c == 6 for _, c in globex) and not any(c == 9 for _, c in acme)
    # users keep every course (the original collapsed each user to one)
    per_user = {}
    for u, _ in acme:
        per_user[u] = per_user.get(u, 0) + 1
    assert max(per_user.values()) > 1
    assert (len(acme), len(globex), len(initech)) == (61, 39, 36)
