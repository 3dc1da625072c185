"""`reconcile_task` (tasks.md section 9): the nightly full check of every company's reporting rows."""

from __future__ import annotations

from local_alx_report_api.classes.reconcile import reconcile_all


def execute(env, *, companies=None, time_budget: int | None = None) -> dict:
    return reconcile_all(env, companies=companies, time_budget=time_budget)
