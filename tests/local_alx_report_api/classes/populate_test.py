"""Populate and the writer rules W1–W4 (tasks.md 6 and 10, sync-and-cache.md 4 and 6)."""

import pytest

from local_alx_report_api.classes import company_state, installer
from local_alx_report_api.classes.populate import populate
from moodle_core import generator
from moodle_core.moodle import Moodle
from tests.oracle import expected_rows, stored
from tests.sites import NOW, full_company, new_site, worked_examples


def run(engine, *, batch_size=100, now=NOW, companies=None, lock_wait=5.0, lines=None):
    moodle = Moodle(engine)
    chosen = [c for c in moodle.companies() if companies is None or c.id in companies]
    return populate(engine, chosen, batch_size=batch_size, report_roles=["student"], now=lambda: now,
                    lock_wait=lock_wait, emit=lambda level, text: lines.append(text) if lines is not None else None)


def seqs(engine, companyid):
    return {(r[0], r[1]): (r[2], r[3]) for r in engine.rows(
        "SELECT userid, courseid, change_seq, last_updated FROM {t:local_alx_api_reporting} WHERE companyid = ?",
        (companyid,))}


@pytest.fixture
def generated(db):
    generator.generate(db, companies=3, users=150, courses=8, enrolments_per_user=4, seed=7)
    installer.install(db, NOW)
    return db


def test_populate_stores_exactly_the_in_scope_pairs(generated):
    db = generated
    lines = []
    state = run(db, batch_size=100, lines=lines)
    assert not state.errors
    for company in Moodle(db).companies():
        expected = expected_rows(db, company.id, NOW)
        assert expected, "the generated company has pairs"
        assert stored(db, company.id) == expected
        values = sorted(s for s, _ in seqs(db, company.id).values())
        assert values == sorted(set(values)) and values[0] >= 1
        assert company_state.current(db, company.id) == values[-1]
    assert lines[0] == "Populating 3 companies, batch size 100"
    assert lines[-1].startswith(f"Finished: 3 companies, {state.totals.checked} pairs checked")
    assert any("pairs to check" in line for line in lines)


def test_rerun_changes_nothing_and_keeps_sequence(generated):
    db = generated
    run(db)
    before = {c.id: seqs(db, c.id) for c in Moodle(db).companies()}
    state = run(db, now=NOW + 3600)
    assert state.totals.changed == 0 and state.totals.unchanged == state.totals.checked
    assert {c.id: seqs(db, c.id) for c in Moodle(db).companies()} == before


def test_changes_soft_deletes_and_reactivation_get_new_sequence_values(db):
    b = new_site(db)
    ids = worked_examples(b)
    run(db)
    counter = company_state.current(db, 5)
    before = seqs(db, 5)
    db.execute("UPDATE {t:user} SET firstname = 'Sara' WHERE id = 101")
    db.execute("DELETE FROM {t:user_enrolments} WHERE userid = 103")
    state = run(db, now=NOW + 60)
    t = state.totals
    assert (t.updated, t.deleted, t.inserted, t.reactivated) == (1, 1, 0, 0)
    after = seqs(db, 5)
    assert after[(101, 12)][0] > counter and after[(103, 12)][0] > counter
    assert after[(101, 12)][1] == NOW + 60
    assert {k: v for k, v in after.items() if k not in ((101, 12), (103, 12))} == \
        {k: v for k, v in before.items() if k not in ((101, 12), (103, 12))}
    row = db.execute("SELECT is_deleted, firstname, status FROM {t:local_alx_api_reporting} "
                     "WHERE userid = 103 AND courseid = 12").fetchone()
    assert tuple(row) == (1, "John", "not_started")  # soft delete keeps the last values
    assert stored(db, 5) == expected_rows(db, 5, NOW + 60)
    b.enrol(ids["manual12"], 103, timecreated=1704067200)
    b.flush()
    state = run(db, now=NOW + 120)
    assert state.totals.reactivated == 1 and state.totals.changed == 1
    assert seqs(db, 5)[(103, 12)][0] > after[(103, 12)][0]
    assert stored(db, 5) == expected_rows(db, 5, NOW + 120)


def test_many_courses_per_user_in_small_batches_are_never_collapsed(db):
    b = new_site(db)
    full_company(b, users=12, courses=30)
    state = run(db, batch_size=100)
    assert state.totals.inserted == 12 * 30
    assert stored(db, 1) == expected_rows(db, 1, NOW)


def test_populate_waits_for_the_company_lock_and_reports_busy(generated):
    db = generated
    with db.lock("company_1"):
        lines = []
        state = run(db, companies={1, 2}, lock_wait=0.3, lines=lines)
    assert [e["companyid"] for e in state.errors] == [1]
    assert "Company 1 (companya): company busy; skipped" in lines
    assert stored(db, 1) == {} and stored(db, 2) == expected_rows(db, 2, NOW)


def test_populate_purges_the_company_cache(generated):
    db = generated
    for companyid in (1, 2):
        db.execute("INSERT INTO {t:local_alx_api_cache} (cache_key, companyid, cache_data, cache_timestamp, "
                   "expires_at, hit_count, last_accessed) VALUES ('k', ?, '{}', ?, ?, 0, ?)",
                   (companyid, NOW, NOW + 60, NOW))
    run(db, companies={1})
    assert [r[0] for r in db.rows("SELECT companyid FROM {t:local_alx_api_cache}")] == [2]


def test_company_without_courses_in_scope_is_skipped_with_a_warning(db):
    b = new_site(db)
    b.company("Empty", "empty", companyid=9)
    b.flush()
    lines = []
    state = run(db, lines=lines)
    assert "Company 9 (empty) has no courses in scope; skipped." in lines
    assert state.companies_done == 1 and not state.errors
