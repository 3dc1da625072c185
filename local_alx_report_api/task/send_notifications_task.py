"""`send_notifications_task` (monitoring.md 3.6): deliver pending alerts by email and SMS,
retrying failed channels on later runs (five runs in all) so that no alert is dropped."""

from __future__ import annotations

from local_alx_report_api.classes.notifications import Outbox, deliver_pending


def execute(env) -> dict:
    return deliver_pending(Outbox(env.engine, env.moodle, env.settings, env.clock, env.say))
