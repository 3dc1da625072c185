"""The scheduled tasks as the control center lists them (admin-ui.md 3.1, 3.7): schedule, last
and next run, status, fail delay and failures in a row, read in one query."""

from __future__ import annotations

from local_alx_report_api.db.tasks import definitions
from moodle_core.cron import NEVER
from moodle_core.engines import Engine
from moodle_core.taskmanager import TaskManager, TaskState


def scheduled_tasks(engine: Engine, settings) -> list[dict]:
    manager = TaskManager(engine, definitions(settings), "UTC")  # read only
    states = manager.states()
    rows = []
    for task in manager.tasks:
        state = states[task.name]
        next_run = None if task.disabled or state is None or state.nextrun >= NEVER else state.nextrun
        state = state or TaskState()
        rows.append({"name": task.name, "cron": task.cron, "disabled": task.disabled, "lastrun": state.lastrun,
                     "nextrun": next_run, "status": state.status, "error": state.error, "faildelay": state.faildelay,
                     "failures": state.consecutive_failures, "summary": state.data.get("summary")})
    return rows
