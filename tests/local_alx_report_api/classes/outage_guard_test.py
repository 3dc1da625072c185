"""OutageGuard (issue 14, 2): only a transient database error is an outage (backoff, one line each
way, the database alert when it ends); a wrong statement is a bug, logged with its traceback."""

import peewee
import pytest

from local_alx_report_api import settings as plugin_settings
from local_alx_report_api.classes.outage import OutageGuard
from tests.sites import NOW, new_site


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_only_transient_errors_make_an_outage(db, caplog):
    new_site(db)
    clock = {"t": 0.0}
    guard = OutageGuard(db, plugin_settings.load(None, {}), lambda: NOW + int(clock["t"]),
                        monotonic=lambda: clock["t"])
    guard.run(lambda: db.execute("SELECT no_such_column FROM {t:config}"), "job poll")
    assert not guard.down and "job poll failed" in caplog.text and "Traceback" in caplog.text
    caplog.clear()

    def busy():
        raise peewee.OperationalError("database is locked")

    calls = []
    for _ in range(3):  # the first failure starts the outage; the next tries wait for the backoff
        guard.run(lambda: (calls.append(1), busy()), "job poll")
    assert guard.down and len(calls) == 1
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["database unreachable"]
    clock["t"] += 1.5
    guard.run(lambda: (calls.append(1), busy()), "job poll")  # after 1 s: tried again, still away
    clock["t"] += 1.5
    guard.run(lambda: calls.append(1), "job poll")  # backoff 2 s: not yet
    assert len(calls) == 2
    clock["t"] += 1
    guard.run(lambda: calls.append(1), "job poll")
    assert not guard.down and len(calls) == 3
    assert "database reachable again after 4 s" in caplog.text
    assert db.scalar("SELECT COUNT(*) FROM {t:local_alx_api_alerts} WHERE alert_type = 'database'") == 1
