"""`check_alerts_task` (tasks.md 7, monitoring.md 3.2): health, and every periodic alert condition
raised or auto-resolved."""

from __future__ import annotations

from local_alx_report_api.classes.alert_checks import check_all


def execute(env) -> dict:
    return check_all(env)
